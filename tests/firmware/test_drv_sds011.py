# SDS011 driver: datasheet frames byte for byte, shared vectors, twin behaviour, faults and recovery.
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_uart_pm import SDS011Twin, ReplayPeer, constant
from cnode.drivers.errors import CRCError, FrameError, SensorAbsent, SensorStuck, SensorTimeout
from cnode.drivers.sds011 import SDS011, MODE_ACTIVE, MODE_QUERY, build_command
from fwtest import raises, tohex, unhex

# ../data/driver-vectors/vectors.json "sds011_frames" (Control Protocol V1.3 frames), typed in:
# (frame, pm25 ug/m3, pm10 ug/m3, device id)
VALID = (
    ("aac0d4043a0aa1601dab", 123.6, 261.8, 0xA160),
    ("aac000000000a16001ab", 0.0, 0.0, 0xA160),
    ("aac000000100a16002ab", 0.0, 0.1, 0xA160),
    ("aac002000000a16003ab", 0.2, 0.0, 0xA160),
    ("aac003000400a16008ab", 0.3, 0.4, 0xA160),
    ("aac0ffff0a00a16009ab", 6553.5, 1.0, 0xA160),
    ("aac00a00ffffa16009ab", 1.0, 6553.5, 0xA160),
    ("aac012345678a16015ab", 1333.0, 3080.6, 0xA160),
    ("aac012345678beefc1ab", 1333.0, 3080.6, 0xBEEF),
)
INVALID = (
    ("aac012345678beefc0ab", CRCError),  # bad checksum
    ("abc0d4043a0aa1601eab", FrameError),  # bad header byte
)

# Control Protocol V1.3 examples (sections 3.1, 3.4, 3.5), as printed there:
# (device id, method, args, command sent, sensor reply, returned value)
DATASHEET = (
    (0xFFFF, "reporting_mode", (None,), "AA B4 02 00 00 00 00 00 00 00 00 00 00 00 00 FF FF 00 AB",
     "AA C5 02 00 00 00 A1 60 03 AB", MODE_ACTIVE),
    (0xA160, "reporting_mode", (MODE_QUERY,), "AA B4 02 01 01 00 00 00 00 00 00 00 00 00 00 A1 60 05 AB",
     "AA C5 02 01 01 00 A1 60 05 AB", MODE_QUERY),
    (0xA160, "sleep", (), "AA B4 06 01 00 00 00 00 00 00 00 00 00 00 00 A1 60 08 AB",
     "AA C5 06 01 00 00 A1 60 08 AB", None),
    (0xA160, "wake", (), "AA B4 06 01 01 00 00 00 00 00 00 00 00 00 00 A1 60 09 AB",
     "AA C5 06 01 01 00 A1 60 09 AB", None),
    (0xA160, "working_period", (1,), "AA B4 08 01 01 00 00 00 00 00 00 00 00 00 00 A1 60 0B AB",
     "AA C5 08 01 01 00 A1 60 0B AB", 1),
    (0xA160, "working_period", (0,), "AA B4 08 01 00 00 00 00 00 00 00 00 00 00 00 A1 60 0A AB",
     "AA C5 08 01 00 00 A1 60 0A AB", 0),
    (0xA160, "working_period", (None,), "AA B4 08 00 00 00 00 00 00 00 00 00 00 00 00 A1 60 09 AB",
     "AA C5 08 00 02 00 A1 60 0B AB", 2),
)


def _h(s):
    return unhex(s.replace(" ", ""))


def _x10(x):
    return int(x * 10 + 0.5)


def _line(peer, baud=9600):
    clock = VirtualClock()
    machine.use(clock)
    uart = machine.UART(1, baud)
    uart.attach(peer)
    return clock, uart


def _ramp(ms):  # a series that changes every second
    s = ms // 1000
    return {"pm2_5": 5.0 + (s % 50) / 10, "pm10": 9.0 + (s % 70) / 10}


def test_command_frames_match_datasheet_examples():
    # query mode example of PROT 3.1 for all sensors, and query data of PROT 3.2
    assert tohex(build_command(bytearray(19), 2, 0, 0)) == "aab402000000000000000000000000ffff00ab"
    assert tohex(build_command(bytearray(19), 4, 0, 0)) == "aab404000000000000000000000000ffff02ab"
    assert tohex(build_command(bytearray(19), 4, 0, 0, 0xA160)) == "aab404000000000000000000000000a16005ab"
    assert tohex(build_command(bytearray(19), 6, 1, 0)) == "aab406010000000000000000000000ffff05ab"
    assert tohex(build_command(bytearray(19), 6, 1, 1)) == "aab406010100000000000000000000ffff06ab"


def test_driver_sends_datasheet_commands_and_reads_replies():
    for dev, name, args, sent, reply, result in DATASHEET:
        peer = ReplayPeer([_h(reply)])
        clock, uart = _line(peer)
        d = SDS011(uart, clock, target=dev)
        got = getattr(d, name)(*args)
        assert peer.heard == [_h(sent)], name
        assert got == result, (name, got)


