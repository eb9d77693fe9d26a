# SCD4x driver: wire bytes, conversions, first reading after 5 s, a synthetic day, faults and recovery.
import cnode  # noqa: F401
from cnode.drivers import scd4x
from cnode.drivers.errors import CRCError, SensorAbsent, SensorStuck, SensorTimeout
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_sensirion import SCD4xTwin, crc8
from fwtest import load_json, raises


def _setup(noise=0, **kw):
    clock = VirtualClock()
    i2c = machine.I2C(0)
    twin = i2c.attach(0x62, SCD4xTwin(clock, noise=noise))
    drv = scd4x.SCD4x(i2c, clock, th=True, **kw)
    return clock, i2c, twin, drv


def _close(drv, twin):
    tg = twin.target
    return (abs(drv.values[0] - tg["co2"]) <= 1 and abs(drv.values[1] - tg["temperature"] * 100) <= 1 and
            abs(drv.values[2] - tg["humidity"] * 10) <= 1)


def test_conversions_datasheet():
    # datasheet 3.6: T = -45 + 175 * w / 2**16, RH = 100 * w / 2**16
    assert scd4x.temperature_centi(0) == -4500
    assert scd4x.temperature_centi(0x6667) == 2500  # 26215 -> 70.0006 - 45
    assert scd4x.temperature_centi(0xFFFF) == 13000  # 129.9973 rounds to 130.00
    assert scd4x.temperature_centi(0x8000) == 4250  # 87.5 - 45
    assert scd4x.humidity_deci(0x8000) == 500
    assert scd4x.humidity_deci(0x5EB8) == 370  # 24248 -> 36.999
    assert scd4x.humidity_deci(0xFFFF) == 1000


def test_first_reading_after_five_seconds_and_wire_bytes():
    clock, i2c, twin, drv = _setup()
    assert drv.channels == ("co2", "temperature", "humidity")
    drv.read()
    assert twin.writes[0] == b"\x21\xb1"  # start_periodic_measurement
    assert twin.writes[1] == b"\xe4\xb8"  # get_data_ready_status
    assert twin.writes[-1] == b"\xec\x05"  # read_measurement
    assert 5000 <= clock.monotonic_ms() <= 5010
    assert _close(drv, twin)
    assert drv.raw == list(twin.words)


def test_co2_only_channels():
    clock = VirtualClock()
    i2c = machine.I2C(0)
    twin = i2c.attach(0x62, SCD4xTwin(clock))
    drv = scd4x.SCD4x(i2c, clock)
    drv.read()
    assert drv.channels == ("co2",) and len(drv.values) == 1
    assert abs(drv.values[0] - twin.target["co2"]) <= 1
    assert abs(drv.temperature - twin.target["temperature"] * 100) <= 1


def test_set_ambient_pressure_and_stop():
    clock, i2c, twin, drv = _setup()
    drv.start()
    drv.set_ambient_pressure(98765)
    assert twin.writes[-1] == b"\xe0\x00\x03\xdc" + bytes([crc8(b"\x03\xdc")])  # 988 hPa = 0x03DC + CRC
    assert twin.ambient_hpa == 988
    drv.stop()
    assert twin.writes[-1] == b"\x3f\x86" and not twin.periodic
    assert drv.serial_number() == 0xF8969F073BB3


def test_synthetic_day_within_one_step():
    clock, i2c, twin, drv = _setup()
    for _ in range(144):
        clock.advance_ms(600000)
        drv.read()
        assert _close(drv, twin), (drv.values, twin.target)


def test_nack_then_recovery():
    clock, i2c, twin, drv = _setup()
    drv.read()
    clock.advance_ms(10000)
    i2c.inject(0x62, "nack", 1)
    raises(SensorAbsent, drv.read)
    drv.read()
    assert _close(drv, twin)


def test_bad_crc_then_recovery():
    clock, i2c, twin, drv = _setup()
    drv.read()
    clock.advance_ms(10000)
    twin.fault("crc", 2)  # the next two replies: the data-ready reply of each of the next two reads
    raises(CRCError, drv.read)
    raises(CRCError, drv.read)
    drv.read()
    assert _close(drv, twin)


def test_disconnect_mid_read_then_recovery():
    clock, i2c, twin, drv = _setup()
    clock.call_at_ms(2000, lambda: i2c.inject(0x62, "short", 1))  # during the 5 s start-up wait
    raises(SensorAbsent, drv.read)
    drv.read()
    assert _close(drv, twin)


def test_never_ready_times_out_within_bound():
    clock, i2c, twin, drv = _setup()
    drv.read()
    twin.fault("never_ready", None)
    t0 = clock.monotonic_ms()
    raises(SensorTimeout, drv.read)
    assert 5500 <= clock.monotonic_ms() - t0 <= 5700
    twin.clear_faults()
    drv.read()
    assert _close(drv, twin)


def test_stuck_value_then_recovery():
    clock, i2c, twin, drv = _setup(stuck_reads=3)
    drv.read()
    twin.fault("stuck", 2)
    drv.read()
    raises(SensorStuck, drv.read)
    clock.advance_ms(600000)
    drv.read()
    assert _close(drv, twin)


