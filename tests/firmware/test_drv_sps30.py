# SPS30 UART (SHDLC) driver: datasheet frames, shared vectors, a real capture, twin, faults and recovery.
import struct

from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_uart_pm import SPS30Twin, ReplayPeer, constant, shdlc_frame
from cnode.drivers.errors import CRCError, FrameError, SensorAbsent, SensorStuck, SensorTimeout
from cnode.drivers.sps30 import SPS30, FORMAT_FLOAT, FORMAT_UINT16, build, float10
from fwtest import Lcg, raises, tohex, unhex

# MOSI frames printed in the SPS30 datasheet v1.0, section 5.3 (command, data, frame)
MOSI = (
    (0x00, b"\x01\x03", "7E 00 00 02 01 03 F9 7E"),  # 5.3.1 start measurement, float
    (0x00, b"\x01\x05", "7E 00 00 02 01 05 F7 7E"),  # 5.3.1 start measurement, uint16
    (0x01, b"", "7E 00 01 00 FE 7E"),  # 5.3.2 stop measurement
    (0x03, b"", "7E 00 03 00 FC 7E"),  # 5.3.3 read measured values
    (0x10, b"", "7E 00 10 00 EF 7E"),  # 5.3.4 sleep
    # 5.3.5 wake-up, printed "7E 00 11 00 EE 7E"; 0x11 is stuffed by the rule of 5.2, as Sensirion's own
    # embedded SHDLC driver does (sensirion_shdlc_tx stuffs address, command and length); the sensor
    # accepts both forms (see WAKE_NOT_ALLOWED: the capture answered an unstuffed wake-up)
    (0x11, b"", "7E 00 7D 31 00 EE 7E"),
    (0x80, b"\x00", "7E 00 80 01 00 7D 5E 7E"),  # 5.3.7 read auto cleaning interval: checksum 7E stuffed
    (0xD0, b"\x00", "7E 00 D0 01 00 2E 7E"),  # 5.3.8 device information, product type
    (0xD0, b"\x03", "7E 00 D0 01 03 2B 7E"),  # 5.3.8 device information, serial number
    (0xD3, b"", "7E 00 D3 00 2C 7E"),  # 5.3.11 device reset
)

# ../data/driver-vectors/vectors.json "sps30_shdlc", typed in
START_OK = "7e00000000ff7e"
SERIAL_ZEROS = "7e00d000153030303030303030303030303030303030303030005a7e"
# A real SPS30's answer to a wake-up sent while it was awake (raspberrypi.stackexchange.com question 137657):
# state 0x43 "command not allowed in current state", and the command byte 0x11 stuffed as 7D 31.
WAKE_NOT_ALLOWED = "7e007d314300ab7e"


def _h(s):
    return unhex(s.replace(" ", "").lower())


def _line(peer):
    clock = VirtualClock()
    machine.use(clock)
    uart = machine.UART(1, 115200)
    uart.attach(peer)
    return clock, uart


def _twin(series, **kw):
    clock = VirtualClock()
    machine.use(clock)
    uart = machine.UART(1, 115200)
    twin = uart.attach(SPS30Twin(clock, series, **kw))
    return clock, uart, twin


def _ramp(ms):
    s = ms // 1000
    return {"pm1": 3.0 + s % 7, "pm2_5": 5.0 + s % 11, "pm10": 9.0 + s % 13}


def test_mosi_frames_match_datasheet():
    for cmd, data, frame in MOSI:
        assert tohex(build(cmd, data)) == tohex(_h(frame)), frame
        assert tohex(shdlc_frame(bytes([0, cmd, len(data)]) + data)) == tohex(_h(frame))  # twin's encoder


def test_shared_vectors_start_and_serial():
    peer = ReplayPeer([_h(START_OK), _h(SERIAL_ZEROS)])
    clock, uart = _line(peer)
    d = SPS30(uart, clock)
    d.start()
    assert d.measuring and d.state == 0 and not d.device_error
    assert d.info() == "00000000000000000000"
    assert peer.heard == [_h("7E 00 00 02 01 05 F7 7E"), _h("7E 00 D0 01 03 2B 7E")]


def test_twin_answers_match_shared_vectors():
    clock, uart, twin = _twin(constant(1.0))
    uart.write(_h("7E 00 D0 01 03 2B 7E"))
    clock.sleep_ms(20)
    assert tohex(uart.read()) == SERIAL_ZEROS
    uart.write(_h("7E 00 00 02 01 05 F7 7E"))
    clock.sleep_ms(20)
    assert tohex(uart.read()) == START_OK
    uart.write(_h("7E 00 11 00 EE 7E"))  # wake-up while measuring: not allowed, as the real sensor says
    clock.sleep_ms(20)
    assert tohex(uart.read()) == WAKE_NOT_ALLOWED


def test_real_capture_state_error():
    # wake() accepts 0x43 (it was awake) and starts measuring
    peer = ReplayPeer([_h(WAKE_NOT_ALLOWED), _h(START_OK)])
    clock, uart = _line(peer)
    d = SPS30(uart, clock)
    d.wake()
    assert d.measuring
    assert peer.heard[0] == b"\xff" + _h("7E 00 7D 31 00 EE 7E")  # low pulse, then the command (DS 5.3.5)
    # the same state on a read is an error; the driver starts measuring again at the next read
    busy = tohex(shdlc_frame(b"\x00\x03\x43\x00"))
    peer.replies = [unhex(busy)]
    e = raises(FrameError, d.read)
    assert "0x43" in str(e) and not d.measuring
    values = shdlc_frame(b"\x00\x03\x00\x14" + struct.pack(">10H", 1, 2, 3, 4, 5, 6, 7, 8, 9, 600))
    peer.replies = [_h(START_OK), values]
    d.read()
    assert d.values == [10, 20, 40]
    assert peer.heard[-2:] == [_h("7E 00 00 02 01 05 F7 7E"), _h("7E 00 03 00 FC 7E")]


