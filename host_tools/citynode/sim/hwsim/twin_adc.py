# Simulated battery on a resistor divider at an ADC pin: series-driven voltage, ADC error, noise, faults.
#
# twin.attach(adc) makes a hwsim.machine.ADC read the divider's output: every read_uv() asks
# twin.sample(ms), which takes the battery voltage from the series (millivolts, a number or a function of
# monotonic ms), divides it by (R1 + R2) / R2, applies the ADC's own gain and offset error, adds
# deterministic noise and clips to the attenuation's full scale. Faults, for the next `count` samples
# (count -1: until clear()): "disconnect" (0 V: battery or divider open), "floating" (an open input picking up
# anything between 0 and full scale), "stuck" (the last sample again). Runs under CPython and MicroPython.
FAULTS = ("disconnect", "floating", "stuck")


class BatteryTwin:
    def __init__(self, r1, r2, series_mv, noise_uv=0, adc_gain_ppm=1000000, adc_offset_uv=0,
                 full_scale_uv=3100000, seed=1):
        self.r1 = r1
        self.r2 = r2
        self.series_mv = series_mv
        self.noise_uv = noise_uv
        self.adc_gain_ppm = adc_gain_ppm
        self.adc_offset_uv = adc_offset_uv
        self.full_scale_uv = full_scale_uv  # 11 dB attenuation on the ESP32: about 3.1 V
        self.faults = {}
        self.samples = 0
        self._rnd = seed & 0x7FFFFFFF
        self._last = 0

    def attach(self, adc):
        adc.source = self.sample
        return adc

    def inject(self, kind, count=1):
        if kind not in FAULTS:
            raise ValueError("unknown fault " + kind)
        self.faults[kind] = count

    def clear(self):
        self.faults = {}

    def _fault(self, kind):
        n = self.faults.get(kind, 0)
        if n == 0:
            return False
        if n > 0:
            self.faults[kind] = n - 1
        return True

    def _rand(self):
        self._rnd = (1103515245 * self._rnd + 12345) & 0x7FFFFFFF
        return self._rnd >> 8

    def battery_mv(self, ms) -> float:
        s = self.series_mv
        # series_mv is mV or fn(ms) -> mV, unannotated (this file also runs on MicroPython: no typing module)
        return s(ms) if callable(s) else s  # pyright: ignore[reportReturnType]

    def pin_uv(self, ms):
        """The true (error-free) voltage at the ADC pin in microvolts."""
        return int(self.battery_mv(ms) * 1000 * self.r2 / (self.r1 + self.r2) + 0.5)

    def sample(self, ms):
        self.samples += 1
        if self._fault("stuck"):
            return self._last
        if self._fault("disconnect"):
            v = 0
        elif self._fault("floating"):
            v = self._rand() % self.full_scale_uv
        else:
            v = self.pin_uv(ms) * self.adc_gain_ppm // 1000000 + self.adc_offset_uv
            if self.noise_uv:
                v += self._rand() % (2 * self.noise_uv + 1) - self.noise_uv
        v = 0 if v < 0 else (self.full_scale_uv if v > self.full_scale_uv else v)
        self._last = v
        return v


def discharge(start_mv, end_mv, duration_ms, t0_ms=0):
    """A linear discharge from start_mv at t0_ms to end_mv at t0_ms + duration_ms, then flat."""
    def f(ms):
        t = ms - t0_ms
        if t <= 0:
            return start_mv
        if t >= duration_ms:
            return end_mv
        return start_mv + (end_mv - start_mv) * t / duration_ms
    return f
