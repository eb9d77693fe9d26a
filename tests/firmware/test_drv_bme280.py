# BME280 driver: datasheet vector, calibration packing, exact integer compensation, wire bytes, twin day, faults.
import cnode  # noqa: F401  (const shim under CPython)
from cnode.drivers import bme280
from cnode.drivers.errors import FrameError, SensorAbsent, SensorStuck, SensorTimeout
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_bme280 import BME280Twin, comp_h_q22_10, comp_p_q24_8, comp_t_fine, constant
from fwtest import Lcg, raises

# BMP280 datasheet 8.1 worked example (+ BME280 humidity), as in driver-vectors "bmx280_compensation"
DIG_T = (27504, 26435, -1000)
DIG_P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
DIG_H = (75, 363, 0, 315, 50, 30)
RAW_T, RAW_P, RAW_H = 519888, 415148, 28437

# the same calibration as register bytes, typed from the datasheet layout (Table 16, little-endian words;
# 0xE4/0xE5/0xE6 pack dig_H4 and dig_H5 as 12-bit values sharing the nibbles of 0xE5)
REGS_88 = bytes([0x70, 0x6B, 0x43, 0x67, 0x18, 0xFC, 0x7D, 0x8E, 0x43, 0xD6, 0xD0, 0x0B, 0x27, 0x0B,
                 0x8C, 0x00, 0xF9, 0xFF, 0x8C, 0x3C, 0xF8, 0xC6, 0x70, 0x17, 0x00, 0x4B])
REGS_E1 = bytes([0x6B, 0x01, 0x00, 0x13, 0x2B, 0x03, 0x1E])


def _cal():
    return list(DIG_T) + list(DIG_P) + list(DIG_H)


def _rel(a, b):
    return abs(a - b) / abs(b)


def _setup(series=None, noise=0, **kw):
    clock = VirtualClock()
    i2c = machine.I2C(0)
    twin = i2c.attach(0x76, BME280Twin(clock, series, noise=noise) if series else BME280Twin(clock, noise=noise))
    drv = bme280.BME280(i2c, clock, **kw)
    return clock, i2c, twin, drv


