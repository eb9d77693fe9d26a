# Twins of the mobility sensors: PIR/radar pulse source, QMC5883L and VL53L1X register models, BLE crowd.
#
# Each twin speaks the chip's byte protocol (I2C register reads/writes as machine.I2C carries them) or drives
# a Pin as the sensor's output would, is driven by a series (a function of time or a list of counts), and
# supports faults. Runs under CPython and the MicroPython unix port (no CPython-only modules).
from citynode.sim.hwsim.power import Powered


class Rng:
    """Small deterministic PRNG (same numbers under CPython and MicroPython)."""

    def __init__(self, seed):
        self.x = (seed * 2654435761 + 1) & 0x7FFFFFFF

    def next(self):
        self.x = (1103515245 * self.x + 12345) & 0x7FFFFFFF
        return self.x

    def below(self, n):
        return (self.next() >> 4) % n if n > 0 else 0


# --- PIR / radar -----------------------------------------------------------------------------------------
class PulseTwin:
    """A PIR or radar output on a simulated Pin.

    counts: counts per period (e.g. hourly bike counts); each period's events are spread uniformly at random
    inside the period (a Poisson process conditioned on its count) and kept at least min_gap_ms apart (the
    sensor cannot report two objects closer than its own hold time). Every event is a rising edge, `bounce`
    extra short toggles (contact bounce / EMI, inside bounce_ms) and a fall after hold_ms.
    Faults: stuck(level) holds the line (no edges), glitch_burst(at_ms, n) adds n spikes 1 ms apart.
    Events are scheduled one at a time on the clock, so long series cost nothing up front.
    """

    def __init__(self, pin, clock, counts, period_ms=3600000, start_ms=0, seed=1, hold_ms=100, min_gap_ms=2500,
                 bounce=2, bounce_ms=8):
        self.pin = pin
        self.clock = clock
        self.rng = Rng(seed)
        self.hold = hold_ms
        self.bounce = bounce
        self.bounce_ms = bounce_ms
        self.events = []  # all event times (ms), for tests
        prev = -min_gap_ms
        for p in range(len(counts)):
            n = int(counts[p])
            base = start_ms + p * period_ms
            ts = sorted(base + self.rng.below(period_ms) for _ in range(n))
            for t in ts:
                if t < prev + min_gap_ms:
                    t = prev + min_gap_ms
                self.events.append(t)
                prev = t
        self._i = 0
        self.stuck_level = None
        self.emitted = 0
        if self.events:
            clock.call_at_ms(self.events[0], self._event)

    def _drive(self, v):
        if self.stuck_level is None:
            self.pin.drive(v)

    def _event(self):
        t = self.events[self._i]
        self._i += 1
        if self.stuck_level is None:
            self.emitted += 1
        self._drive(1)
        for j in range(self.bounce):  # bounce: low/high spikes right after the edge
            dt = 1 + (j * self.bounce_ms) // max(1, self.bounce)
            self.clock.call_at_ms(t + dt, self._low)
            self.clock.call_at_ms(t + dt, self._high)
        self.clock.call_at_ms(t + self.hold, self._low)
        if self._i < len(self.events):
            self.clock.call_at_ms(self.events[self._i], self._event)

    def _low(self):
        self._drive(0)

    def _high(self):
        self._drive(1)

    def stuck(self, level):
        """Hold the output at level (None releases it)."""
        if level is not None:
            self.pin.drive(level)
        self.stuck_level = level

    def glitch_burst(self, at_ms, n):
        for j in range(n):
            self.clock.call_at_ms(at_ms + 2 * j, self._high)
            self.clock.call_at_ms(at_ms + 2 * j + 1, self._low)


