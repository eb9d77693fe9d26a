# SCD4x driver: wire bytes, conversions, first reading after 5 s, a synthetic day, faults and recovery.
import cnode  # noqa: F401
from cnode.drivers import scd4x
from cnode.drivers.errors import CRCError, SensorAbsent, SensorStuck, SensorTimeout
from citynode.hwsim import machine
from citynode.hwsim.clock import VirtualClock
from citynode.hwsim.twin_sensirion import SCD4xTwin, crc8
from fwtest import raises


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
