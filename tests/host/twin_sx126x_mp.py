# Run by tests/host/test_twin_sx126x.py under the MicroPython unix port: the SX1262 twin under micropython-lib's
# unmodified driver (MICROPYPATH = lora lib folder : firmware : host_tools). Prints one line per check.
from citynode.sim.hwsim import lora_lib
from citynode.sim.hwsim import machine as hw
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.radio import Air
from citynode.sim.hwsim.twin_sx126x import SX1262Twin

UP = {"freq_khz": 868100, "sf": 12, "bw": "125", "coding_rate": 5, "preamble_len": 8, "syncword": 0x34,
      "output_power": 14, "crc_en": True, "invert_iq_tx": False, "invert_iq_rx": True}


def bench(tcxo):
    c = VirtualClock()
    hw.use(c)
    air = Air(c)
    lora = lora_lib.load(c)
    twin = SX1262Twin(c, air, 9, 8, 13, dio1=14, reset=12, tcxo_mv=1800)
    P = hw.Pin
    m = lora.SX1262(hw.SPI(1, baudrate=2000000, sck=P(9), mosi=P(10), miso=P(11)), P(8, P.OUT, value=1),
                    busy=P(13, P.IN), dio1=P(14, P.IN), reset=P(12, P.OUT), dio3_tcxo_millivolts=tcxo)
    return c, air, twin, m


c, air, twin, m = bench(1800)
m.configure(UP)
m.calibrate()
m.calibrate_image()
m.send(bytes(24))
tx = air.log[-1]
print("tx", tx.end_us - tx.start_us, tx.power, tx.freq_khz, tx.sf, tx.iq_inverted, twin.tcxo_enabled_mv,
      twin.image_cal_mhz[0], twin.image_cal_mhz[1], twin.state())
air.schedule("gw", c.monotonic_us() + 5000, 868100, 12, b"\x20hello")
p = m.recv(timeout_ms=100)
print("rx", bytes(p), p.snr, p.rssi)
print("miss", m.recv(timeout_ms=50))

c, air, twin, m = bench(None)
m.configure(UP)
try:
    m.send(bytes(5))
    print("notcxo sent")
except RuntimeError as e:
    print("notcxo", "OpError 0x20" in str(e), len(air.log))