# --- QMC5883L --------------------------------------------------------------------------------------------
class QMC5883LTwin(Powered):
    """QMC5883L register model (datasheet section 9): 8-bit register pointer with auto-increment, data
    registers 00H..05H little-endian, status 06H (DRDY/OVL/DOR), control 09H/0AH, SET/RESET 0BH, id 0DH.

    field(ms) -> (x, y, z) in LSB at 2 G gives the earth field; vehicles is a list of (arrive_ms, leave_ms,
    (dx, dy, dz)) added while a vehicle stands over the sensor. In 8 G range the LSB values are divided by 4.
    Faults: stuck_value (data frozen), overflow (OVL with saturated data), power_cycle() (registers reset,
    back in standby), dead (no new data: DRDY never set). Bus faults (NACK, timeout, cut) come from
    machine.I2C.inject.
    """

    def __init__(self, clock, base=(2000, -1500, 4500), vehicles=(), noise=6, seed=3):
        self.clock = clock
        self.base = base
        self.vehicles = list(vehicles)
        self.noise = noise
        self.rng = Rng(seed)
        self.regs = bytearray(16)
        self.regs[0x0D] = 0xFF
        self.ptr = 0
        self.writes = []  # (reg, value) written by the node
        self.next_ms = None
        self.unread = False
        self.stuck_value = False
        self.overflow = False
        self.dead = False
        self.samples = 0
        self.power_state = "standby"  # after power-on: MODE 00 in control register 09H (datasheet 9.2.3)

    def field(self, ms):
        x, y, z = self.base
        for a, b, d in self.vehicles:
            if a <= ms < b:
                x += d[0]
                y += d[1]
                z += d[2]
        n = self.noise
        if n:
            x += self.rng.below(2 * n + 1) - n
            y += self.rng.below(2 * n + 1) - n
            z += self.rng.below(2 * n + 1) - n
        return x, y, z

    def power_cycle(self):
        self.regs = bytearray(16)
        self.regs[0x0D] = 0xFF
        self.next_ms = None
        if self.power_state != "standby":
            self._power("standby")  # registers to defaults: MODE 00

    def _period(self):
        return (100, 20, 10, 5)[(self.regs[0x09] >> 2) & 3]

    def _tick(self):
        if self.regs[0x09] & 3 != 1 or self.dead:  # standby (or dead): no conversions
            return
        now = self.clock.monotonic_ms()
        if self.next_ms is None:
            self.next_ms = now + self._period()
            return
        while now >= self.next_ms:
            self.next_ms += self._period()
            self._sample(self.next_ms - self._period())

    def _sample(self, ms):
        r = self.regs
        st = r[0x06]
        if self.unread:
            st |= 0x04  # DOR: the previous sample was never read
        if not self.stuck_value or not self.samples:
            x, y, z = self.field(ms)
            if r[0x09] & 0x30:  # 8 G range: 3000 LSB/G instead of 12000
                x, y, z = x // 4, y // 4, z // 4
            ovl = self.overflow
            vals = []
            for v in (x, y, z):
                if v > 32767 or v < -32768:
                    ovl = True
                v = 32767 if v > 32767 else (-32768 if v < -32768 else v)
                vals.append(v)
            if self.overflow:
                vals = [32767, vals[1], vals[2]]
            for i in range(3):
                u = vals[i] & 0xFFFF
                r[2 * i] = u & 0xFF
                r[2 * i + 1] = u >> 8
            st = (st & ~0x02) | (0x02 if ovl else 0)
        r[0x06] = st | 0x01
        self.unread = True
        self.samples += 1

    # I2C device interface
    def write(self, data):
        self._tick()
        if not data:
            return
        self.ptr = data[0]
        for v in data[1:]:
            self.writes.append((self.ptr, v))
            if self.ptr == 0x0A and v & 0x80:  # SOFT_RST: registers to defaults
                self.power_cycle()
            elif self.ptr < 16 and self.ptr not in (0x06, 0x0D):
                self.regs[self.ptr] = v
                if self.ptr == 0x09:
                    self.next_ms = None
                    st = "continuous" if v & 3 == 1 else "standby"  # MODE 01 continuous, 00 standby
                    if st != self.power_state:
                        self._power(st)
            self.ptr += 1

    def read(self, n):
        self._tick()
        out = bytearray(n)
        for i in range(n):
            p = self.ptr
            out[i] = self.regs[p] if p < 16 else 0
            if p <= 0x05:
                # reading data clears DRDY and DOR (datasheet 9.2.2)
                self.regs[0x06] &= ~0x05
                self.unread = False
            self.ptr = p + 1
            if self.ptr == 0x06 and self.regs[0x0A] & 0x40:  # ROL_PNT: roll over to 00H after 05H
                self.ptr = 0
        return bytes(out)