class _Timed(SCD4xTwin):
    """The twin with the clock time of every write transfer (acknowledged or not)."""

    def __init__(self, clock, **kw):
        SCD4xTwin.__init__(self, clock, **kw)
        self.log = []

    def write(self, data):
        self.log.append((self.clock.monotonic_ms(), bytes(data)))
        SCD4xTwin.write(self, data)


def _shot_setup(asleep=True):
    clock = VirtualClock()
    i2c = machine.I2C(0)
    twin = i2c.attach(0x62, _Timed(clock, noise=0))
    twin.asleep = asleep  # powered down, as the driver leaves it between readings
    drv = scd4x.SCD4x(i2c, clock, th=True, mode="single_shot")
    return clock, i2c, twin, drv


def _shot_wire(t0):
    # DS 3.10: wake_up (never acknowledged; 30 ms), measure_single_shot to discard (DS 3.10.4) and one to keep
    # (5000 ms each), get_data_ready_status (1 ms), read_measurement (1 ms), power_down (1 ms)
    return [(t0, b"\x36\xf6"), (t0 + 30, b"\x21\x9d"), (t0 + 5030, b"\x21\x9d"), (t0 + 10030, b"\xe4\xb8"),
            (t0 + 10031, b"\xec\x05"), (t0 + 10032, b"\x36\xe0")]


def test_single_shot_wire_bytes_and_times():
    clock, i2c, twin, drv = _shot_setup()
    drv.read()
    assert twin.log == _shot_wire(0)
    assert clock.monotonic_ms() == 10033
    assert _close(drv, twin) and drv.raw == list(twin.words)
    assert twin.asleep and not twin.periodic and twin.results == 2  # the discarded shot and the kept one
    clock.advance_ms(300000 - 10033)  # the next reading 5 minutes later: the same sequence
    twin.log = []
    drv.read()
    assert twin.log == _shot_wire(300000)
    assert _close(drv, twin) and twin.asleep and twin.results == 4


def test_single_shot_tolerates_the_unacknowledged_wake_up():
    clock, i2c, twin, drv = _shot_setup()
    raises(OSError, i2c.writeto, 0x62, b"\x36\xf6")  # the twin NACKs wake_up, as the sensor does (DS 3.10.4)
    twin.asleep = True
    twin.idle_from_us = 0
    twin.log = []
    drv.read()  # from sleep: wake_up NACKed
    assert twin.log == _shot_wire(0) and _close(drv, twin)
    clock2, i2c2, twin2, drv2 = _shot_setup(asleep=False)
    drv2.read()  # idle after power-on: wake_up NACKed all the same
    assert twin2.log == _shot_wire(0) and _close(drv2, twin2) and twin2.asleep


def test_single_shot_without_a_result_times_out_and_still_powers_down():
    clock, i2c, twin, drv = _shot_setup()
    twin.fault("never_ready", 2)  # neither shot gives a result
    e = raises(SensorTimeout, drv.read)
    assert "5500" in str(e)
    assert 15530 <= clock.monotonic_ms() <= 15700  # 30 ms + 2 x 5 s of shots, then the 5.5 s bound
    assert twin.log[-1][1] == b"\x36\xe0" and twin.asleep  # powered down all the same
    assert b"\xec\x05" not in [w for t, w in twin.log]  # nothing to read
    twin.clear_faults()
    drv.read()
    assert _close(drv, twin) and twin.asleep


def test_single_shot_on_a_missing_sensor_is_absent():
    clock = VirtualClock()
    i2c = machine.I2C(0)
    drv = scd4x.SCD4x(i2c, clock, mode="single_shot")
    raises(SensorAbsent, drv.read)  # the wake_up NACK is expected; measure_single_shot's is not


def test_single_shot_is_refused_during_periodic_measurement():
    # measure_single_shot and power_down are idle-mode commands (DS Table 9: not during measurement)
    clock, i2c, twin, drv = _setup()
    drv.read()  # periodic mode
    shot = scd4x.SCD4x(i2c, clock, mode="single_shot")
    raises(SensorAbsent, shot.read)
    assert twin.periodic and not twin.asleep


def test_mode_is_checked():
    clock = VirtualClock()
    raises(ValueError, scd4x.SCD4x, machine.I2C(0), clock, mode="sleepy")


def test_board_file_mode_reaches_the_driver():
    from cnode.board import Hardware
    board = load_json("boards/heltec-wifi-lora-32-v3.json")
    clock = VirtualClock()
    machine.use(clock, board["chip"])
    hw = Hardware(board, machine)
    twin = hw.i2c().attach(0x62, SCD4xTwin(clock, noise=0))
    twin.asleep = True
    drv = [s.driver for s in hw.slots(clock) if type(s.driver).__name__ == "SCD4x"][0]
    drv.read()
    assert twin.writes[0] == b"\x36\xf6" and twin.writes[-1] == b"\x36\xe0" and twin.asleep
    assert abs(drv.values[0] - twin.target["co2"]) <= 1
