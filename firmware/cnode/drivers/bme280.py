# Bosch BME280 temperature / humidity / pressure over I2C (0x76 or 0x77), forced mode, integer compensation.
#
# Datasheet: Bosch BST-BME280-DS002 rev 1.6. Register map 5.3 (Table 18), calibration layout 4.2.2
# (Table 16), integer compensation 4.2.3 / 8.2, measurement time 9.1. The 32-bit pressure formula is the
# one of the BMP280 datasheet BST-BMP280-DS001 8.2 (same coefficients; Bosch ships it for the BME280 as
# bme280_compensate_P_int32) and gives whole pascals, our channel's resolution.
#
# Small ints: on a 32-bit port (ESP32) MicroPython ints above 2**30 become heap-allocated big ints. The
# Bosch formulas multiply 17..20-bit values by 16-bit coefficients, so every product that can pass 2**30 goes
# through _mulshr, which computes the exact floor((a*b + r) / 2**s) from 8-bit halves. The results are
# bit-identical to the datasheet's int32/int64 arithmetic (tests compare against a plain big-int version).
from micropython import const

from cnode.drivers.i2creg import I2CReg
from cnode.drivers.errors import FrameError, SensorAbsent, SensorTimeout, count_stuck, same_bytes

ADDR = const(0x76)  # SDO to GND; 0x77 with SDO to VDDIO
_REG_CALIB00 = const(0x88)  # 0x88..0xA1: dig_T1..dig_P9, 0xA0 reserved, 0xA1 dig_H1
_REG_ID = const(0xD0)
_REG_RESET = const(0xE0)
_REG_CALIB26 = const(0xE1)  # 0xE1..0xE7: dig_H2..dig_H6
_REG_CTRL_HUM = const(0xF2)
_REG_STATUS = const(0xF3)
_REG_CTRL_MEAS = const(0xF4)
_REG_CONFIG = const(0xF5)
_REG_PRESS_MSB = const(0xF7)  # 0xF7..0xFE: press[19:0], temp[19:0], hum[15:0]
CHIP_ID = const(0x60)
_RESET_WORD = const(0xB6)
_ST_MEASURING = const(0x08)
_ST_IM_UPDATE = const(0x01)
_MODE_FORCED = const(0x01)
_STARTUP_MS = const(2)  # datasheet 1 (Table 1): start-up time 2 ms
_NVM_MAX_MS = const(10)  # our bound on the NVM copy after reset (im_update)
_MARGIN_MS = const(2)

# calibration list indexes
_T1 = const(0)
_T2 = const(1)
_T3 = const(2)
_P1 = const(3)
_P2 = const(4)
_P3 = const(5)
_P4 = const(6)
_P5 = const(7)
_P6 = const(8)
_P7 = const(9)
_P8 = const(10)
_P9 = const(11)
_H1 = const(12)
_H2 = const(13)
_H3 = const(14)
_H4 = const(15)
_H5 = const(16)
_H6 = const(17)


def _mulshr(a, b, s, r=0):
    """floor((a*b + r) / 2**s), exact, from a split of a into its low k = min(s, 8) bits and the rest,
    so no intermediate grows beyond about |a*b| / 2**k and 2**k * |b|."""
    k = 8 if s >= 8 else s
    return ((a >> k) * b + (((a & ((1 << k) - 1)) * b + r) >> k)) >> (s - k)


def _u16(b, i):
    return b[i] | (b[i + 1] << 8)


def _s16(b, i):
    v = b[i] | (b[i + 1] << 8)
    return v - 0x10000 if v & 0x8000 else v


def _s8(v):
    return v - 0x100 if v & 0x80 else v


def parse_calibration(c, e, cal):
    """Fill cal (18 ints) from c = regs 0x88..0xA1 (26 bytes) and e = regs 0xE1..0xE7 (7 bytes), Table 16."""
    cal[_T1] = _u16(c, 0)
    cal[_T2] = _s16(c, 2)
    cal[_T3] = _s16(c, 4)
    cal[_P1] = _u16(c, 6)
    for i in range(8):
        cal[_P2 + i] = _s16(c, 8 + 2 * i)
    cal[_H1] = c[25]
    cal[_H2] = _s16(e, 0)
    cal[_H3] = e[2]
    # dig_H4: 0xE4 holds bits 11:4, 0xE5[3:0] bits 3:0; dig_H5: 0xE6 bits 11:4, 0xE5[7:4] bits 3:0 (signed)
    cal[_H4] = (_s8(e[3]) << 4) | (e[4] & 0x0F)
    cal[_H5] = (_s8(e[5]) << 4) | (e[4] >> 4)
    cal[_H6] = _s8(e[6])
    return cal


