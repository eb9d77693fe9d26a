# Simulated Bosch BME280 on I2C (register map, forced mode, calibration) and the synthetic environment series.
#
# The twin holds the chip's register file: chip id 0x60 at 0xD0, calibration at 0x88..0xA1 / 0xE1..0xE7
# (the BMP280 datasheet's worked example by default), reset 0xE0 <- 0xB6, ctrl_hum/ctrl_meas/config and
# status (measuring, im_update). A forced measurement takes the datasheet's typical time (9.1) and then
# latches raw ADC values that the Bosch compensation (implemented here independently, 64-bit pressure)
# maps back to the series' values at that moment: the raw values are found by bisection.
# Writes are register/data pairs (datasheet 6.2.1); reads auto-increment from the last register address.
# noise: each latched raw value moves by a pseudo-random -noise..+noise LSB (deterministic, seeded), as a
# real ADC does, so a constant series does not look like a stuck sensor (about 0.0003 degC per LSB).
# dither (for recorded series, which carry their own sensor's noise): instead, only the three lowest bits of
# adc_T change from one measurement to the next; the compensation never reads them (t_fine uses adc_T >> 3 and
# >> 4), so the raw data never repeat while every compensated value stays the one nearest the series.
# Faults: fault("never_ready", n) keeps n measurements running forever; fault("stuck", n, raw) latches the
# same raw (adc_T, adc_P, adc_H) n times (default: the last raw). NACK / timeout / disconnect: I2C.inject.
import math
from citynode.sim.hwsim.power import Powered

# BMP280 datasheet (BST-BMP280-DS001) 8.1 example + BME280 humidity: as in driver-vectors/vectors.json
VECTOR_T = (27504, 26435, -1000)
VECTOR_P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
VECTOR_H = (75, 363, 0, 315, 50, 30)

_TWO_PI = 6.283185307179586


def _bump(h, centre, width):
    d = (h - centre) / width
    return math.exp(-d * d)


def diurnal(ms):
    """A synthetic city day (period 24 h from ms 0 = midnight): temperature, humidity, pressure, CO2 and
    A-weighted sound level with rush hours at 08:00 and 17:30. Values in SI-ish units (degC, %RH, Pa,
    ppm, dBA); noise_la wobbles by a few dB within seconds so that LAmin/LAmax differ from LAeq."""
    h = (ms / 3600000.0) % 24.0
    day = math.sin(_TWO_PI * (h - 9.0) / 24.0)
    traffic = _bump(h, 8.0, 1.5) + 0.8 * _bump(h, 17.5, 2.0) + 0.3 * _bump(h, 13.0, 3.0)
    s = ms / 1000.0
    return {
        "temperature": 12.0 + 6.5 * day,
        "humidity": 62.0 - 22.0 * day,
        "pressure": 101325.0 + 450.0 * math.sin(_TWO_PI * ms / 259200000.0),
        "co2": 420.0 + 180.0 * traffic,
        "noise_la": 42.0 + 24.0 * traffic + 4.0 * math.sin(_TWO_PI * s / 7.3) + 2.5 * math.sin(_TWO_PI * s / 1.9),
    }


def constant(**values):
    """A series that always gives the same values (merged over diurnal(0) for the keys not given)."""
    base = diurnal(0)
    base.update(values)

    def series(ms):
        return base

    return series


# --- Bosch compensation, plain integer forms of datasheet 4.2.3 (64-bit pressure) --------------------
def comp_t_fine(t, adc_t):
    var1 = (((adc_t >> 3) - (t[0] << 1)) * t[1]) >> 11
    d = (adc_t >> 4) - t[0]
    var2 = (((d * d) >> 12) * t[2]) >> 14
    return var1 + var2


def _cdiv(a, b):
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def comp_p_q24_8(p, adc_p, tf):
    """Pressure in Pa as Q24.8 (BME280_compensate_P_int64)."""
    var1 = tf - 128000
    var2 = var1 * var1 * p[5]
    var2 = var2 + ((var1 * p[4]) << 17)
    var2 = var2 + (p[3] << 35)
    var1 = ((var1 * var1 * p[2]) >> 8) + ((var1 * p[1]) << 12)
    var1 = (((1 << 47) + var1) * p[0]) >> 33
    if var1 == 0:
        return 0
    q = 1048576 - adc_p
    q = _cdiv(((q << 31) - var2) * 3125, var1)
    var1 = (p[8] * (q >> 13) * (q >> 13)) >> 25
    var2 = (p[7] * q) >> 19
    return ((q + var1 + var2) >> 8) + (p[6] << 4)


