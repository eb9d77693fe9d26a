"""The SX1276 register-level twin (citynode.sim.hwsim.twin_sx127x) under micropython-lib's unmodified lora-sx127x +
lora-sync driver, wired as a Heltec WiFi LoRa 32 V2 (SCK 5, MOSI 27, MISO 19, NSS 18, RESET 14, DIO0 26, DIO1
35): what goes on the air and when (SX1276 DS rev 7 4.1.1.6-7), power at the antenna (DS 3.4.2-3.4.3), receive
windows, IQ polarity and settings, IRQ lines, image calibration (DS 2.1.3.8), reset and supply rail (DS 7.2),
and the same scenario under the MicroPython unix port."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from citynode.sim.hwsim import lora_lib as driver
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.radio import Air
from citynode.sim.hwsim.twin_sx127x import SX1276Twin
from citynode.sim.runtime import FIRMWARE_DIR, HOST_DIR, micropython_exe

pytestmark = pytest.mark.mipindex

EU868 = {"freq_khz": 868100, "sf": 7, "bw": "125", "coding_rate": 5, "preamble_len": 8, "syncword": 0x34,
         "output_power": 14, "crc_en": True, "invert_iq_tx": False, "invert_iq_rx": True}
MP_SCRIPT = Path(__file__).with_name("twin_sx127x_mp.py")


class Bench:
    """A virtual clock, the machine double, an air, the twin on the board's pins and the driver on that clock."""

    def __init__(self, lora_lib, pa_pin="PA_BOOST", **twin_kw):
        self.clock = VirtualClock()
        machine.use(self.clock)
        self.air = Air(self.clock)
        self.twin = SX1276Twin(self.clock, self.air, 5, 18, reset=14, dio0=26, dio1=35, pa_pin=pa_pin, **twin_kw)
        self.lora = driver.load(self.clock, str(lora_lib))

    def modem(self, configure=True, **cfg):
        P = machine.Pin
        m = self.lora.SX1276(machine.SPI(1, baudrate=2000000, sck=P(5), mosi=P(27), miso=P(19)),
                             P(18, P.OUT, value=1), dio0=P(26, P.IN), dio1=P(35, P.IN), reset=P(14, P.OUT))
        if configure:
            m.configure(dict(EU868, **cfg))
        return m

    def us(self):
        return self.clock.monotonic_us()


@pytest.fixture
def bench(lora_lib):
    return Bench(lora_lib)


