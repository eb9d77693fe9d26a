# The sampler: reads every due sensor once per cycle, with warm-up, and turns readings into a sample with flags.
#
# A faulty or missing sensor never stops a cycle: its channels get None and a flag, the others are read.
# Time is passed in (`now` in seconds); waits go through the clock object, so tests run days in seconds.
from micropython import const

from cnode.channels import F_COMM, F_MISSING, F_OUT_OF_RANGE, F_STUCK, F_WARMING_UP, by_name
from cnode.drivers.errors import CRCError, FrameError, SensorError

STUCK_AFTER = const(36)  # identical readings in a row (3 h at 5 min) before a varying channel is flagged stuck
_VARYING = const(("temperature", "humidity", "pressure", "co2"))


_MEAN = const(0)
_MAX = const(1)
_SUM = const(2)
_COUNTS = const(("pedestrians", "bikes", "vehicles"))


def _kind(name):
    """How readings of a channel combine over a window: counts add up, maxima take the max, the rest average."""
    if name in _COUNTS:
        return _SUM
    if name.endswith("_lamax"):
        return _MAX
    return _MEAN


class Slot:
    """One sensor as the sampler schedules it: every n-th cycle, after a warm-up, `reads` readings spacing_ms
    apart combined into one value per channel (mean; max for maxima; sum for counts)."""

    def __init__(self, driver, every=1, warmup_ms=0, reads=1, spacing_ms=1000):
        self.driver = driver
        self.every = every  # read on every n-th cycle
        self.warmup_ms = warmup_ms  # wake this long before reading (e.g. SDS011 fan: 30 s)
        self.reads = reads
        self.spacing_ms = spacing_ms
        self.idx = []  # sample slot of each of the driver's channels
        self.errors = 0
        self.last_error = ""
        n = len(driver.channels)
        self.agg = [None] * n  # the window's combined values
        self._acc = [0] * n
        self._cnt = [0] * n
        self._kind = [_kind(c) for c in driver.channels]


class Sampler:
    def __init__(self, slots, clock, extra=()):
        """slots: Slot objects; extra: channel names filled by the caller (status channels)."""
        self.slots = slots
        self.clock = clock
        names = []
        for s in slots:
            for n in s.driver.channels:
                if n not in names:
                    names.append(n)
        for n in extra:
            if n not in names:
                names.append(n)
        rows = []
        for n in names:
            row = by_name(n)
            if row is None:
                raise ValueError("no channel named " + n)
            rows.append(row)
        rows.sort(key=lambda r: r[0])
        self.rows = rows
        self.names = [r[1] for r in rows]
        self.ids = [r[0] for r in rows]
        self.refs = [r[6] for r in rows]
        for s in slots:
            s.idx = [self.names.index(n) for n in s.driver.channels]
        n = len(rows)
        self.vals = [None] * n
        self.flags = [0] * n
        self._fail = [0] * n  # flags of sensors that failed this cycle, per channel
        self.same = [0] * n  # identical readings in a row
        self.prev = [None] * n
        self.cycle_no = 0
        self._varying = [self.names[i] in _VARYING for i in range(n)]

    def index(self, name):
        return self.names.index(name)

    def due(self, slot):
        return self.cycle_no % slot.every == 0

    def warmup_ms(self):
        """The longest warm-up among the sensors due this cycle: wake them this long before sample()."""
        w = 0
        for s in self.slots:
            if self.due(s) and s.warmup_ms > w:
                w = s.warmup_ms
        return w

    def wake(self):
        for s in self.slots:
            if self.due(s) and s.warmup_ms and hasattr(s.driver, "wake"):
                try:
                    s.driver.wake()
                except SensorError as e:
                    s.errors += 1
                    s.last_error = str(e)

    def sample(self):
        """Read every due sensor once. Fills self.vals/self.flags; returns the number of sensors that failed."""
        vals = self.vals
        flags = self.flags
        fail = self._fail
        for i in range(len(vals)):
            vals[i] = None
            flags[i] = 0
            fail[i] = 0
        failed = 0
        for s in self.slots:
            if not self.due(s):
                continue
            d = s.driver
            try:
                src, partial = self._acquire(s)
                df = getattr(d, "flags", 0)  # a driver's own flags (overflow, saturation) for its channels
                if partial:
                    df |= F_COMM  # some readings of the window failed; the value comes from the others
                for j in range(len(s.idx)):
                    k = s.idx[j]
                    if vals[k] is not None:
                        continue  # two sensors measure this channel: the first one that answered counts
                    vals[k] = src[j]
                    if src[j] is None:
                        flags[k] |= F_MISSING
                    if df:
                        flags[k] |= df
                if s.warmup_ms and getattr(d, "warming", False):
                    for j in s.idx:
                        flags[j] |= F_WARMING_UP
            except (CRCError, FrameError) as e:
                failed += 1
                s.errors += 1
                s.last_error = str(e)
                for j in s.idx:
                    fail[j] |= F_COMM | F_MISSING
            except SensorError as e:
                failed += 1
                s.errors += 1
                s.last_error = str(e)
                for j in s.idx:
                    fail[j] |= F_MISSING
            except OSError as e:  # a bus error the driver did not classify: still only this sensor
                failed += 1
                s.errors += 1
                s.last_error = "OSError %s" % (e,)
                for j in s.idx:
                    fail[j] |= F_MISSING
            if s.warmup_ms and hasattr(d, "sleep"):
                try:
                    d.sleep()
                except SensorError:
                    pass
        for i in range(len(vals)):
            if vals[i] is None:  # (when another sensor gave this channel, the failure does not show)
                flags[i] |= fail[i]
        self._quality()
        self.cycle_no += 1
        return failed

    def _acquire(self, s):
        """Read the slot's sensor over its window. Returns (values, some reads failed); raises the last error
        when every read failed."""
        d = s.driver
        if s.reads <= 1:
            d.read()
            return d.values, False
        acc = s._acc
        cnt = s._cnt
        kind = s._kind
        n = len(acc)
        for j in range(n):
            acc[j] = 0
            cnt[j] = 0
        bad = 0
        err = None
        for r in range(s.reads):
            if r:
                self.clock.sleep_ms(s.spacing_ms)
            try:
                d.read()
            except (SensorError, OSError) as e:
                bad += 1
                err = e
                continue
            for j in range(n):
                v = d.values[j]
                if v is None:
                    continue
                if cnt[j] == 0:
                    acc[j] = v
                elif kind[j] == _MAX:
                    if v > acc[j]:
                        acc[j] = v
                else:
                    acc[j] += v
                cnt[j] += 1
        if err is not None and bad == s.reads:
            raise err
        for j in range(n):
            c = cnt[j]
            if c == 0:
                s.agg[j] = None
            elif kind[j] == _MEAN:
                a = acc[j]
                s.agg[j] = (2 * a + c) // (2 * c) if a >= 0 else -((-2 * a + c) // (2 * c))  # nearest integer
            else:
                s.agg[j] = acc[j]
        return s.agg, bad > 0

    def _quality(self):
        vals = self.vals
        flags = self.flags
        rows = self.rows
        for i in range(len(vals)):
            v = vals[i]
            if v is None:
                continue
            if v < rows[i][4] or v > rows[i][5]:
                flags[i] |= F_OUT_OF_RANGE
            if self._varying[i]:
                if v == self.prev[i]:
                    self.same[i] += 1
                    if self.same[i] >= STUCK_AFTER:
                        flags[i] |= F_STUCK
                else:
                    self.same[i] = 0
                self.prev[i] = v