def test_shared_vectors_valid_frames():
    for frame, pm25, pm10, dev in VALID:
        peer = ReplayPeer([unhex(frame)])
        clock, uart = _line(peer)
        d = SDS011(uart, clock)
        d.ready = True  # reporting mode already set: the only exchange is the query
        d.read()
        assert tohex(peer.heard[0]) == "aab404000000000000000000000000ffff02ab"
        assert d.values == [_x10(pm25), _x10(pm10)], frame
        assert d.device_id == dev


def test_shared_vectors_invalid_frames_are_rejected_whole():
    for frame, exc in INVALID:
        clock, uart = _line(ReplayPeer([unhex(frame)]))
        d = SDS011(uart, clock)
        d.ready = True
        raises(exc, d.read)
        assert d.values == [None, None] and d.device_id is None


def test_frame_found_in_garbage_stream():
    # frames split and surrounded by noise, including false heads AA C0 and tails AB
    frame = unhex(VALID[0][0])
    stream = unhex("00aaaac0ab13aa") + frame[:4] + frame[4:] + unhex("aac0ff")
    clock, uart = _line(ReplayPeer([stream]))
    d = SDS011(uart, clock)
    d.ready = True
    d.read()
    assert d.values == [1236, 2618]


def test_twin_frame_is_byte_exact():
    clock = VirtualClock()
    twin = SDS011Twin(clock, constant(123.6, 261.8), device_id=0xA160)
    assert tohex(twin.frame(0)) == "aac0d4043a0aa1601dab"
    twin = SDS011Twin(clock, constant(1333.0, 3080.6), device_id=0xBEEF)
    assert tohex(twin.frame(0)) == "aac012345678beefc1ab"


def test_setup_writes_sensor_flash_only_when_needed():
    clock = VirtualClock()
    machine.use(clock)
    uart = machine.UART(1, 9600)
    twin = uart.attach(SDS011Twin(clock, constant(10.0, 20.0), period=3))
    d = SDS011(uart, clock)
    d.read()
    assert twin.query_mode and twin.period == 0 and twin.flash_writes == 2
    assert d.values == [100, 200]
    d2 = SDS011(uart, clock)  # next boot: settings already right, nothing written
    d2.read()
    assert twin.flash_writes == 2
    # query mode: the sensor answers one frame per query and sends nothing on its own
    clock.sleep_ms(10000)
    assert uart.any() == 0