def t_fine(cal, adc_t):
    """Datasheet 4.2.3 BME280_compensate_T_int32, the t_fine part."""
    t1 = cal[_T1]
    var1 = _mulshr((adc_t >> 3) - (t1 << 1), cal[_T2], 11)
    d = (adc_t >> 4) - t1
    var2 = _mulshr(_mulshr(d, d, 12), cal[_T3], 14)
    return var1 + var2


def temperature_centi(tf):
    """Temperature in 0.01 degC from t_fine (4.2.3: T = (t_fine * 5 + 128) >> 8)."""
    return (tf * 5 + 128) >> 8


def pressure_pa(cal, adc_p, tf):
    """Pressure in Pa (BMP280 DS 8.2, 32-bit version), or None where the formula is undefined."""
    var1 = (tf >> 1) - 64000
    q = var1 >> 2
    var2 = _mulshr(q, q, 11) * cal[_P6]
    var2 = var2 + ((var1 * cal[_P5]) << 1)
    var2 = (var2 >> 2) + (cal[_P4] << 16)
    # (P2 * var1) >> 1 split on the low bit of var1
    var1 = (((cal[_P3] * _mulshr(q, q, 13)) >> 3) + ((var1 >> 1) * cal[_P2] + (((var1 & 1) * cal[_P2]) >> 1))) >> 18
    var1 = _mulshr(32768 + var1, cal[_P1], 15)
    if var1 <= 0:
        return None
    u = (1048576 - adc_p) - (var2 >> 12)
    if u <= 0:
        return None
    # p = u * 3125 as uint32; then (p << 1) / var1, or (p / var1) * 2 where p >= 0x80000000 (DS 8.2),
    # by long division so that nothing passes 2**30
    qd = u // var1
    rm = u - qd * var1
    if u < 687195:  # u * 3125 < 0x80000000
        p = qd * 6250 + (rm * 6250) // var1
    else:
        p = (qd * 3125 + (rm * 3125) // var1) * 2
    var1 = (cal[_P9] * (((p >> 3) * (p >> 3)) >> 13)) >> 12
    var2 = ((p >> 2) * cal[_P8]) >> 13
    return p + ((var1 + var2 + cal[_P7]) >> 4)


def pressure_q24_8(cal, adc_p, tf):
    """Pressure in Pa as Q24.8 (datasheet 4.2.3 BME280_compensate_P_int64), or None (division by zero).
    Its 64-bit intermediates are big ints: 17 heap objects per call on a 32-bit port (ESP32)."""
    var1 = tf - 128000
    var2 = var1 * var1 * cal[_P6]
    var2 = var2 + ((var1 * cal[_P5]) << 17)
    var2 = var2 + (cal[_P4] << 35)
    var1 = ((var1 * var1 * cal[_P3]) >> 8) + ((var1 * cal[_P2]) << 12)
    var1 = (((1 << 47) + var1) * cal[_P1]) >> 33
    if var1 <= 0:
        return None
    p = ((1048576 - adc_p) << 31) - var2
    if p < 0:
        return None
    p = (p * 3125) // var1  # both positive: C's truncating division
    var1 = (cal[_P9] * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal[_P8] * p) >> 19
    return ((p + var1 + var2) >> 8) + (cal[_P7] << 4)


def humidity_q10(cal, adc_h, tf):
    """Relative humidity in %RH as Q22.10 (datasheet 4.2.3 bme280_compensate_H_int32), 0..102400."""
    v = tf - 76800
    a = (((adc_h << 14) - (cal[_H4] << 20) - cal[_H5] * v) + 16384) >> 15
    b = _mulshr((v * cal[_H6]) >> 10, ((v * cal[_H3]) >> 11) + 32768, 10) + 2097152
    d = _mulshr(b, cal[_H2], 14, 8192)
    # v = a * d (may pass 2**30): keep it as vh * 2**15 + vl
    vh = _mulshr(a, d, 15)
    vl = ((a & 0x7FFF) * (d & 0x7FFF)) & 0x7FFF
    sub = _mulshr(_mulshr(vh, vh, 7), cal[_H1], 4)
    h = vh * 8 + ((vl - sub) >> 12)
    if h < 0:
        return 0
    if h > 102400:
        return 102400
    return h


class BME280(I2CReg):
    """channels temperature (0.01 degC), humidity (0.1 %RH), pressure (1 Pa); one forced measurement per read().

    osrs: oversampling code for all three (1 = x1 .. 5 = x16, datasheet 5.4.3/5.4.5). stuck_reads: raise
    SensorStuck when this many consecutive reads return bit-identical raw data (0: never).
    p64: pressure by the datasheet's 64-bit formula (exact to the Bosch reference; allocates big ints),
    else by the 32-bit one (allocates nothing; within about 3 Pa of the 64-bit result).
    """

    _name = "BME280"

    def __init__(self, i2c, clock, addr=ADDR, osrs=1, stuck_reads=20, p64=True):
        self.channels = ("temperature", "humidity", "pressure")
        self.values = [None, None, None]  # type: list
        I2CReg.__init__(self, i2c, addr)
        self._clock = clock
        self._osrs = osrs
        self._p64 = p64
        n = 1 << (osrs - 1)
        # datasheet 9.1: t_max = 1.25 + 2.3*T + (2.3*P + 0.575) + (2.3*H + 0.575) ms; typ with 1, 2, 0.5
        self.typ_ms = (1000 + 2000 * n + 2 * (2000 * n + 500) + 999) // 1000
        self.max_ms = (1250 + 2300 * n + 2 * (2300 * n + 575) + 999) // 1000 + _MARGIN_MS
        self._data = bytearray(8)
        self._last = bytearray(8)
        self._same = 0
        self._stuck_n = stuck_reads
        self.cal = [0] * 18
        self.raw = [0, 0, 0]  # adc_T, adc_P, adc_H of the last read
        self.t_fine = 0
        self.init()

    def _status(self):
        self._read(_REG_STATUS, self._b1)
        return self._b1[0]

    def init(self):
        """Check the chip id, soft-reset, wait for the NVM copy, read the calibration (5.4.1, 5.4.2, 4.2.2)."""
        self._read(_REG_ID, self._b1)
        if self._b1[0] != CHIP_ID:
            raise FrameError("BME280: chip id 0x%02x, want 0x60" % self._b1[0])
        self._write(_REG_RESET, _RESET_WORD)
        clock = self._clock
        clock.sleep_ms(_STARTUP_MS)
        t0 = clock.ticks_ms()
        while self._status() & _ST_IM_UPDATE:
            if clock.ticks_diff(clock.ticks_ms(), t0) >= _NVM_MAX_MS:
                raise SensorTimeout("BME280: NVM copy did not finish")
            clock.sleep_ms(1)
        c = bytearray(26)
        e = bytearray(7)
        self._read(_REG_CALIB00, c)
        self._read(_REG_CALIB26, e)
        parse_calibration(c, e, self.cal)
        self._write(_REG_CONFIG, 0x00)  # filter off, no standby (forced mode)

    def read(self):
        """One forced measurement (datasheet 3.3.3): start, bounded wait on status.measuring, burst read."""
        o = self._osrs
        self._write(_REG_CTRL_HUM, o)  # takes effect with the next ctrl_meas write (5.4.3)
        self._write(_REG_CTRL_MEAS, (o << 5) | (o << 2) | _MODE_FORCED)
        clock = self._clock
        clock.sleep_ms(self.typ_ms)
        waited = self.typ_ms
        while self._status() & _ST_MEASURING:
            if waited >= self.max_ms:
                raise SensorTimeout("BME280: still measuring after %d ms" % waited)
            clock.sleep_ms(1)
            waited += 1
        d = self._data
        self._read(_REG_PRESS_MSB, d)
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        if adc_t == 0x80000 or adc_p == 0x80000 or adc_h == 0x8000:
            raise FrameError("BME280: measurement skipped (reset values in data registers)")
        count_stuck(self, same_bytes(d, self._last, 8), "BME280")
        r = self.raw
        r[0] = adc_t
        r[1] = adc_p
        r[2] = adc_h
        cal = self.cal
        tf = t_fine(cal, adc_t)
        self.t_fine = tf
        v = self.values
        v[0] = temperature_centi(tf)
        v[1] = (humidity_q10(cal, adc_h, tf) * 10 + 512) >> 10
        if self._p64:
            p = pressure_q24_8(cal, adc_p, tf)
            v[2] = None if p is None else (p + 128) >> 8
        else:
            v[2] = pressure_pa(cal, adc_p, tf)