def test_device_error_flag_is_kept():
    values = shdlc_frame(b"\x00\x03\x80\x14" + struct.pack(">10H", 11, 22, 33, 44, 5, 6, 7, 8, 9, 600))
    clock, uart = _line(ReplayPeer([values]))
    d = SPS30(uart, clock)
    d.measuring = True
    d.read()
    assert d.device_error and d.values == [110, 220, 440]


def test_uint16_values_scaled_to_channels():
    clock, uart, twin = _twin(constant(12.34, 20.0, 7.77))
    d = SPS30(uart, clock)
    d.read()
    assert twin.fmt == FORMAT_UINT16
    assert d.values == [80, 120, 200]  # whole ug/m3 x 10
    assert clock.monotonic_ms() >= 1000  # the first values exist one second after the start


def test_float_format_keeps_tenths_without_floats():
    clock, uart, twin = _twin(constant(12.34, 20.0, 7.77))
    d = SPS30(uart, clock, fmt=FORMAT_FLOAT)
    d.read()
    assert twin.fmt == FORMAT_FLOAT
    assert d.values == [78, 123, 200]


def test_float10_matches_struct():
    rnd = Lcg(3)
    for i in range(400):
        x = rnd.randint(0, 1 << 20) / (1 << rnd.randint(0, 20))
        b = struct.pack(">f", x)
        y = struct.unpack(">f", b)[0]
        assert float10(b, 0) == int(y * 10 + 0.5), (x, y)
    assert float10(struct.pack(">f", -3.0), 0) == 0
    raises(FrameError, float10, b"\x7f\x80\x00\x00", 0)  # infinity


def test_byte_stuffing_in_measured_values():
    # 0x117E and 0x137D ug/m3 put 11, 7E, 13, 7D on the line: all stuffed, all restored
    clock, uart, twin = _twin(constant(0x117E, 0x137D, 0x7D13))
    d = SPS30(uart, clock)
    d.read()
    assert d.values == [0x7D13 * 10, 0x117E * 10, 0x137D * 10]


def test_sleep_wake_cycle():
    clock, uart, twin = _twin(constant(5.0, 9.0, 3.0))
    d = SPS30(uart, clock)
    d.read()
    d.sleep()
    assert twin.state == SPS30Twin.SLEEP and not twin.fan_on() and not d.measuring
    raises(SensorAbsent, d.read)  # the UART is off while asleep
    d.wake()
    assert twin.state == SPS30Twin.MEASURING and twin.fan_on()
    d.read()
    assert d.values == [30, 50, 90]
    heard = [tohex(f) for f in twin.heard]
    assert "7e000100fe7e" in heard and "7e001000ef7e" in heard and "7e007d3100ee7e" in heard


def test_reset_then_measuring_again():
    clock, uart, twin = _twin(constant(5.0, 9.0, 3.0))
    d = SPS30(uart, clock)
    d.read()
    d.reset()
    assert twin.resets == 1 and twin.state == SPS30Twin.IDLE
    d.read()
    assert d.values == [30, 50, 90] and twin.state == SPS30Twin.MEASURING


def test_each_fault_then_recovery():
    expect = (("checksum", CRCError), ("noise", FrameError), ("truncate", SensorTimeout),
              ("disconnect", SensorAbsent), ("garbage", None))
    for kind, exc in expect:
        clock, uart, twin = _twin(constant(15.0, 25.0, 10.0))
        d = SPS30(uart, clock)
        d.start()
        clock.sleep_ms(1500)
        twin.inject(kind)
        t0 = clock.monotonic_ms()
        if exc is None:
            d.read()
        else:
            raises(exc, d.read)
            assert d.values == [None, None, None], kind
        assert clock.monotonic_ms() - t0 <= d.timeout_ms + 10, kind
        d.read()
        assert d.values == [100, 150, 250], kind


def test_no_new_values_wait_is_bounded():
    empty = shdlc_frame(b"\x00\x03\x00\x00")
    clock, uart = _line(ReplayPeer([empty] * 100))
    d = SPS30(uart, clock)
    d.measuring = True
    t0 = clock.monotonic_ms()
    raises(SensorTimeout, d.read)
    assert d.read_timeout_ms <= clock.monotonic_ms() - t0 <= d.read_timeout_ms + 150


def test_stuck_value_detected():
    clock, uart, twin = _twin(_ramp)
    d = SPS30(uart, clock, stuck_after=2)
    d.read()
    twin.inject("stuck", 2)
    clock.sleep_ms(1000)
    raises(SensorStuck, d.read)
    clock.sleep_ms(1000)
    raises(SensorStuck, d.read)
    clock.sleep_ms(1000)
    d.read()
    assert d.values[1] == int(_ramp(clock.monotonic_ms() // 1000 * 1000)["pm2_5"]) * 10
