# A virtual clock with the same calls as MicroPython's time module (ticks_ms, ticks_diff, sleep_ms, time).
#
# Drivers and the scheduler receive a clock object; on a board that object is the `time` module itself,
# in tests it is a VirtualClock, so days of node time pass in milliseconds of test time.
EPOCH_2000 = 946684800  # Unix seconds at 2000-01-01, the node's epoch
_TICKS_PERIOD = 1 << 30  # MicroPython's ticks wrap at 2**30 (TICKS_MAX + 1)


class VirtualClock:
    def __init__(self, start_s=0, start_ms=0):
        self.us = start_ms * 1000  # monotonic microseconds since start
        self.start_s = start_s  # wall clock (seconds since 2000) at us == 0
        self._timers = []  # (due_us, seq, fn)
        self._seq = 0

    # --- time-module interface -------------------------------------------------------------------
    def ticks_ms(self):
        return (self.us // 1000) % _TICKS_PERIOD

    def ticks_us(self):
        return self.us % _TICKS_PERIOD

    def ticks_add(self, t, delta):
        return (t + delta) % _TICKS_PERIOD

    def ticks_diff(self, a, b):
        d = (a - b) % _TICKS_PERIOD
        return d - _TICKS_PERIOD if d >= _TICKS_PERIOD // 2 else d

    def sleep_ms(self, ms):
        self.advance_us(int(ms) * 1000)

    def sleep_us(self, us):
        self.advance_us(int(us))

    def sleep(self, s):
        self.advance_us(int(s * 1000000))

    def time(self):
        """Wall clock in whole seconds since 2000-01-01 (the ESP32 port's epoch)."""
        return self.start_s + self.us // 1000000

    # --- simulation interface --------------------------------------------------------------------
    def monotonic_ms(self):
        return self.us // 1000

    def monotonic_us(self):
        return self.us

    def next_due_us(self):
        """When the next timer fires (monotonic us), or None."""
        return self._timers[0][0] if self._timers else None

    def call_at_us(self, at_us, fn):
        """Run fn() when the clock passes at_us (monotonic); a twin's hardware events."""
        self._seq += 1
        self._timers.append((int(at_us), self._seq, fn))
        self._timers.sort()

    def set_time(self, s):
        self.start_s = s - self.us // 1000000

    def call_at_ms(self, at_ms, fn):
        """Run fn() when the clock passes at_ms (monotonic); used by twins for pin events."""
        self.call_at_us(at_ms * 1000, fn)

    def advance_us(self, us):
        end = self.us + us
        while self._timers and self._timers[0][0] <= end:
            due, _, fn = self._timers.pop(0)
            if due > self.us:
                self.us = due
            fn()
        self.us = end

    def advance_ms(self, ms):
        self.advance_us(int(ms) * 1000)