def _p32_reference(cal, adc_p, tf):
    # BMP280 datasheet 8.2 bmp280_compensate_P_int32, written plainly (Python ints never overflow)
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = cal[3:12]
    var1 = (tf >> 1) - 64000
    var2 = (((var1 >> 2) * (var1 >> 2)) >> 11) * p6
    var2 = var2 + ((var1 * p5) << 1)
    var2 = (var2 >> 2) + (p4 << 16)
    var1 = (((p3 * (((var1 >> 2) * (var1 >> 2)) >> 13)) >> 3) + ((p2 * var1) >> 1)) >> 18
    var1 = ((32768 + var1) * p1) >> 15
    p = ((1048576 - adc_p) - (var2 >> 12)) * 3125
    if p < 0x80000000:
        p = (p << 1) // var1
    else:
        p = (p // var1) * 2
    var1 = (p9 * (((p >> 3) * (p >> 3)) >> 13)) >> 12
    var2 = ((p >> 2) * p8) >> 13
    return p + ((var1 + var2 + p7) >> 4)


def test_datasheet_vector():
    cal = _cal()
    tf = bme280.t_fine(cal, RAW_T)
    assert tf == 128422
    assert bme280.temperature_centi(tf) == 2508  # 25.08 degC
    p64 = bme280.pressure_q24_8(cal, RAW_P, tf) / 256.0
    assert _rel(p64 / 100.0, 1006.5327) < 0.001
    assert abs(p64 - 100653.27) < 0.5  # the 64-bit formula is exact to the datasheet's value
    assert _rel(bme280.pressure_pa(cal, RAW_P, tf) / 100.0, 1006.5327) < 0.001
    assert _rel(bme280.humidity_q10(cal, RAW_H, tf) / 1024.0, 45.708218) < 0.001


def test_calibration_nibble_packing():
    cal = bme280.parse_calibration(REGS_88, REGS_E1, [0] * 18)
    assert cal == _cal()
    # negative dig_H4 / dig_H5: 0xE4 = 0xFF, 0xE5 = 0x8B, 0xE6 = 0xF0 -> H4 = -16 | 0xB = -5, H5 = -256 | 0x8 = -248
    e = bytes([0x6B, 0x01, 0x00, 0xFF, 0x8B, 0xF0, 0xE2])
    cal = bme280.parse_calibration(REGS_88, e, [0] * 18)
    assert cal[15] == -5 and cal[16] == -248 and cal[17] == -30


def test_twin_register_map_matches_datasheet_bytes():
    twin = BME280Twin(VirtualClock(), t=DIG_T, p=DIG_P, h=DIG_H)
    assert bytes(twin.regs[0x88:0xA2]) == REGS_88
    assert bytes(twin.regs[0xE1:0xE8]) == REGS_E1
    assert twin.regs[0xD0] == 0x60


def test_split_arithmetic_equals_plain_formulas():
    cal = _cal()
    rng = Lcg(280)
    for _ in range(400):
        at = rng.randint(300000, 700000)
        ap = rng.randint(200000, 700000)
        ah = rng.randint(10000, 60000)
        tf = bme280.t_fine(cal, at)
        assert tf == comp_t_fine(DIG_T, at)
        assert bme280.humidity_q10(cal, ah, tf) == comp_h_q22_10(DIG_H, ah, tf)
        assert bme280.pressure_pa(cal, ap, tf) == _p32_reference(cal, ap, tf)
        assert bme280.pressure_q24_8(cal, ap, tf) == comp_p_q24_8(DIG_P, ap, tf)


def test_wire_bytes_init_and_forced_read():
    clock, i2c, twin, drv = _setup()
    assert twin.writes[0] == b"\xd0"  # chip id
    assert twin.writes[1] == b"\xe0\xb6"  # soft reset
    assert twin.writes[2] == b"\xf3"  # status (im_update)
    assert twin.writes[3:] == [b"\x88", b"\xe1", b"\xf5\x00"]
    del twin.writes[:]
    t0 = clock.monotonic_ms()
    drv.read()
    # ctrl_hum x1, then ctrl_meas osrs_t x1 | osrs_p x1 | forced, status polls, burst read from 0xF7
    assert twin.writes[0] == b"\xf2\x01"
    assert twin.writes[1] == b"\xf4\x25"
    assert twin.writes[-1] == b"\xf7"
    assert all(w == b"\xf3" for w in twin.writes[2:-1]) and len(twin.writes) >= 4
    assert clock.monotonic_ms() - t0 <= drv.max_ms
    assert twin.measurements == 1


def test_vector_raw_through_the_bus():
    clock, i2c, twin, drv = _setup()
    twin.fault("stuck", 1, raw=(RAW_T, RAW_P, RAW_H))
    drv.read()
    assert drv.raw == [RAW_T, RAW_P, RAW_H]
    assert drv.values == [2508, 457, 100653]  # 25.08 degC, 45.7 %RH, 100653 Pa


def _day(drv, twin, clock, ptol):
    worst = [0, 0, 0]
    for _ in range(144):
        clock.advance_ms(600000)
        drv.read()
        tg = twin.target
        d = (abs(drv.values[0] - tg["temperature"] * 100), abs(drv.values[1] - tg["humidity"] * 10),
             abs(drv.values[2] - tg["pressure"]))
        for i in range(3):
            worst[i] = max(worst[i], d[i])
    assert worst[0] <= 1 and worst[1] <= 1 and worst[2] <= ptol, worst
    return worst


def test_synthetic_day_within_one_step():
    clock, i2c, twin, drv = _setup()
    _day(drv, twin, clock, 1)


def test_synthetic_day_32bit_pressure():
    clock, i2c, twin, drv = _setup(p64=False)
    _day(drv, twin, clock, 6)  # the 32-bit formula stays within a few Pa (4.7 here) of the 64-bit reference


def test_noisy_twin_constant_series_is_not_stuck():
    # the twin's default 1-LSB noise: readings stay close and a steady environment is not "stuck"
    clock, i2c, twin, drv = _setup(constant(temperature=21.0, humidity=50.0, pressure=100000.0), noise=1)
    for _ in range(60):
        clock.advance_ms(60000)
        drv.read()
        assert abs(drv.values[0] - 2100) <= 2 and abs(drv.values[1] - 500) <= 2 and abs(drv.values[2] - 100000) <= 2


def test_humidity_clamps():
    for rh, want in ((0.0, 0), (100.0, 1000)):
        clock, i2c, twin, drv = _setup(constant(humidity=rh))
        drv.read()
        assert drv.values[1] == want


def test_nack_then_recovery():
    clock, i2c, twin, drv = _setup()
    i2c.inject(0x76, "nack", 1)
    raises(SensorAbsent, drv.read)
    clock.advance_ms(1000)
    drv.read()
    assert abs(drv.values[0] - twin.target["temperature"] * 100) <= 1


def test_bus_timeout_then_recovery():
    clock, i2c, twin, drv = _setup()
    i2c.inject(0x76, "timeout", 1)
    raises(SensorTimeout, drv.read)
    drv.read()


def test_disconnect_mid_read_then_recovery():
    clock, i2c, twin, drv = _setup()
    clock.call_at_ms(clock.monotonic_ms() + 4, lambda: i2c.inject(0x76, "short", 1))
    raises(SensorAbsent, drv.read)  # the transfer after the start of the measurement fails
    clock.advance_ms(1000)
    drv.read()
    assert abs(drv.values[2] - twin.target["pressure"]) <= 1


def test_never_ready_times_out_within_bound():
    clock, i2c, twin, drv = _setup()
    twin.fault("never_ready", 1)
    t0 = clock.monotonic_ms()
    raises(SensorTimeout, drv.read)
    assert clock.monotonic_ms() - t0 <= drv.max_ms + 1
    assert drv.max_ms == 12  # 9.3 ms (datasheet 9.1, all x1) rounded up + 2 ms margin
    drv.read()
    assert abs(drv.values[1] - twin.target["humidity"] * 10) <= 1


def test_stuck_value_then_recovery():
    clock, i2c, twin, drv = _setup(stuck_reads=3)
    drv.read()
    twin.fault("stuck", 2)  # the next two measurements repeat the last raw
    clock.advance_ms(60000)
    drv.read()
    clock.advance_ms(60000)
    raises(SensorStuck, drv.read)
    clock.advance_ms(60000)
    drv.read()
    assert abs(drv.values[0] - twin.target["temperature"] * 100) <= 1


def test_absent_and_wrong_chip():
    clock = VirtualClock()
    i2c = machine.I2C(0)
    raises(SensorAbsent, bme280.BME280, i2c, clock)
    twin = i2c.attach(0x77, BME280Twin(clock))
    twin.regs[0xD0] = 0x58  # a BMP280
    raises(FrameError, bme280.BME280, i2c, clock, 0x77)
    twin.regs[0xD0] = 0x60
    drv = bme280.BME280(i2c, clock, 0x77)
    drv.read()


def test_skipped_measurement_is_a_frame_error():
    clock, i2c, twin, drv = _setup()
    twin.fault("stuck", 1, raw=(0x80000, 0x80000, 0x8000))  # reset values: nothing measured
    raises(FrameError, drv.read)
    drv.read()