# --- VL53L1X ---------------------------------------------------------------------------------------------
class VL53L1XTwin(Powered):
    """VL53L1X register model as the ULD sees it: 16-bit big-endian index, auto-increment, model id 0xEACC
    at 0x010F, firmware booted bit at 0x00E5, ranging started/stopped at 0x0087, data-ready in bit 0 of 0x0031
    (active high with the default 0x0030 = 0x01), result block at 0x0089 (device status 9 = valid), distance
    at 0x0096, interrupt cleared by 0x0086 = 0x01.

    distance(ms) -> mm (None: no target, reported as signal fail). Faults: hang (no data ready ever),
    stuck_value (result frozen), boot_ms (booted bit set late), model (wrong id).
    """

    def __init__(self, clock, distance=None, period_ms=100, boot_ms=0, max_mm=4000):
        self.clock = clock
        self.distance = distance if distance is not None else (lambda ms: 2000)
        self.period = period_ms
        self.boot_at = clock.monotonic_ms() + boot_ms
        self.max_mm = max_mm
        self.regs = bytearray(0x200)
        self.regs[0x010F] = 0xEA
        self.regs[0x0110] = 0xCC
        self.ptr = 0
        self.writes = []  # raw write transfers (index bytes included), for wire-exact tests
        self.ranging = False
        self.next_ms = None
        self.hang = False
        self.stuck_value = False
        self.results = 0
        self.power_state = "standby"  # after boot, not ranging (SW standby)

    def _tick(self):
        now = self.clock.monotonic_ms()
        self.regs[0x00E5] = 1 if now >= self.boot_at else 0
        if not self.ranging or self.hang:
            return
        if self.next_ms is not None and now >= self.next_ms:
            self.next_ms = None
            self._result(now)

    def _active(self):
        return 0 if self.regs[0x0030] & 0x10 else 1

    def _result(self, ms):
        r = self.regs
        if not (self.stuck_value and self.results):
            d = self.distance(ms)
            if d is None or d > self.max_mm:
                r[0x0089] = 4  # device status 4 -> ULD 2 (signal fail)
                d = 0
            else:
                r[0x0089] = 9  # device status 9 -> ULD 0 (range valid)
            r[0x0096] = (d >> 8) & 0xFF
            r[0x0097] = d & 0xFF
        self.results += 1
        # data ready: bit 0 of GPIO__TIO_HV_STATUS at the active level
        r[0x0031] = (r[0x0031] & 0xFE) | self._active()

    def write(self, data):
        self._tick()
        self.writes.append(bytes(data))
        if len(data) < 2:
            return
        p = (data[0] << 8) | data[1]
        for v in data[2:]:
            if p == 0x0087:
                if v & 0x40:  # SYSTEM__MODE_START 0x40: ranging (the ULD's StartRanging)
                    self.ranging = True
                    self.next_ms = self.clock.monotonic_ms() + self.period
                    if self.power_state != "ranging":
                        self._power("ranging")
                else:  # 0x00: stop (StopRanging): SW standby
                    self.ranging = False
                    self.next_ms = None
                    if self.power_state != "standby":
                        self._power("standby")
            elif p == 0x0086:
                if v & 1:  # clear interrupt: data-ready goes inactive, next measurement starts
                    self.regs[0x0031] = (self.regs[0x0031] & 0xFE) | (1 - self._active())
                    if self.ranging:
                        self.next_ms = self.clock.monotonic_ms() + self.period
            elif p < 0x200 and p not in (0x010F, 0x0110, 0x00E5):
                self.regs[p] = v
            p += 1
        self.ptr = (data[0] << 8) | data[1]

    def read(self, n):
        self._tick()
        p = self.ptr
        out = bytes(self.regs[p:p + n])
        self.ptr = p + n
        return out

    def config_block(self):
        """What the node wrote to 0x2D..0x87 in one transfer, or None."""
        for w in self.writes:
            if len(w) == 93 and w[0] == 0x00 and w[1] == 0x2D:
                return w[2:]
        return None


