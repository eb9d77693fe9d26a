# Battery voltage through a resistor divider on an ADC pin: averaged read_uv(), calibration, sanity range.
#
#   battery --R1--+--R2-- GND         V_bat = V_pin * (R1 + R2) / R2
#                 |
#               ADC pin               read_uv() is the ESP32 port's eFuse-calibrated reading in microvolts
#
# A two-point calibration against a meter gives gain_ppm and offset_uv at the battery:
# V_bat = V_bat_measured * gain_ppm / 1e6 + offset_uv. The maths stay in small integers (no floats, no
# long ints, nothing allocated per read): the divider ratio times the gain is kept as a Q15 number and the
# pin voltage is split at 2**10, exact to a few microvolts, for ratio x gain up to 10.
# Channel "battery" has resolution 0.001 V, so values[0] is millivolts.
from micropython import const

from cnode.drivers.errors import SensorAbsent, SensorError

_Q = const(15)


class BatteryImplausible(SensorError):
    """The averaged voltage is outside the plausible range, or the samples scatter (a floating input)."""


class Battery:
    channels = ("battery",)
    warmup_ms = 0

    def __init__(self, adc, r1, r2, samples=16, gain_ppm=1000000, offset_uv=0, lo_mv=2500, hi_mv=4500,
                 absent_mv=500, max_spread_mv=250, sat_uv=3100000):
        """adc: a ready machine.ADC (11 dB attenuation for a pin up to ~3.1 V); r1 (battery side) and r2
        (ground side) in ohms; samples averaged per read (1..256); sat_uv: a sample at or above it means
        the ADC is saturated (11 dB attenuation on the ESP32 reads up to about 3.1 V)."""
        if r1 < 0 or r2 <= 0 or samples < 1 or samples > 256:
            raise ValueError("divider or samples")
        self.adc = adc
        self.samples = samples
        self.offset_uv = offset_uv
        self.lo_mv = lo_mv
        self.hi_mv = hi_mv
        self.absent_mv = absent_mv
        self.sat_uv = sat_uv
        self.values: list = [None]
        self.pin_uv = 0  # last averaged pin voltage
        # (R1 + R2) / R2 * gain as Q15, rounded; computed once (long ints allowed here)
        self._k = ((r1 + r2) * gain_ppm * (2 << _Q) // (r2 * 1000000) + 1) // 2
        # the largest spread of pin samples that still counts as one steady voltage
        self._spread_uv = max_spread_mv * 1000 * r2 // (r1 + r2)

    def to_mv(self, pin_uv):
        """Battery millivolts for a pin voltage in microvolts (0..~3.3 V), with calibration applied."""
        k = self._k
        uv = (((pin_uv >> 10) * k) >> 5) + (((pin_uv & 0x3FF) * k) >> _Q) + self.offset_uv
        return (uv + 500) // 1000 if uv > 0 else 0

    def read(self):
        """Average `samples` readings into values[0] (millivolts)."""
        adc = self.adc
        total = 0
        lo = 0x3FFFFFFF
        hi = 0
        for _ in range(self.samples):
            v = adc.read_uv()
            total += v
            if v < lo:
                lo = v
            if v > hi:
                hi = v
        self.pin_uv = (total + self.samples // 2) // self.samples
        mv = self.to_mv(self.pin_uv)
        if mv < self.absent_mv:
            raise SensorAbsent("battery %d mV: divider or battery disconnected" % mv)
        if hi >= self.sat_uv:
            raise BatteryImplausible("battery ADC saturated at %d uV" % hi)
        if hi - lo > self._spread_uv:
            raise BatteryImplausible("battery samples spread %d uV" % (hi - lo))
        if mv < self.lo_mv or mv > self.hi_mv:
            raise BatteryImplausible("battery %d mV outside %d..%d" % (mv, self.lo_mv, self.hi_mv))
        self.values[0] = mv
