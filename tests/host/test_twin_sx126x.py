"""The SX1262 command-level twin (hwsim/twin_sx126x.py) against the SX1261/2 datasheet rev 2.1 ("DS"), driven by
micropython-lib's unmodified lora-sx126x driver wired as on a Heltec V3 (1.8 V TCXO on DIO3): the TCXO, calibration,
EU868 transmission (time on air, power at the antenna, sync word), reception in an RX window, status and BUSY on
the wire, sleep, reset and supply, and the same under the MicroPython unix port."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from citynode.sim.hwsim import lora_lib as driver
from citynode.sim.hwsim import machine as hw
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.radio import Air
from citynode.sim.hwsim.twin_sx126x import SX1262Twin
from citynode.sim.runtime import FIRMWARE_DIR, HOST_DIR, micropython_exe

EU868 = {"freq_khz": 868100, "sf": 7, "bw": "125", "coding_rate": 5, "preamble_len": 8, "syncword": 0x34,
         "output_power": 14, "crc_en": True, "invert_iq_rx": True, "invert_iq_tx": False}
MP_SCRIPT = Path(__file__).resolve().parent / "twin_sx126x_mp.py"


def _bench(lora_lib, tcxo_mv=1800, **kw):
    clock = VirtualClock()
    hw.use(clock)
    air = Air(clock)
    twin = SX1262Twin(clock, air, 9, 8, 13, dio1=14, reset=12, tcxo_mv=tcxo_mv, **kw)
    lora = driver.load(clock, str(lora_lib))
    return clock, air, twin, lora


def _modem(lora, tcxo=1800, **kw):
    """lora.SX1262 wired as on the Heltec V3 (SPI 9/10/11, NSS 8, RESET 12, BUSY 13, DIO1 14)."""
    P = hw.Pin
    return lora.SX1262(hw.SPI(1, baudrate=2000000, sck=P(9), mosi=P(10), miso=P(11)), P(8, P.OUT, value=1),
                       busy=P(13, P.IN), dio1=P(14, P.IN), reset=P(12, P.OUT), dio3_tcxo_millivolts=tcxo, **kw)


@pytest.fixture
def v3(lora_lib):
    return _bench(lora_lib)


# --- the TCXO on DIO3 (DS 13.3.6) --------------------------------------------------------------------------------
@pytest.mark.mipindex
def test_without_dio3_tcxo_the_oscillator_never_starts(v3):
    clock, air, twin, lora = v3
    m = _modem(lora, tcxo=None)
    m.configure(EU868)  # nothing so far needed the 32 MHz reference
    with pytest.raises(RuntimeError, match="OpError 0x20"):  # XOSC_START_ERR (DS 13.6.1)
        m.send(bytes(10))
    assert twin.tcxo_enabled_mv is None and air.log == [] and twin.state() == "standby"


@pytest.mark.mipindex
def test_with_dio3_tcxo_at_its_voltage_it_transmits(v3):
    clock, air, twin, lora = v3
    m = _modem(lora, tcxo=1800)
    m.configure(EU868)
    m.send(bytes(10))
    assert twin.tcxo_enabled_mv == 1800 and len(air.log) == 1
    assert twin.errors == 0  # the XOSC_START_ERR of power-on and of SetDIO3AsTcxoCtrl was cleared by the driver


@pytest.mark.mipindex
def test_an_underpowered_tcxo_does_not_run(v3):
    clock, air, twin, lora = v3
    m = _modem(lora, tcxo=1700)
    m.configure(EU868)
    with pytest.raises(RuntimeError):
        m.send(bytes(10))
    assert twin.tcxo_enabled_mv == 1700 and air.log == []


@pytest.mark.mipindex
def test_the_tcxo_start_up_delay_holds_busy(v3):
    clock, air, twin, lora = v3
    m = _modem(lora, tcxo=1800, dio3_tcxo_start_time_us=5000)  # 320 steps of 15.625 us
    m.configure(EU868)
    assert twin.tcxo_delay_us == 5000 and twin.mode == 2  # STDBY_RC: the TCXO is off
    t0 = clock.monotonic_us()
    m.standby()  # SetStandby(STDBY_XOSC): BUSY stays high while the TCXO starts; the driver waits for it
    m._wait_not_busy(20000)
    assert clock.monotonic_us() - t0 >= 5000 and twin.mode == 3


# --- transmission: time on air (DS 6.1.4), power (DS 13.1.14, 13.4.4), sync word (DS 6.1.1.1) -----------------
@pytest.mark.mipindex
@pytest.mark.parametrize("sf,n,us", [(7, 10, 41216), (9, 13, 164864), (12, 24, 1482752)])
def test_eu868_uplink_on_the_air(v3, sf, n, us):
    clock, air, twin, lora = v3
    m = _modem(lora)
    m.configure(dict(EU868, sf=sf))
    t0 = clock.monotonic_us()
    end = m.send(b"\x40" + bytes(n - 1))
    assert len(air.log) == 1
    tx = air.log[0]
    assert (tx.freq_khz, tx.sf, tx.bw_khz, tx.iq_inverted, tx.power, twin.crc) == (868100, sf, 125, False, 14, 1)
    assert tx.data == b"\x40" + bytes(n - 1) and tx.start_us >= t0
    assert tx.end_us - tx.start_us == us == m.get_time_on_air_us(n)
    assert end == tx.end_us // 1000  # send() returns at TxDone (DIO1)
    assert twin.state() == "standby" and twin.mode == 2  # DS 13.1.4: back to STDBY_RC after TxDone
    assert twin.pa == (0x02, 0x02, 0x00, 0x01) and twin.tx_power == 22  # DS Table 13-21, the 14 dBm row
    assert (m._reg_read(0x0740) << 8) | m._reg_read(0x0741) == 0x3444 == twin.syncword()  # read back over SPI
    assert hw.wire(14).level == 0  # DIO1 fell when the driver cleared TxDone


@pytest.mark.mipindex
def test_time_on_air_matches_the_driver_for_every_sf_and_bandwidth(v3):
    clock, air, twin, lora = v3
    m = _modem(lora)
    for bw in ("125", "250", "500"):
        for sf in range(6, 13):
            m.configure(dict(EU868, sf=sf, bw=bw))
            for n in (0, 1, 13, 51, 222):
                assert twin.time_on_air_us(n) == m.get_time_on_air_us(n), (bw, sf, n)


def test_time_on_air_by_hand_sf6_and_implicit_header():
    clock = VirtualClock()
    hw.use(clock)
    t = SX1262Twin(clock, Air(clock), 9, 8, 13)
    t.sf, t.bw_hz, t.cr, t.ldro, t.preamble, t.crc, t.implicit = 6, 125000, 1, 0, 8, 1, 0
    # SF6: 6.25 + 8 symbols; bits = 80 + 16 - 24 + 20 = 92, ceil(92 / 24) = 4 -> 8 + 4 * 5 = 28 symbols
    assert t.time_on_air_us(10) == (4 * 8 + 25 + 4 * 28) * 512 // 4 == 21632
    t.sf, t.implicit = 7, 1  # implicit header: no 20 header bits; bits = 80 + 16 - 28 + 8 = 76 -> ceil 3
    assert t.time_on_air_us(10) == (4 * 8 + 17 + 4 * (8 + 3 * 5)) * 1024 // 4 == 36096


@pytest.mark.mipindex
@pytest.mark.parametrize("dbm", [22, 20, 17, 14, 12, 0, -9])
def test_power_at_the_antenna(v3, dbm):
    clock, air, twin, lora = v3
    m = _modem(lora)
    m.configure(dict(EU868, output_power=dbm))
    m.send(bytes(5))
    assert air.log[-1].power == dbm


@pytest.mark.mipindex
def test_a_private_sync_word_is_heard_by_no_gateway(v3):
    clock, air, twin, lora = v3
    m = _modem(lora)
    m.configure(dict(EU868, syncword=0x12))  # written as 0x1424, the reset value (DS 6.1.1.1: private)
    m.send(bytes(5))
    assert air.log == [] and twin.unheard == 1 and twin.syncword() == 0x1424


# --- calibration (DS 9.2.1, 13.1.12, 13.1.13) -------------------------------------------------------------------
@pytest.mark.mipindex
def test_calibration_and_the_image_band(v3):
    clock, air, twin, lora = v3
    # power-on with the TCXO unpowered: only the RC oscillators calibrated, no image band
    assert twin.calibrated == 0x03 and twin.image_cal_mhz is None
    m = _modem(lora)
    m.configure(EU868)
    t0 = clock.monotonic_us()
    m.calibrate()  # calibParam 0xFE: bit 7 is RFU, bit 0 (RC64k) was done at power-on
    assert clock.monotonic_us() - t0 >= 3500  # DS 13.1.12: 3.5 ms for all blocks, BUSY high meanwhile
    assert twin.calibrated == 0x7F and twin.image_cal_mhz == (900, 932)  # the default 902-928 MHz band
    m.calibrate_image()  # 868.1 MHz -> 0xD7, 0xDB (DS 9.2.1 Table 9-2)
    assert twin.image_cal_mhz == (860, 876) and twin.errors == 0


@pytest.mark.mipindex
def test_a_crystal_board_is_calibrated_for_902_928_mhz_at_power_on(lora_lib):
    clock, air, twin, lora = _bench(lora_lib, tcxo_mv=None)
    assert twin.calibrated == 0x7F and twin.image_cal_mhz == (900, 932) and twin.errors == 0
    m = _modem(lora, tcxo=None)
    m.configure(EU868)
    m.calibrate_image()
    m.send(bytes(5))
    assert twin.image_cal_mhz == (860, 876) and len(air.log) == 1


@pytest.mark.mipindex
def test_calibrating_without_the_tcxo_fails(v3):
    clock, air, twin, lora = v3
    m = _modem(lora, tcxo=None)
    m.calibrate()
    assert twin.errors & 0x20 and twin.calibrated == 0x03  # only the RC blocks run without the reference
    with pytest.raises(RuntimeError):
        m.configure(EU868)  # configure() ends with _check_error


# --- reception (DS 13.1.3, 13.5.2, 13.5.3) --------------------------------------------------------------------
@pytest.mark.mipindex
@pytest.mark.parametrize("snr_db,rssi", [(7, -95), (-12, -121)])
def test_a_downlink_in_the_window_is_received(lora_lib, snr_db, rssi):
    clock, air, twin, lora = _bench(lora_lib, snr_db=snr_db, rssi_dbm=rssi)
    m = _modem(lora)
    m.configure(dict(EU868, sf=9))
    data = b"\x60\x01\x02\x03\x04\x00\x01\x00\x01\xaa\xbb\xcc\xdd"
    t0 = clock.monotonic_us()
    dl = air.schedule("gw", t0 + 20_000, 868100, 9, data)
    pkt = m.recv(timeout_ms=100)
    assert bytes(pkt) == data and pkt.snr == snr_db * 4 and pkt.rssi == rssi  # snr in dB x 4 (signed)
    assert clock.monotonic_us() >= dl.end_us and twin.rx_len == len(data) and twin.rx_ptr == 0
    assert twin.state() == "standby" and hw.wire(14).level == 0


@pytest.mark.mipindex
@pytest.mark.parametrize("freq,sf,cfg", [
    (868100, 9, {"invert_iq_rx": False}),  # a receiver with normal IQ does not hear a downlink
    (868100, 7, {}),  # another SF
    (868300, 9, {}),  # another channel
])
def test_a_downlink_the_receiver_is_not_set_for_is_missed(v3, freq, sf, cfg):
    clock, air, twin, lora = v3
    m = _modem(lora)
    m.configure(dict(EU868, sf=9, **cfg))
    t0 = clock.monotonic_us()
    air.schedule("gw", t0 + 20_000, freq, sf, b"\x60other")
    assert m.recv(timeout_ms=100) is None
    # the chip's RxTimeout (100 ms = 6400 steps of 15.625 us) after SetRx, then STDBY_RC
    assert 100_000 <= clock.monotonic_us() - t0 <= 100_000 + 12_000 and twin.state() == "standby"


@pytest.mark.mipindex
def test_a_downlink_after_the_window_is_missed(v3):
    clock, air, twin, lora = v3
    m = _modem(lora)
    m.configure(dict(EU868, sf=9))
    air.schedule("gw", clock.monotonic_us() + 150_000, 868100, 9, b"\x60late")
    assert m.recv(timeout_ms=100) is None


# --- the wire: status byte (DS 13.5.1), Get command layouts, BUSY, sleep, reset, supply ---------------------------
def _raw(cmd: bytes) -> bytes:
    """One command as the MCU clocks it: NSS low, the bytes, NSS high; the MISO bytes."""
    cs = hw.Pin(8, hw.Pin.OUT, value=1)
    spi = hw.SPI(1, sck=hw.Pin(9))
    buf = bytearray(len(cmd))
    cs(0)
    spi.write_readinto(cmd, buf)
    cs(1)
    return bytes(buf)


def test_status_and_get_command_layouts():
    clock = VirtualClock()
    hw.use(clock)
    twin = SX1262Twin(clock, Air(clock), 9, 8, 13, dio1=14)
    # GetStatus (DS 13.5.1): RFU, Status = 0x22 (STDBY_RC, command status 1)
    assert _raw(b"\xc0\x00")[1] == 0x22
    # GetDeviceErrors after a crystal power-on: status, OpError 0x0000
    assert _raw(b"\x17\x00\x00\x00")[1:] == b"\x22\x00\x00"
    # an unknown opcode: the next command's status says "processing error" (0x4)
    _raw(b"\x55\x00")
    assert (_raw(b"\xc0\x00")[1] >> 1) & 7 == 4
    # WriteRegister / ReadRegister (DS 13.2.1-2): data from the 5th byte
    _raw(b"\x0d\x07\x40\x34\x44")
    assert _raw(b"\x1d\x07\x40\x00\x00\x00")[4:] == b"\x34\x44"
    # WriteBuffer / ReadBuffer (DS 13.2.3-4): data from the 4th byte, the offset wraps at 256
    _raw(b"\x0e\xfe\x01\x02\x03")
    assert _raw(b"\x1e\xfe\x00\x00\x00\x00")[3:] == b"\x01\x02\x03"
    # SetDioIrqParams (TxDone on DIO1), SetTx with nothing configured: TxDone raises DIO1, GetIrqStatus shows it
    _raw(b"\x08\x00\x01\x00\x01\x00\x00\x00\x00")
    _raw(b"\x8a\x01")
    _raw(b"\x0d\x07\x40\x34\x44")
    _raw(b"\x83\x00\x00\x00")
    assert twin.state() == "tx" and hw.wire(13).level == 1  # BUSY right after the command
    clock.advance_us(2_000_000)
    assert hw.wire(14).level == 1 and hw.wire(13).level == 0
    r = _raw(b"\x12\x00\x00\x00")
    assert r[1] == 0x2C and r[2:] == b"\x00\x01"  # STDBY_RC, command status 0x6 (TX done); IRQ TxDone
    _raw(b"\x02\xff\xff")  # ClearIrqStatus
    assert hw.wire(14).level == 0 and twin.irq == 0


@pytest.mark.mipindex
def test_sleep_warm_and_cold(v3):
    clock, air, twin, lora = v3
    m = _modem(lora)
    m.configure(EU868)
    m.sleep()  # warm start (DS 13.1.1)
    assert twin.state() == "sleep" and hw.wire(13).level == 1  # BUSY is high while asleep (DS 8.3.1)
    m.send(bytes(5))  # the driver wakes it with an NSS pulse; the configuration was kept
    assert len(air.log) == 1 and air.log[0].freq_khz == 868100
    m.sleep(warm_start=False)
    m.standby()
    assert twin.state() == "standby" and twin.freq_khz == 0 and twin.syncword() == 0x1424  # all lost


@pytest.mark.mipindex
def test_reset_pin_and_supply_rail(v3):
    clock, air, twin, lora = v3
    twin.powered = False
    assert twin.state() == "off" and hw.wire(13).level == 0
    with pytest.raises(RuntimeError, match="Invalid initial status"):  # MISO reads 0x00: mode 0
        _modem(lora)
    twin.powered = True
    m = _modem(lora)
    m.configure(EU868)
    assert twin.freq_khz == 868100 and twin.syncword() == 0x3444
    hw.Pin(12, hw.Pin.OUT, value=0)
    assert twin.state() == "off"
    hw.Pin(12, hw.Pin.OUT, value=1)  # NRESET released: power-on state, BUSY high during the start-up calibration
    assert twin.state() == "standby" and twin.freq_khz == 0 and twin.tcxo_enabled_mv is None
    assert hw.wire(13).level == 1
    clock.advance_us(3500)
    assert hw.wire(13).level == 0


# --- the MicroPython unix port -----------------------------------------------------------------------------------
@pytest.mark.mipindex
def test_under_micropython(lora_lib):
    env = dict(os.environ, MICROPYPATH=f"{lora_lib}:{FIRMWARE_DIR}:{HOST_DIR}")
    proc = subprocess.run([micropython_exe(), "-X", "heapsize=2M", str(MP_SCRIPT)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.splitlines() == [
        "tx 1482752 14 868100 12 False 1800 860 876 standby",
        "rx b' hello' 28 -95",
        "miss None",
        "notcxo True 0",
    ]
