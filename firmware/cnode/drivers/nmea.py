# NMEA 0183 GPS reader on a UART: bounded line assembly, *hh checksum, RMC/GGA parsing into integers.
#
# NMEA 0183 v4.10 section 5: a sentence is "$" + talker (2) + type (3) + ",fields" + "*hh" + CR LF, at most
# 82 characters; hh is the XOR of every byte between "$" and "*" in hex. Sentences without a checksum or with
# a wrong one are rejected and counted, never partly used: fields are parsed into locals and committed only
# when the whole sentence parsed. Talkers accepted: GP, GN, GL, GA, BD (others and $P... are ignored).
# Positions are integers at 1e-5 degree (registry latitude/longitude): ddmm.mmmm -> degrees without floats.
# The parser allocates nothing per sentence (field offsets live in a preallocated array).
from micropython import const

from cnode.drivers.errors import SensorTimeout

MAX_LINE = const(120)  # longer than the 82 of the standard: some receivers overrun it; longer lines are dropped
_MAX_FIELDS = const(24)
_TALKERS = (b"GP", b"GN", b"GL", b"GA", b"BD")
_DOLLAR = const(0x24)
_STAR = const(0x2A)
_COMMA = const(0x2C)
_CR = const(0x0D)
_LF = const(0x0A)
_DAYS_BEFORE = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)


def _hexval(c):
    if 0x30 <= c <= 0x39:
        return c - 0x30
    c |= 0x20
    if 0x61 <= c <= 0x66:
        return c - 0x57
    return -1