def ds_time_on_air_us(sf, n, bw_hz=125000, cr=1, preamble=8, crc=1, ih=0):
    """DS 4.1.1.6-7 written out independently: Tsym = 2^SF/BW, (Npreamble + 4.25) Tsym, then
    8 + max(ceil((8PL - 4SF + 28 + 16CRC - 20IH) / (4(SF - 2DE))) (CR + 4), 0) symbols; DE when Tsym >= 16 ms."""
    tsym = (1 << sf) * 1_000_000 / bw_hz
    de = 1 if tsym >= 16000 else 0
    num = 8 * n - 4 * sf + 28 + 16 * crc - 20 * ih
    den = 4 * (sf - 2 * de)
    payload = 8 + max(-(-num // den), 0) * (cr + 4)
    return int((preamble + 4.25 + payload) * tsym)


# --- chip identity and modes ---------------------------------------------------------------------------------
def test_version_check_passes_and_the_driver_leaves_it_in_lora_standby(bench):
    m = bench.modem(configure=False)
    assert bench.twin.reg[0x42] == 0x12
    assert bench.twin.reg[0x01] & 0x87 == 0x81 and bench.twin.state() == "standby"  # LoRa, Standby
    m.sleep()
    assert bench.twin.state() == "sleep"


def test_long_range_mode_changes_only_in_sleep(bench):
    m = bench.modem(configure=False)
    m._reg_write(0x01, 0x01)  # FSK Standby requested from LoRa Standby: LongRangeMode is kept (DS 6.4 RegOpMode)
    assert bench.twin.reg[0x01] & 0x80
    m._reg_write(0x01, 0x80)  # LoRa Sleep
    m._reg_write(0x01, 0x01)  # from Sleep: now FSK Standby
    assert bench.twin.reg[0x01] & 0x87 == 0x01
    assert m._reg_read(0x3B) == 0x82  # the FSK page: RegImageCal (AutoImageCalOn, reset value)


# --- transmit: time on air, what is radiated -------------------------------------------------------------------
@pytest.mark.parametrize("sf,n,us", [(7, 10, 41216), (12, 24, 1482752)] +
                         [(sf, 23, ds_time_on_air_us(sf, 23)) for sf in range(7, 13)])
def test_send_puts_one_frame_on_the_air_for_its_datasheet_time_on_air(bench, sf, n, us):
    m = bench.modem(sf=sf, tx_ant="PA_BOOST")
    payload = bytes(range(0x40, 0x40 + n))
    t0 = bench.us()
    end_ticks = m.send(payload)
    assert len(bench.air.log) == 1
    tx = bench.air.log[0]
    assert (tx.freq_khz, tx.sf, tx.bw_khz, tx.iq_inverted, tx.data) == (868100, sf, 125, False, payload)
    assert tx.start_us == t0 and tx.end_us - tx.start_us == us
    assert end_ticks == (t0 + us) // 1000  # send() returns the ticks of TxDone (DIO0)
    assert bench.twin.reg[0x26] & 0x08 == (0x08 if sf >= 11 else 0)  # LowDataRateOptimize (Tsym >= 16 ms)
    assert bench.twin.state() == "standby"  # back to Standby after TxDone (DS 4.1.6)


def test_tx_done_raises_dio0_until_the_flag_is_cleared(bench):
    m = bench.modem(tx_ant="PA_BOOST")
    m.prepare_send(b"\x40abc")
    m.start_send()
    assert bench.twin.state() == "tx" and machine.wire(26).level == 0
    bench.clock.advance_us(ds_time_on_air_us(7, 4))
    assert bench.twin.reg[0x12] == 0x08 and machine.wire(26).level == 1  # TxDone on DIO0 (mapping 01)
    assert isinstance(m.poll_send(), int)  # the driver clears the flags: the line falls
    assert bench.twin.reg[0x12] == 0 and machine.wire(26).level == 0


def test_inverted_iq_tx_goes_on_the_air_as_a_downlink_polarity(bench):
    m = bench.modem(tx_ant="PA_BOOST", invert_iq_tx=True)
    m.send(b"\x20xyz")
    assert bench.air.log[-1].iq_inverted is True


# --- power at the antenna -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("wired,cfg,dbm", [
    ("PA_BOOST", {}, None),  # the driver's default pin is RFO: nothing reaches a PA_BOOST-wired antenna
    ("PA_BOOST", {"tx_ant": "PA_BOOST"}, 14),  # 17 - (15 - 12)
    # 20 dBm: the driver writes RegPaDac 0x87 (+20 dBm mode) but OutputPower 0x15 into a 4-bit field (MaxPower 1,
    # OutputPower 5): 20 - (15 - 5) = 10 dBm at the antenna, not 20 (micropython-lib lora-sx127x 0.1.2)
    ("PA_BOOST", {"tx_ant": "PA_BOOST", "output_power": 20}, 10),
    ("RFO", {}, 14),  # 10.8 + 0.6 * 7 - (15 - 14)
    ("RFO", {"tx_ant": "PA_BOOST"}, None),
])
def test_power_at_the_antenna(lora_lib, wired, cfg, dbm):
    b = Bench(lora_lib, pa_pin=wired)
    m = b.modem(**cfg)
    m.send(b"\x40" + bytes(12))
    assert b.air.log[-1].power == dbm and b.twin.last_tx_power == dbm


def test_plus_20_dbm_mode_from_the_registers(bench):
    m = bench.modem(tx_ant="PA_BOOST", output_power=20)
    assert bench.twin.reg[0x4D] == 0x87 and bench.twin.reg[0x09] == 0x95  # what the driver wrote
    m._reg_write(0x09, 0x8F)  # PA_BOOST, OutputPower 15, with PaDac 0x87 (DS 3.4.3): +20 dBm
    assert bench.twin.power_dbm() == 20


