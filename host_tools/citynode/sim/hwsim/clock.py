# A virtual clock with the same calls as MicroPython's time module (ticks_ms, ticks_diff, sleep_ms, time).
#
# Drivers and the scheduler receive a clock object; on a board that object is the `time` module itself,
# in tests it is a VirtualClock, so days of node time pass in milliseconds of test time.
EPOCH_2000 = 946684800  # Unix seconds at 2000-01-01, the node's epoch
_TICKS_PERIOD = 1 << 30  # MicroPython's ticks wrap at 2**30 (TICKS_MAX + 1)


class VirtualClock:
    def __init__(self, start_s=0, start_ms=0):
        self.us = start_ms * 1000  # monotonic microseconds since start
        self.start_us = start_s * 1000000  # wall clock (microseconds since 2000) at us == 0
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
        return (self.start_us + self.us) // 1000000

    def gmtime(self, s=None):
        """(year, month, day, hour, minute, second, weekday 0=Monday, yearday) of s seconds since 2000, as
        the port's time.gmtime (its epoch is 2000); None = now."""
        return gmtime(self.time() if s is None else s)

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

    def set_time(self, s, us=0):
        """Set the wall clock to s seconds (and us microseconds) since 2000, as machine.RTC().datetime does."""
        self.start_us = s * 1000000 + us - self.us

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


def gmtime(s):
    """time.gmtime of the ESP32 port (epoch 2000), in integers so it runs under the unix port too."""
    s = int(s)
    days, r = divmod(s, 86400)
    hh, r = divmod(r, 3600)
    mm, ss = divmod(r, 60)
    wday = (days + 5) % 7  # 2000-01-01 was a Saturday
    y = 2000
    while True:
        n = 366 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 365
        if days < n:
            break
        days -= n
        y += 1
    yday = days + 1
    feb = 29 if n == 366 else 28
    m = 1
    for ml in (31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31):
        if days < ml:
            break
        days -= ml
        m += 1
    return (y, m, days + 1, hh, mm, ss, wday, yday)


def mktime(y, mo, d, hh=0, mm=0, ss=0):
    """Seconds since 2000 of a UTC date and time (time.mktime of the ESP32 port), in integers."""
    days = 0
    for yy in range(2000, y):
        days += 366 if (yy % 4 == 0 and (yy % 100 != 0 or yy % 400 == 0)) else 365
    feb = 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    ml = (31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    for i in range(mo - 1):
        days += ml[i]
    return ((days + d - 1) * 24 + hh) * 3600 + mm * 60 + ss