def comp_h_q22_10(h, adc_h, tf):
    """Relative humidity as Q22.10 (bme280_compensate_H_int32)."""
    v = tf - 76800
    v = (((((adc_h << 14) - (h[3] << 20) - (h[4] * v)) + 16384) >> 15) *
         (((((((v * h[5]) >> 10) * (((v * h[2]) >> 11) + 32768)) >> 10) + 2097152) * h[1] + 8192) >> 14))
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * h[0]) >> 4)
    v = 0 if v < 0 else v
    v = 419430400 if v > 419430400 else v
    return v >> 12


def _search(f, target, lo, hi, increasing, near=None):
    """The integer x in [lo, hi] whose f(x) is closest to target, for monotone f (bisection). With `near`
    (the last answer) the bracket first grows outwards from there: a slowly changing series costs a few
    evaluations instead of twenty."""
    a, b = lo, hi
    if near is not None and lo <= near <= hi:
        def above(x):
            return (f(x) >= target) if increasing else (f(x) <= target)
        step = 16
        if above(near):
            b = near
            while b - step > lo and above(b - step):
                b -= step
                step <<= 1
            a = b - step if b - step > lo else lo
        else:
            a = near
            while a + step < hi and not above(a + step):
                a += step
                step <<= 1
            b = a + step if a + step < hi else hi
    while a < b:
        m = (a + b) // 2
        if (f(m) >= target) if increasing else (f(m) <= target):
            b = m
        else:
            a = m + 1
    best = a
    if a > lo and abs(f(a - 1) - target) < abs(f(a) - target):
        best = a - 1
    return best