# --- receive --------------------------------------------------------------------------------------------------------
def test_a_downlink_in_the_window_is_received(bench):
    m = bench.modem(sf=9, tx_ant="PA_BOOST")
    t0 = bench.us()
    tx = bench.air.schedule("gw", t0 + 20_000, 868100, 9, b"\x60downlink-bytes")
    pkt = m.recv(timeout_ms=100)
    assert bytes(pkt) == b"\x60downlink-bytes"
    assert pkt.snr == 7 * 4 and pkt.rssi == -95  # the driver reports SNR in dB x 4
    assert bench.us() - tx.end_us < 1000 and pkt.ticks_ms == tx.end_us // 1000  # RxDone at the frame's end
    r = bench.twin.reg
    assert (r[0x13], r[0x10], r[0x19], r[0x1A]) == (15, 0, 28, 62)  # RxNbBytes, RxCurrentAddr, Snr x4, -95 + 157
    assert bench.twin.state() == "standby"


def test_snr_is_a_signed_byte_and_rssi_follows_ds_5_5_5(lora_lib):
    b = Bench(lora_lib, snr_db=-10, rssi_dbm=-120)
    m = b.modem(sf=12, tx_ant="PA_BOOST")
    b.air.schedule("gw", b.us() + 5000, 868100, 12, b"\x60x")
    pkt = m.recv(timeout_ms=200)
    assert pkt.snr == -40 and b.twin.reg[0x19] == 0xD8
    # DS 5.5.5, SNR < 0: strength = -157 + PacketRssi + PacketSnr / 4; the driver leaves the SNR term out
    assert b.twin.reg[0x1A] - 157 - 10 == -120 and pkt.rssi == -110


@pytest.mark.parametrize("change", ["frame_not_inverted", "rx_not_inverted", "other_sf", "other_freq",
                                    "private_syncword", "starts_after_window"])
def test_a_downlink_that_does_not_match_is_not_received(bench, change):
    m = bench.modem(sf=9, tx_ant="PA_BOOST", invert_iq_rx=change != "rx_not_inverted",
                    syncword=0x12 if change == "private_syncword" else 0x34)
    t0 = bench.us()
    tx = bench.air.schedule("gw", t0 + (150_000 if change == "starts_after_window" else 20_000),
                            868300 if change == "other_freq" else 868100, 8 if change == "other_sf" else 9, b"\x60x")
    if change == "frame_not_inverted":
        tx.iq_inverted = False
    assert m.recv(timeout_ms=100) is None
    tsym = 4096  # SF9 BW125
    assert 100_000 <= bench.us() - t0 <= 100_000 + tsym + 1000  # RxTimeout after ceil(100 ms / Tsym) symbols


def test_an_empty_window_times_out_on_dio1(bench):
    m = bench.modem(sf=7, tx_ant="PA_BOOST")
    seen = []
    m.set_irq_callback(lambda: seen.append(bench.us()))
    t0 = bench.us()
    assert m.recv(timeout_ms=50) is None
    # 50 ms at SF7 = 49 symbols of 1.024 ms: the twin's RxTimeout (DIO1 mapping 00) comes at 50.176 ms
    assert seen[0] - t0 == 49 * 1024 and bench.us() - t0 >= 50_000
    assert machine.wire(35).level == 0 and bench.twin.reg[0x12] == 0


def test_a_frame_with_a_crc_error_is_counted_and_not_returned(bench):
    m = bench.modem(sf=7, tx_ant="PA_BOOST")
    tx = bench.air.schedule("gw", bench.us() + 5000, 868100, 7, b"\x60corrupt")
    tx.crc_error = True  # arrives corrupted: RxDone with PayloadCrcError
    assert m.recv(timeout_ms=100) is None  # the driver drops it and resumes the window, which then times out
    assert m.crc_errors == 2  # the driver counts both the CRC error and the RxTimeout as "crc_errors"
    r = bench.twin.reg
    assert (r[0x15], r[0x17]) == (1, 0)  # one valid header, no valid packet


