# Per-sub-band duty-cycle ledger: airtime per one-minute bucket over a sliding hour (ETSI EN 300 220
# measures duty cycle over one hour), so a send is refused or delayed before it would exceed the band's limit.
from array import array

from micropython import const

from .region import BANDS

_NB = const(61)  # buckets: minute m-60 .. m, so every frame that started in the last hour is counted
_HOUR_MS = const(3600000)
_MIN_MS = const(60000)


class DutyCycle:
    def __init__(self):
        self._used = {}  # band index -> array('I', _NB) of airtime ms started in that minute
        self._min = {}  # band index -> array('i', _NB) of the minute number each bucket holds

    @staticmethod
    def limit_ms(band):
        return _HOUR_MS // BANDS[band][2]

    def _ledger(self, band):
        u = self._used.get(band)
        if u is None:
            u = self._used[band] = array("I", [0] * _NB)
            self._min[band] = array("i", [-1000] * _NB)
        return u, self._min[band]

    def used_ms(self, band, now_ms):
        """Airtime (ms) counted against band for a frame starting at now_ms."""
        if band not in self._used:
            return 0
        u, mins = self._ledger(band)
        first = now_ms // _MIN_MS - (_NB - 1)
        s = 0
        for i in range(_NB):
            if mins[i] >= first:
                s += u[i]
        return s

    def wait_ms(self, band, now_ms, air_ms):
        """0 if a frame of air_ms may start now in band, else the ms until it may; -1 if it never fits."""
        limit = self.limit_ms(band)
        if air_ms > limit:
            return -1
        excess = self.used_ms(band, now_ms) + air_ms - limit
        if excess <= 0:
            return 0
        u, mins = self._ledger(band)
        first = now_ms // _MIN_MS - (_NB - 1)
        # drop buckets oldest first until the excess is gone; bucket of minute k leaves at minute k + _NB
        order = sorted([i for i in range(_NB) if mins[i] >= first], key=lambda i: mins[i])
        for i in order:
            excess -= u[i]
            if excess <= 0:
                return (mins[i] + _NB) * _MIN_MS - now_ms
        return -1  # not reached: the whole ledger expires within the hour

    def record(self, band, start_ms, air_ms):
        u, mins = self._ledger(band)
        m = start_ms // _MIN_MS
        i = m % _NB
        if mins[i] != m:
            mins[i] = m
            u[i] = 0
        u[i] += air_ms