class NMEA:
    def __init__(self, uart=None, clock=None, silent_ms=3000, max_fix_age_ms=5000, chunk=128):
        self.channels = ("latitude", "longitude")
        self.values = [None, None]  # type: list
        self._uart = uart
        self._clock = clock
        self._silent = silent_ms
        self._max_age = max_fix_age_ms
        self._line = bytearray(MAX_LINE)
        self._n = 0  # bytes in _line; 0 = not inside a sentence
        self._overlong = False
        self._rx = bytearray(chunk)
        self._f = [0] * (_MAX_FIELDS + 1)  # start offset of each field; _f[k+1]-1 is the comma after field k
        self._nf = 0
        # counters
        self.sentences = 0  # checksummed and accepted
        self.bad_checksum = 0
        self.no_checksum = 0
        self.overlong = 0
        self.garbage = 0  # bytes outside any sentence, and sentences cut by a new "$"
        self.ignored = 0  # valid checksum, but a talker or type we do not use
        self.bad_fields = 0  # valid checksum, but a field did not parse (sentence not used)
        self.rmc = 0
        self.rmc_valid = 0  # RMC with status A whose position parsed
        self.gga = 0
        # last fix (from RMC status A or GGA quality > 0)
        self.lat = None  # 1e-5 degree, north positive
        self.lon = None  # 1e-5 degree, east positive
        self.hms = None  # UTC hhmmss of the last RMC/GGA
        self.centis = 0  # hundredths of the second
        self.dmy = None  # RMC date ddmmyy
        self.quality = 0  # GGA fix quality (0 invalid, 1 GPS, 2 DGPS, ...)
        self.satellites = 0
        self.hdop_x100 = None
        self.alt_dm = None  # GGA altitude above mean sea level, decimetres
        self.fix_ms = None  # clock ticks_ms of the last fix
        self._last_rx = clock.ticks_ms() if clock is not None else 0

    # --- byte stream -----------------------------------------------------------------------------
    def feed(self, data, n=-1):
        """Consume n bytes (all when n < 0) of data; complete sentences are checked and parsed."""
        if n < 0:
            n = len(data)
        line = self._line
        for i in range(n):
            b = data[i]
            if b == _DOLLAR:
                if self._n:
                    self.garbage += 1  # a sentence cut short by the next one
                line[0] = b
                self._n = 1
                self._overlong = False
            elif b == _CR or b == _LF:
                if self._n:
                    if self._overlong:
                        self.overlong += 1
                    else:
                        self._sentence(self._n)
                    self._n = 0
            elif self._n:
                if b < 0x20 or b > 0x7E:
                    self.garbage += 1  # binary noise inside a sentence: drop it
                    self._n = 0
                elif self._n < MAX_LINE:
                    line[self._n] = b
                    self._n += 1
                else:
                    self._overlong = True
            else:
                self.garbage += 1

    def read(self):
        """Drain the UART (bounded), parse; values = last fix position if younger than max_fix_age_ms."""
        u = self._uart
        c = self._clock
        got = 0
        if u is not None:
            for _ in range(32):  # at most 32 chunks per call: bounded even on a babbling line
                if not u.any():
                    break
                k = u.readinto(self._rx)
                if not k:
                    break
                self.feed(self._rx, k)
                got += k
        if c is not None:
            now = c.ticks_ms()
            if got:
                self._last_rx = now
            fresh = self.fix_ms is not None and c.ticks_diff(now, self.fix_ms) <= self._max_age
        else:
            fresh = self.fix_ms is not None
        if fresh:
            self.values[0] = self.lat
            self.values[1] = self.lon
        else:
            self.values[0] = None
            self.values[1] = None
        if c is not None and not got and c.ticks_diff(c.ticks_ms(), self._last_rx) > self._silent:
            raise SensorTimeout("NMEA: no bytes from the receiver")
        return fresh

    # --- one sentence ----------------------------------------------------------------------------
    def _sentence(self, n):
        line = self._line
        star = -1
        x = 0
        for i in range(1, n):
            b = line[i]
            if b == _STAR:
                star = i
                break
            x ^= b
        if star < 0 or star + 3 != n:
            if star < 0:
                self.no_checksum += 1
            else:
                self.bad_checksum += 1  # wrong length after "*"
            return
        h = _hexval(line[star + 1])
        lo = _hexval(line[star + 2])
        if h < 0 or lo < 0 or (h << 4 | lo) != x:
            self.bad_checksum += 1
            return
        self.sentences += 1
        # field offsets: field 0 is the address (talker + type)
        f = self._f
        f[0] = 1
        k = 1
        for i in range(1, star):
            if line[i] == _COMMA:
                if k > _MAX_FIELDS - 1:
                    break
                f[k] = i + 1
                k += 1
        f[k] = star + 1  # so field k-1 ends at f[k] - 1 (the "*")
        self._nf = k
        if f[1] - 1 - f[0] != 5 or not self._talker():
            self.ignored += 1
            return
        t0, t1, t2 = line[3], line[4], line[5]
        if t0 == 0x52 and t1 == 0x4D and t2 == 0x43:  # RMC
            self.rmc += 1
            self._rmc()
        elif t0 == 0x47 and t1 == 0x47 and t2 == 0x41:  # GGA
            self.gga += 1
            self._gga()
        else:
            self.ignored += 1

    def _talker(self):
        a = self._line[1]
        b = self._line[2]
        for t in _TALKERS:
            if t[0] == a and t[1] == b:
                return True
        return False

    def _uint(self, k, scale_digits):
        """Field k as an unsigned decimal scaled by 10**scale_digits (truncated); -1 if empty, -2 if bad."""
        s = self._f[k] if k < self._nf else 0
        e = self._f[k + 1] - 1 if k < self._nf else 0
        if s >= e:
            return -1
        line = self._line
        v = 0
        frac = -1
        for i in range(s, e):
            b = line[i]
            if b == 0x2E:
                if frac >= 0:
                    return -2
                frac = 0
            elif 0x30 <= b <= 0x39:
                if frac < 0:
                    v = v * 10 + b - 0x30
                elif frac < scale_digits:
                    v = v * 10 + b - 0x30
                    frac += 1
            else:
                return -2
            if v > 100000000:
                return -2
        if frac < 0:
            frac = 0
        while frac < scale_digits:
            v *= 10
            frac += 1
        return v

    def _char(self, k):
        s = self._f[k] if k < self._nf else 0
        e = self._f[k + 1] - 1 if k < self._nf else 0
        return self._line[s] if e - s == 1 else 0

    def _coord(self, k, deg_digits):
        """Fields k (d..dmm.mmmm) and k+1 (hemisphere) -> 1e-5 degree, or None (ints stay below 2**30)."""
        if k + 1 >= self._nf:
            return None
        s = self._f[k]
        e = self._f[k + 1] - 1
        line = self._line
        ip = 0
        i = s
        while i < e and 0x30 <= line[i] <= 0x39:
            ip = ip * 10 + line[i] - 0x30
            i += 1
        if i - s != deg_digits + 2 or i >= e or line[i] != 0x2E:
            return None
        i += 1
        frac = 0
        nd = 0
        while i < e:
            b = line[i]
            if b < 0x30 or b > 0x39:
                return None
            if nd < 6:
                frac = frac * 10 + b - 0x30
                nd += 1
            i += 1
        while nd < 6:
            frac *= 10
            nd += 1
        deg = ip // 100
        minutes_e6 = (ip % 100) * 1000000 + frac
        if minutes_e6 >= 60000000 or deg > (90 if deg_digits == 2 else 180):
            return None
        val = deg * 100000 + (minutes_e6 + 300) // 600  # minutes / 60 at 1e-5 degree, rounded
        h = self._char(k + 1)
        if h == 0x53 or h == 0x57:  # S, W
            return -val
        if h == 0x4E or h == 0x45:  # N, E
            return val
        return None

    def _time(self, k):
        """hhmmss[.ss] -> (hhmmss, centiseconds) packed as hhmmss*100+cs, or -1."""
        v = self._uint(k, 2)
        if v < 0 or v // 100 % 100 >= 61 or v // 10000 % 100 >= 60 or v // 1000000 >= 24:
            return -1
        return v

    def _rmc(self):
        t = self._time(1)
        status = self._char(2)
        if status != 0x41:  # "A" = valid; "V" = receiver warning, no fix
            return
        lat = self._coord(3, 2)
        lon = self._coord(5, 3)
        d = self._uint(9, 0)
        if lat is None or lon is None or t < 0 or d < 0 or d // 10000 > 31 or d // 100 % 100 > 12:
            self.bad_fields += 1
            return
        self.rmc_valid += 1
        self.lat = lat
        self.lon = lon
        self.hms = t // 100
        self.centis = t % 100
        self.dmy = d
        self._stamp()

    def _gga(self):
        t = self._time(1)
        q = self._uint(6, 0)
        if q == -2:
            self.bad_fields += 1
            return
        if q <= 0:  # empty or 0: no fix; nothing else in the sentence is meaningful
            self.quality = 0
            return
        lat = self._coord(2, 2)
        lon = self._coord(4, 3)
        sats = self._uint(7, 0)
        hdop = self._uint(8, 2)
        alt = self._signed(9, 1)
        if lat is None or lon is None or t < 0 or sats == -2 or hdop == -2 or alt is None:
            self.bad_fields += 1
            return
        self.quality = q
        self.lat = lat
        self.lon = lon
        self.hms = t // 100
        self.centis = t % 100
        self.satellites = sats if sats >= 0 else 0
        self.hdop_x100 = hdop if hdop >= 0 else None
        self.alt_dm = alt if alt != -0x3FFFFFFF else None
        self._stamp()

    def _signed(self, k, digits):
        """Signed decimal field scaled by 10**digits; -0x3FFFFFFF when empty, None when malformed."""
        s = self._f[k] if k < self._nf else 0
        e = self._f[k + 1] - 1 if k < self._nf else 0
        if s >= e:
            return -0x3FFFFFFF
        neg = self._line[s] == 0x2D
        if neg:
            self._f[k] = s + 1
        v = self._uint(k, digits)
        self._f[k] = s
        if v < 0:
            return None
        return -v if neg else v

    def _stamp(self):
        if self._clock is not None:
            self.fix_ms = self._clock.ticks_ms()
        else:
            self.fix_ms = 0

    def seconds_2000(self):
        """UTC of the last RMC as seconds since 2000-01-01 (the ESP32 epoch), or None."""
        if self.dmy is None or self.hms is None:
            return None
        d = self.dmy
        day = d // 10000
        month = d // 100 % 100
        year = d % 100  # NMEA RMC carries two digits: 2000..2099
        if month < 1 or day < 1:
            return None
        days = year * 365 + (year + 3) // 4 + _DAYS_BEFORE[month - 1] + day - 1
        if month > 2 and year % 4 == 0:
            days += 1
        h = self.hms
        return days * 86400 + (h // 10000) * 3600 + (h // 100 % 100) * 60 + h % 100