class BME280Twin(Powered):
    ADDR = 0x76

    def __init__(self, clock, series=diurnal, t=VECTOR_T, p=VECTOR_P, h=VECTOR_H, noise=1, seed=280, dither=False):
        self.clock = clock
        self.power_state = "sleep"  # after power-on (DS 3.3.1)
        self.noise = noise
        self.dither = dither
        self._rng = seed & 0x7FFFFFFF
        self.series = series
        self.t, self.p, self.h = tuple(t), tuple(p), tuple(h)
        self.regs = bytearray(256)
        self.regs[0xD0] = 0x60
        self._write_calibration()
        self._reset_regs()
        self.ptr = 0
        self.meas_end_us = None  # end of the running forced measurement
        self.im_update_end_us = 0
        self.writes = []  # every write transfer, for wire-exact tests
        self.target = None  # series values latched by the last measurement
        self.raw = None  # (adc_T, adc_P, adc_H) latched by the last measurement
        self.measurements = 0
        self._last_raw = None  # the last raw_for() answer, where the next search starts
        self._never_ready = 0
        self._stuck = 0
        self._stuck_raw = None

    # --- faults ------------------------------------------------------------------------------------
    def fault(self, kind, count=1, raw=None):
        if kind == "never_ready":
            self._never_ready = count
        elif kind == "stuck":
            self._stuck = count
            self._stuck_raw = raw if raw is not None else self.raw
        else:
            raise ValueError("BME280 twin fault: " + kind)

    def clear_faults(self):
        self._never_ready = 0
        self._stuck = 0

    # --- register file -----------------------------------------------------------------------------
    def _write_calibration(self):
        r = self.regs
        words = list(self.t) + list(self.p)
        for i, w in enumerate(words):
            w &= 0xFFFF
            r[0x88 + 2 * i] = w & 0xFF
            r[0x89 + 2 * i] = w >> 8
        h = self.h
        r[0xA1] = h[0] & 0xFF
        r[0xE1] = h[1] & 0xFF
        r[0xE2] = (h[1] >> 8) & 0xFF
        r[0xE3] = h[2] & 0xFF
        r[0xE4] = (h[3] >> 4) & 0xFF
        r[0xE5] = (h[3] & 0x0F) | ((h[4] & 0x0F) << 4)
        r[0xE6] = (h[4] >> 4) & 0xFF
        r[0xE7] = h[5] & 0xFF

    def _reset_regs(self):
        r = self.regs
        for a in (0xF2, 0xF3, 0xF4, 0xF5):
            r[a] = 0
        for a, v in ((0xF7, 0x80), (0xF8, 0), (0xF9, 0), (0xFA, 0x80), (0xFB, 0), (0xFC, 0), (0xFD, 0x80), (0xFE, 0)):
            r[a] = v

    def _now_us(self):
        c = self.clock
        return c.us if hasattr(c, "us") else c.monotonic_ms() * 1000

    def _duration_us(self):
        # datasheet 9.1 typical: 1 + 2*T + (2*P + 0.5) + (2*H + 0.5) ms, for the latched oversampling
        # (osrs 1..5 = x1..x16; 6 and 7 are x16 too, DS 5.4.3/5.4.5)
        r = self.regs
        os_t = min((r[0xF4] >> 5) & 7, 5)
        os_p = min((r[0xF4] >> 2) & 7, 5)
        os_h = min(r[0xF2] & 7, 5)
        us = 1000
        if os_t:
            us += 2000 * (1 << (os_t - 1))
        if os_p:
            us += 2000 * (1 << (os_p - 1)) + 500
        if os_h:
            us += 2000 * (1 << (os_h - 1)) + 500
        return us

    def write(self, data):
        self.writes.append(bytes(data))
        if len(self.writes) > 512:  # a long run keeps the recent transfers only
            del self.writes[:256]
        self._update()
        if len(data) == 1:
            self.ptr = data[0]
            return
        for i in range(0, len(data) - 1, 2):
            self._set(data[i], data[i + 1])

    def _set(self, reg, val):
        r = self.regs
        if reg == 0xE0:
            if val == 0xB6:
                busy = self.meas_end_us is not None or self.power_state != "sleep"
                self._reset_regs()
                self.meas_end_us = None
                self.im_update_end_us = self._now_us() + 1000
                if busy:
                    self._power("sleep")  # soft reset: sleep mode (DS 5.4.2)
        elif reg in (0xF2, 0xF5):
            r[reg] = val
        elif reg == 0xF4:
            r[reg] = val
            if val & 3 in (1, 2):  # forced mode
                if self._never_ready:
                    self._never_ready -= 1
                    self.meas_end_us = -1
                    self._power("forced")  # a chip that never finishes draws its measuring current on
                else:
                    self.meas_end_us = self._now_us() + self._duration_us()
                    self._power("forced", for_us=self._duration_us(), then="sleep")  # DS 3.3.3: back to sleep
            elif val & 3 == 3:
                self._power("normal")  # DS 3.3.4: measuring and standby in turn (one state in the data file)
            elif self.power_state == "normal":
                self._power("sleep")  # (a forced measurement runs to its end; DS 3.3.3)
        self.ptr = reg

    def _update(self):
        end = self.meas_end_us
        if end is not None and end >= 0 and self._now_us() >= end:
            self.meas_end_us = None
            self._latch(end // 1000)
            self.regs[0xF4] &= 0xFC  # back to sleep mode

    def _latch(self, ms):
        self.measurements += 1
        if self._stuck and self._stuck_raw is not None:
            self._stuck -= 1
            adc_t, adc_p, adc_h = self._stuck_raw
        else:
            self.target = self.series(ms)
            adc_t, adc_p, adc_h = self.raw_for(self.target)
            adc_t = self._jitter(adc_t, 0xFFFFF)
            adc_p = self._jitter(adc_p, 0xFFFFF)
            adc_h = self._jitter(adc_h, 0xFFFF)
            if self.dither:
                adc_t = (adc_t & 0xFFFF8) | (self.measurements & 7)
        self.raw = (adc_t, adc_p, adc_h)
        r = self.regs
        r[0xF7] = (adc_p >> 12) & 0xFF
        r[0xF8] = (adc_p >> 4) & 0xFF
        r[0xF9] = (adc_p & 0xF) << 4
        r[0xFA] = (adc_t >> 12) & 0xFF
        r[0xFB] = (adc_t >> 4) & 0xFF
        r[0xFC] = (adc_t & 0xF) << 4
        r[0xFD] = adc_h >> 8
        r[0xFE] = adc_h & 0xFF

    def _jitter(self, x, top):
        if not self.noise:
            return x
        self._rng = (1103515245 * self._rng + 12345) & 0x7FFFFFFF
        x += (self._rng >> 16) % (2 * self.noise + 1) - self.noise
        return 0 if x < 0 else (top if x > top else x)

    def raw_for(self, v):
        """(adc_T, adc_P, adc_H) whose compensated values are closest to v's temperature/pressure/humidity."""
        t, p, h = self.t, self.p, self.h
        t100 = v["temperature"] * 100.0
        last = self._last_raw
        adc_t = _search(lambda x: (comp_t_fine(t, x) * 5 + 128) >> 8, t100, 0, 0xFFFFF, t[1] > 0,
                        last[0] if last else None)
        tf = comp_t_fine(t, adc_t)
        adc_p = _search(lambda x: comp_p_q24_8(p, x, tf), v["pressure"] * 256.0, 0, 0xFFFFF, False,
                        last[1] if last else None)
        adc_h = _search(lambda x: comp_h_q22_10(h, x, tf), v["humidity"] * 1024.0, 0, 0xFFFF, True,
                        last[2] if last else None)
        self._last_raw = (adc_t, adc_p, adc_h)
        return adc_t, adc_p, adc_h

    def _status(self):
        s = 0
        now = self._now_us()
        if self.meas_end_us is not None:
            s |= 0x08
        if now < self.im_update_end_us:
            s |= 0x01
        return s

    def read(self, n):
        self._update()
        r = self.regs
        out = bytearray(n)
        a = self.ptr
        for i in range(n):
            out[i] = self._status() if a == 0xF3 else r[a & 0xFF]
            a += 1
        return bytes(out)