# --- BLE crowd -------------------------------------------------------------------------------------------
class BleCrowd:
    """A population of BLE advertisers. Each device: (addr_type, 6-byte addr, rssi, t_on_ms, t_off_ms).
    scan(handler, t0_ms, t1_ms, every_ms) calls handler(5, (addr_type, addr, adv_type, rssi, adv_data))
    for every device present, every every_ms, as bluetooth IRQ event 5 delivers it (memoryviews)."""

    def __init__(self, n=0, seed=5, span_ms=60000, rssi=(-95, -40)):
        self.rng = Rng(seed)
        self.devices = []
        for _ in range(n):
            a = bytes(self.rng.below(256) for _ in range(6))
            t0 = self.rng.below(span_ms)
            self.add(1, a, rssi[0] + self.rng.below(rssi[1] - rssi[0] + 1), t0, t0 + 5000 + self.rng.below(span_ms))

    def add(self, addr_type, addr, rssi, t_on_ms=0, t_off_ms=1 << 40):
        self.devices.append((addr_type, bytes(addr), rssi, t_on_ms, t_off_ms))

    def scan(self, handler, t0_ms, t1_ms, every_ms=1000):
        adv = bytes((2, 1, 6, 3, 3, 0x6F, 0xFD))  # flags + 16-bit UUID list
        t = t0_ms
        n = 0
        while t < t1_ms:
            for at, a, rssi, on, off in self.devices:
                if on <= t < off:
                    handler(5, (at, memoryview(a), 0, rssi, memoryview(adv)))
                    n += 1
            t += every_ms
        return n


# Passers-by per hour of the day for BleStreet: an illustration, not a measurement (quiet at night, busiest in
# the late afternoon), chosen so that night windows fall below the counter's k and day windows do not.
STREET_PER_HOUR = (6, 3, 2, 2, 2, 6, 30, 90, 150, 140, 160, 220, 260, 240, 220, 230, 260, 280, 220, 150, 90,
                   50, 25, 12)


class BleStreet:
    """BLE advertisers near a counter on a street, made as time passes: a day costs what is in range at each
    moment, not everyone who passed by. `residents` devices stay in range all the time (a shop's beacon, a TV
    in a flat above) and change their random address every rotate_ms, as phones do; passers-by arrive
    per_hour[h] in hour h of the day (uniformly spread over the hour, the same every day), each with a new
    resolvable private address, in range for a draw in dwell_ms, at an RSSI drawn in `rssi`.
    scan(handler, t0_ms, t1_ms, every_ms) is BleCrowd's. `passed` counts the passers-by made so far."""

    def __init__(self, per_hour=STREET_PER_HOUR, residents=2, rotate_ms=900000, dwell_ms=(15000, 60000),
                 rssi=(-95, -55), resident_rssi=-75, seed=7):
        self.per_hour = per_hour
        self.residents = residents
        self.rotate_ms = rotate_ms
        self.dwell = dwell_ms
        self.rssi = rssi
        self.resident_rssi = resident_rssi
        self.seed = seed
        self.rng = Rng(seed)
        self.passed = 0
        self._hour = -1  # the last hour whose passers-by are made
        self._coming = []  # (t_on_ms, t_off_ms, addr, rssi), by t_on
        self._near = []
        self._adv = bytes((2, 1, 6, 3, 3, 0x6F, 0xFD))  # flags + 16-bit UUID list

    def _addr(self, rng):
        # most significant bits 01: a resolvable private address (Core spec Vol 6 Part B 1.3.2.2); byte 0 is
        # the most significant, as bluetooth IRQ event 5 gives it
        return bytes([0x40 | rng.below(64)] + [rng.below(256) for _ in range(5)])

    def _make_hour(self, h):
        n = int(self.per_hour[h % len(self.per_hour)])
        rng = self.rng
        base = h * 3600000
        lo, hi = self.dwell
        for t in sorted(base + rng.below(3600000) for _ in range(n)):
            self._coming.append((t, t + lo + rng.below(hi - lo + 1), self._addr(rng),
                                 self.rssi[0] + rng.below(self.rssi[1] - self.rssi[0] + 1)))
        self.passed += n

    def resident_addr(self, i, t_ms):
        """Resident i's address at t_ms (each changes at its own phase of rotate_ms)."""
        epoch = (t_ms + i * 277771) // self.rotate_ms
        return self._addr(Rng(self.seed * 7919 + i * 104729 + epoch * 31))

    def scan(self, handler, t0_ms, t1_ms, every_ms=1000):
        adv = self._adv
        t = t0_ms
        n = 0
        while t < t1_ms:
            while self._hour < t // 3600000:
                self._hour += 1
                self._make_hour(self._hour)
            coming = self._coming
            while coming and coming[0][0] <= t:
                self._near.append(coming.pop(0))
            self._near = [d for d in self._near if d[1] > t]
            for i in range(self.residents):
                handler(5, (1, memoryview(self.resident_addr(i, t)), 0, self.resident_rssi, memoryview(adv)))
                n += 1
            for d in self._near:
                handler(5, (1, memoryview(d[2]), 0, d[3], memoryview(adv)))
                n += 1
            t += every_ms
        return n