def test_active_mode_reads_a_frame_per_second():
    clock = VirtualClock()
    machine.use(clock)
    uart = machine.UART(1, 9600)
    twin = uart.attach(SDS011Twin(clock, _ramp))
    d = SDS011(uart, clock, mode=MODE_ACTIVE)
    d.setup()
    assert not twin.query_mode and twin.flash_writes == 0  # factory default already active
    sent = twin.sent_frames
    clock.sleep_ms(10000)
    assert uart.any() == 100  # ten frames of 10 bytes in ten seconds
    assert twin.sent_frames - sent == 10
    t0 = clock.monotonic_ms()
    d.read()  # drops what is queued and waits for a fresh frame
    t = clock.monotonic_ms()
    assert 0 < t - t0 <= 1000
    assert d.values == [_x10(_ramp(t // 1000 * 1000)["pm2_5"]), _x10(_ramp(t // 1000 * 1000)["pm10"])]


def test_sleep_stops_fan_and_frames_wake_restarts():
    clock = VirtualClock()
    machine.use(clock)
    uart = machine.UART(1, 9600)
    twin = uart.attach(SDS011Twin(clock, constant(4.2, 8.4)))
    d = SDS011(uart, clock, mode=MODE_ACTIVE)
    d.read()
    d.sleep()
    assert not twin.fan_on()
    fan = twin.fan_total_ms()
    clock.sleep_ms(600000)
    assert twin.fan_total_ms() == fan  # ten minutes asleep: the fan did not run
    assert uart.any() == 0  # and nothing was sent
    raises(SensorAbsent, d.read)
    d.wake()
    assert twin.fan_on()
    clock.sleep_ms(d.warmup_ms)
    d.read()
    assert d.values == [42, 84]
    assert twin.fan_total_ms() - fan >= 30000


def test_asleep_sensor_ignores_queries():
    clock = VirtualClock()
    machine.use(clock)
    uart = machine.UART(1, 9600)
    twin = uart.attach(SDS011Twin(clock, constant(4.2, 8.4), query_mode=True))
    d = SDS011(uart, clock)
    d.sleep()
    t0 = clock.monotonic_ms()
    raises(SensorAbsent, d.read)
    assert clock.monotonic_ms() - t0 <= d.timeout_ms + 10  # bounded wait
    d.wake()
    d.read()
    assert d.values == [42, 84] and twin.working


def test_each_fault_then_recovery_query_and_active():
    # (fault, error in query mode, error in active mode). Active mode waits 1.5 s, so one lost frame is
    # covered by the next; those faults are injected for two frames there. None: the read gets past it.
    expect = (("checksum", CRCError, CRCError), ("noise", FrameError, FrameError),
              ("truncate", SensorTimeout, SensorTimeout), ("disconnect", SensorAbsent, SensorAbsent),
              ("garbage", None, None))
    for mode in (MODE_QUERY, MODE_ACTIVE):
        for kind, exc_query, exc_active in expect:
            exc = exc_query if mode == MODE_QUERY else exc_active
            clock = VirtualClock()
            machine.use(clock)
            uart = machine.UART(1, 9600)
            twin = uart.attach(SDS011Twin(clock, constant(33.3, 44.4), query_mode=mode == MODE_QUERY))
            d = SDS011(uart, clock, mode=mode)
            d.setup()
            clock.sleep_ms(1500)
            uart.any()  # the twin makes active frames when the line is looked at: catch up first
            twin.inject(kind, 2 if mode == MODE_ACTIVE and kind in ("noise", "truncate", "disconnect") else 1)
            t0 = clock.monotonic_ms()
            if exc is None:
                d.read()
            else:
                raises(exc, d.read)
                assert d.values == [None, None], (mode, kind)
            assert clock.monotonic_ms() - t0 <= d.timeout_ms + 10  # bounded
            d.read()
            assert d.values == [333, 444], (mode, kind)


def test_stuck_value_detected_and_cleared():
    clock = VirtualClock()
    machine.use(clock)
    uart = machine.UART(1, 9600)
    twin = uart.attach(SDS011Twin(clock, _ramp, query_mode=True))
    d = SDS011(uart, clock, stuck_after=3)
    d.read()
    twin.inject("stuck", 3)
    clock.sleep_ms(1000)
    d.read()  # same as before: 2 in a row
    clock.sleep_ms(1000)
    raises(SensorStuck, d.read)  # 3 in a row
    clock.sleep_ms(1000)
    raises(SensorStuck, d.read)
    clock.sleep_ms(1000)
    d.read()  # fault over: values move again
    t = clock.monotonic_ms() // 1000 * 1000
    assert d.values == [_x10(_ramp(t)["pm2_5"]), _x10(_ramp(t)["pm10"])]


def test_working_period_range():
    clock, uart = _line(ReplayPeer([]))
    d = SDS011(uart, clock)
    raises(ValueError, d.working_period, 31)
    raises(ValueError, d.working_period, -1)
    clock = VirtualClock()
    machine.use(clock)
    uart = machine.UART(1, 9600)
    twin = uart.attach(SDS011Twin(clock, constant(1.0)))
    d = SDS011(uart, clock)
    assert d.working_period(5) == 5 and twin.period == 5
    assert d.working_period() == 5


def test_recorded_series_sample_and_hold():
    from citynode.sim.hwsim.twin_uart_pm import RecordedSeries, iso_seconds
    assert iso_seconds("2019-01-01T00:00:44") == 1546300844
    assert iso_seconds("2020-02-29T23:59:59") == 1583020799
    path = "/tmp/citynode_test_sds011_series.csv"
    with open(path, "w") as f:
        f.write("sensor_id;sensor_type;location;lat;lon;timestamp;P1;durP1;ratioP1;P2;durP2;ratioP2\n")
        f.write("15092;SDS011;7647;56.963;-2.211;2019-01-01T00:00:44;9.37;;;3.30;;\n")
        f.write("15092;SDS011;7647;56.963;-2.211;2019-01-01T00:03:30;10.83;;;4.40;;\n")
        f.write("15092;SDS011;7647;56.963;-2.211;2019-01-01T00:04:00;;;;;;\n")
        f.write("15092;SDS011;7647;56.963;-2.211;2019-01-01T00:06:17;10.30;;;3.27;;\n")
    s = RecordedSeries([path])
    assert s.start_s == 1546300844 and s.span_ms == (377 - 44) * 1000
    assert s(0) == {"pm2_5": 3.30, "pm10": 9.37}
    assert s(165999) == {"pm2_5": 3.30, "pm10": 9.37}  # held until the next row
    assert s(166000) == {"pm2_5": 4.40, "pm10": 10.83}
    assert s(250000) == {"pm2_5": 4.40, "pm10": 10.83}  # the empty row is skipped
    assert s(10 ** 9) == {"pm2_5": 3.27, "pm10": 10.30}
    # the twin sends the recorded values at 0.1 ug/m3
    clock = VirtualClock()
    machine.use(clock)
    uart = machine.UART(1, 9600)
    uart.attach(SDS011Twin(clock, s, query_mode=True))
    d = SDS011(uart, clock)
    clock.sleep_ms(170000)
    d.read()
    assert d.values == [44, 108]


def test_active_mode_lost_frame_covered_by_the_next():
    # active mode waits 1.5 s (PROT: a frame each 1 + 0.5 s): one missing or cut frame costs no reading
    for kind in ("disconnect", "truncate", "noise"):
        clock = VirtualClock()
        machine.use(clock)
        uart = machine.UART(1, 9600)
        twin = uart.attach(SDS011Twin(clock, constant(7.7, 8.8)))
        d = SDS011(uart, clock, mode=MODE_ACTIVE)
        d.setup()
        clock.sleep_ms(1500)
        uart.any()
        twin.inject(kind)
        t0 = clock.monotonic_ms()
        d.read()
        assert d.values == [77, 88] and 1000 < clock.monotonic_ms() - t0 <= 1500, kind