def test_rx_continuous_keeps_receiving(bench):
    m = bench.modem(sf=7, tx_ant="PA_BOOST")
    m.start_recv(continuous=True)
    t0 = bench.us()
    first = bench.air.schedule("gw", t0 + 30_000, 868100, 7, b"\x60one")
    bench.clock.advance_us(200_000)
    second = bench.air.schedule("gw", bench.us() + 40_000, 868100, 7, b"\x60two!")  # scheduled while listening
    assert bytes(m.poll_recv()) == b"\x60one"
    bench.clock.advance_us(second.end_us - bench.us() + 10)
    assert bytes(m.poll_recv()) == b"\x60two!"
    assert bench.twin.state() == "rx" and first.end_us < second.start_us
    assert bench.twin.reg[0x10] == 4 and bench.twin.reg[0x17] == 2  # 2nd packet after the 1st; 2 valid packets
    m.standby()
    assert bench.twin.state() == "standby"


# --- image calibration ---------------------------------------------------------------------------------------------
def test_calibrate_image_runs_at_the_configured_frequency(bench):
    m = bench.modem(tx_ant="PA_BOOST")
    assert bench.twin.image_cal_khz == 434000  # the power-on calibration (DS 2.1.3.8)
    pa = bench.twin.reg[0x09]
    t0 = bench.us()
    m.calibrate_image()
    assert bench.twin.image_cal_khz == 868100
    assert bench.us() - t0 >= 10_000  # ImageCalRunning read 1 for ~10 ms
    assert bench.twin.reg[0x01] & 0x87 == 0x81 and bench.twin.reg[0x09] == pa  # LoRa Standby, PA restored


# --- reset pin and supply rail ---------------------------------------------------------------------------------------
def test_reset_pin_restores_reset_values_and_the_chip_answers_5_ms_later(bench):
    m = bench.modem(tx_ant="PA_BOOST")
    m.calibrate_image()
    assert bench.twin.freq_khz() == 868100 and bench.twin.reg[0x39] == 0x34
    rst = machine.Pin(14, machine.Pin.OUT, value=0)
    assert bench.twin.state() == "off" and m._reg_read(0x42) == 0
    rst(1)
    assert m._reg_read(0x42) == 0  # DS 7.2.2: wait 5 ms
    bench.clock.sleep_ms(5)
    assert m._reg_read(0x42) == 0x12
    t = bench.twin
    assert (t.freq_khz(), t.reg[0x01], t.reg[0x39], t.image_cal_khz) == (434000, 0x09, 0x12, 434000)


def test_unpowered_chip_answers_nothing(bench):
    bench.twin.powered = False
    with pytest.raises(RuntimeError, match="Unexpected silicon version 0"):
        bench.modem(configure=False)
    assert bench.twin.state() == "off"
    bench.twin.powered = True
    m = bench.modem(tx_ant="PA_BOOST")  # the driver's reset pulse and 5 ms wait: it answers again
    m.send(b"\x40x")
    assert bench.air.log[-1].power == 14


def test_power_loss_mid_transmission_voids_tx_done(bench):
    m = bench.modem(tx_ant="PA_BOOST")
    m.prepare_send(b"\x40abc")
    m.start_send()
    bench.twin.powered = False
    bench.clock.advance_us(100_000)
    bench.twin.powered = True
    assert bench.twin.reg[0x12] == 0 and bench.twin.reg[0x01] == 0x09 and machine.wire(26).level == 0


# --- the same under the MicroPython unix port ----------------------------------------------------------------------
def test_send_and_receive_under_micropython(lora_lib):
    env = dict(os.environ, MICROPYPATH=f"{lora_lib}:{FIRMWARE_DIR}:{HOST_DIR}")
    proc = subprocess.run([micropython_exe(), str(MP_SCRIPT)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.splitlines() == [
        "tx 868100 12 125 False 1482752 14",
        "rx b'`hello' 28 -95",
        "timeout None 131072",  # RxTimeout after ceil(100 ms / 32.768 ms) = 4 symbols (DS 4.1.6.3)
        "cal 868100",
    ]
