# The SX1276 twin under micropython-lib's driver, run by the MicroPython unix port (test_twin_sx127x.py runs it
# with MICROPYPATH = <lora lib>:firmware:host_tools): send, receive, a window that times out, image calibration.
from citynode.sim.hwsim import machine, lora_lib
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.radio import Air
from citynode.sim.hwsim.twin_sx127x import SX1276Twin

clock = VirtualClock()
machine.use(clock)
air = Air(clock)
twin = SX1276Twin(clock, air, 5, 18, reset=14, dio0=26, dio1=35, pa_pin="PA_BOOST")
lora = lora_lib.load(clock)
P = machine.Pin
m = lora.SX1276(machine.SPI(1, baudrate=2000000, sck=P(5), mosi=P(27), miso=P(19)), P(18, P.OUT, value=1),
                dio0=P(26, P.IN), dio1=P(35, P.IN), reset=P(14, P.OUT))
m.configure({"freq_khz": 868100, "sf": 12, "bw": "125", "coding_rate": 5, "preamble_len": 8, "syncword": 0x34,
             "output_power": 14, "crc_en": True, "invert_iq_tx": False, "invert_iq_rx": True, "tx_ant": "PA_BOOST"})
m.send(bytes(24))
tx = air.log[-1]
print("tx", tx.freq_khz, tx.sf, tx.bw_khz, tx.iq_inverted, tx.end_us - tx.start_us, tx.power)
air.schedule("gw", clock.monotonic_us() + 5000, 868100, 12, b"\x60hello")
p = m.recv(timeout_ms=200)
print("rx", bytes(p), p.snr, p.rssi)
t0 = clock.monotonic_us()
p = m.recv(timeout_ms=100)
print("timeout", p, clock.monotonic_us() - t0)  # 4 symbols of 32.768 ms: RxTimeout at 131.072 ms
m.calibrate_image()
print("cal", twin.image_cal_khz)
