# Simulated UART particulate sensors (SDS011, SPS30 over SHDLC, PMS5003) speaking their wire protocols.
#
# Attach a twin as the peer of a hwsim.machine.UART: the UART calls twin.on_write(uart, data) with what the
# node sends and twin.pump(uart, now_ms) when the node looks at the line; the twin then feeds the bytes the
# chip has sent by now. Each twin is driven by a series: series(ms) -> {"pm1": .., "pm2_5": .., "pm10": ..}
# in ug/m3 (floats; pm1 is derived from pm2_5 when absent). Fault injection, next `count` frames each:
#   "checksum"   the frame's checksum is wrong          "garbage"   random bytes before the frame
#   "noise"      random bytes instead of the frame      "truncate"  only the first half of the frame
#   "disconnect" nothing at all                          "stuck"     the frame repeats the last values
# Runs under CPython and the MicroPython unix port.
import struct

from citynode.sim.hwsim.faults import FaultyPeer
from citynode.sim.hwsim.power import Powered

FAULTS = ("checksum", "garbage", "noise", "truncate", "disconnect", "stuck")


def _raw(x, scale, hi=65535):
    """Non-negative float x (ug/m3) to an integer at 1/scale, clamped to hi."""
    v = int(x * scale + 0.5) if x > 0 else 0
    return hi if v > hi else v


class _Twin(FaultyPeer, Powered):
    """Common parts: a clock, a series, an output queue of (due_ms, bytes) and counted faults."""

    latency_ms = 10  # from the end of a command to the reply
    FAULTS = FAULTS

    def __init__(self, clock, series, seed=1):
        FaultyPeer.__init__(self, clock, seed)
        self.series = series
        self.heard = []  # every well-formed command frame received, as bytes
        self.sent_frames = 0
        self._out = []
        self._last = None  # values of the last frame sent (for "stuck")

    def garbage(self, n):
        return bytes(self._rand() & 0xFF for _ in range(n))

    def _values(self, ms):
        """The series at ms as a dict with pm1, pm2_5, pm10 (or the last values while "stuck")."""
        if self._last is not None and self._fault("stuck"):
            return self._last
        s = self.series(ms)
        pm25 = s.get("pm2_5", 0.0)
        v = {"pm1": s.get("pm1", pm25 * 0.7), "pm2_5": pm25, "pm10": s.get("pm10", pm25)}
        self._last = v
        return v

    def _emit(self, frame, at_ms=None):
        """Queue a frame for the line, applying the line faults."""
        if at_ms is None:
            at_ms = self._now() + self.latency_ms
        self.sent_frames += 1
        if self._fault("disconnect"):
            return
        if self._fault("noise"):
            frame = self.garbage(len(frame))
        elif self._fault("truncate"):
            frame = frame[:len(frame) // 2]
        if self._fault("garbage"):
            frame = self.garbage(7) + frame
        i = len(self._out)
        while i and self._out[i - 1][0] > at_ms:  # keep the queue in time order
            i -= 1
        self._out.insert(i, (at_ms, frame))

    def _tick(self, now_ms):
        """Chip-specific periodic output (active modes)."""

    def pump(self, uart, now_ms):
        self._tick(now_ms)
        while self._out and self._out[0][0] <= now_ms:
            uart.feed(self._out.pop(0)[1])


# --- SDS011 (Nova Fitness Laser Dust Sensor Control Protocol V1.3) ------------------------------------
class SDS011Twin(_Twin):
    """Factory state: active reporting, continuous working period, working (fan on)."""

    def __init__(self, clock, series, device_id=0xA160, query_mode=False, period=0, working=True,
                 firmware=(15, 7, 10), seed=1):
        _Twin.__init__(self, clock, series, seed)
        self.device_id = device_id
        self.query_mode = query_mode
        self.period = period
        self.working = working
        self.power_state = "work" if working else "sleep"  # fan and laser on / off
        self.firmware = firmware
        self.flash_writes = 0  # reporting mode and working period are kept in the sensor's flash
        self.fan_ms = 0  # total time the fan ran
        now = self._now()
        self._fan_since = now
        self._next_ms = now + 1000
        self._rx = bytearray()

    def fan_on(self):
        return self.working

    def fan_total_ms(self):
        return self.fan_ms + (self._now() - self._fan_since if self.working else 0)

    def _set_working(self, on):
        now = self._now()
        if self.working and not on:
            self.fan_ms += now - self._fan_since
        if on and not self.working:
            self._fan_since = now
            self._next_ms = now + 1000
        if on != self.working:
            self._power("work" if on else "sleep")  # PROT 3.4: fan and laser on / off
        self.working = on

    def frame(self, ms):
        """The 10-byte data frame for time ms (applies "stuck" and "checksum" faults)."""
        v = self._values(ms)
        p25 = _raw(v["pm2_5"], 10)
        p10 = _raw(v["pm10"], 10)
        f = bytearray([0xAA, 0xC0, p25 & 0xFF, p25 >> 8, p10 & 0xFF, p10 >> 8,
                       self.device_id >> 8, self.device_id & 0xFF, 0, 0xAB])
        f[8] = sum(f[2:8]) & 0xFF
        if self._fault("checksum"):
            f[8] = (f[8] + 1) & 0xFF
        return bytes(f)

    def _reply(self, cmd, d2, d3, d4=0):
        f = bytearray([0xAA, 0xC5, cmd, d2, d3, d4, self.device_id >> 8, self.device_id & 0xFF, 0, 0xAB])
        f[8] = sum(f[2:8]) & 0xFF
        if self._fault("checksum"):
            f[8] = (f[8] + 1) & 0xFF
        self._emit(bytes(f))

    def on_write(self, uart, data):
        self._rx += data
        while True:
            i = self._rx.find(b"\xaa\xb4")
            if i < 0:
                self._rx = self._rx[-1:] if self._rx[-1:] == b"\xaa" else bytearray()
                return
            if len(self._rx) - i < 19:
                self._rx = self._rx[i:]
                return
            f = bytes(self._rx[i:i + 19])
            if f[18] == 0xAB and sum(f[2:17]) & 0xFF == f[17]:
                self._rx = self._rx[i + 19:]
                self.heard.append(f)
                self._command(f)
            else:
                self._rx = self._rx[i + 1:]

    def _command(self, f):
        cmd, op, val = f[2], f[3], f[4]
        target = (f[15] << 8) | f[16]
        if target != 0xFFFF and target != self.device_id:
            return
        if not self.working and not (cmd == 6 and op == 1 and val == 1):
            return  # asleep: only the wake command is heard
        if cmd == 2:  # PROT 3.1
            if op:
                self.query_mode = bool(val)
                self.flash_writes += 1
            self._reply(2, op, 1 if self.query_mode else 0)
        elif cmd == 4:  # PROT 3.2
            self._emit(self.frame(self._now()))
        elif cmd == 6:  # PROT 3.4
            if op:
                self._set_working(bool(val))
            self._reply(6, op, 1 if self.working else 0)
        elif cmd == 7:  # PROT 3.6 firmware version year, month, day
            self._reply(7, self.firmware[0], self.firmware[1], self.firmware[2])
        elif cmd == 8:  # PROT 3.5
            if op:
                self.period = val
                self.flash_writes += 1
            self._reply(8, op, self.period)

    def _tick(self, now_ms):
        if not self.working or self.query_mode:
            self._next_ms = max(self._next_ms, now_ms)
            return
        step = 1000 if self.period == 0 else self.period * 60000
        if now_ms - self._next_ms > 32 * step:  # more than a UART FIFO holds: skip the oldest
            self._next_ms += ((now_ms - self._next_ms) // step - 31) * step
        while self._next_ms <= now_ms:
            self._emit(self.frame(self._next_ms), self._next_ms)
            self._next_ms += step


# --- SPS30 over UART SHDLC (Sensirion SPS30 datasheet v1.0, March 2020, section 5) --------------------
_SPS_STUFF = {0x7E: 0x5E, 0x7D: 0x5D, 0x11: 0x31, 0x13: 0x33}
_SPS_UNSTUFF = {0x5E: 0x7E, 0x5D: 0x7D, 0x31: 0x11, 0x33: 0x13}


def shdlc_frame(body, bad_checksum=False):
    """7E + stuffed(body + checksum) + 7E; checksum = inverted low byte of the sum of body (DS 5.2)."""
    chk = ~sum(body) & 0xFF
    if bad_checksum:
        chk ^= 0x01
    out = bytearray([0x7E])
    for b in bytes(body) + bytes([chk]):
        if b in _SPS_STUFF:
            out.append(0x7D)
            out.append(_SPS_STUFF[b])
        else:
            out.append(b)
    out.append(0x7E)
    return bytes(out)


class SPS30Twin(_Twin):
    """States idle (after power-on), measuring, sleep. Product type "00080000"."""

    IDLE, MEASURING, SLEEP = 0, 1, 2

    def __init__(self, clock, series, serial="00000000000000000000", address=0, seed=1,
                 version=(2, 2, 0, 7, 0, 2, 0)):
        _Twin.__init__(self, clock, series, seed)
        self.serial = serial
        self.address = address
        self.version = version
        self.state = SPS30Twin.IDLE
        self.power_state = "idle"  # after power-on (DS 5.3: idle mode)
        self.fmt = 0
        self.resets = 0
        self.fan_ms = 0
        self._since = 0
        self._read_at = -1  # measurement index returned last
        self._iface_awake = True
        self._rx = None  # bytearray while inside a frame
        self._esc = False

    def fan_on(self):
        return self.state == SPS30Twin.MEASURING

    def _go(self, st):
        """Into state st (IDLE, MEASURING, SLEEP): the power states "idle", "measure", "sleep" (DS 2.1)."""
        if st != self.state:
            self.state = st
            self._power(("idle", "measure", "sleep")[st])

    def on_write(self, uart, data: bytes):
        for b in data:
            if not self._iface_awake:  # DS 5.3.5: in sleep the UART is off; a first byte wakes it
                self._iface_awake = True
                continue
            if b == 0x7E:
                if self._rx:
                    self._frame(bytes(self._rx))
                self._rx = bytearray()
                self._esc = False
            elif self._rx is None:
                continue
            elif b == 0x7D:
                self._esc = True
            else:
                if self._esc:
                    b = _SPS_UNSTUFF.get(b, b)
                    self._esc = False
                self._rx.append(b)

    def _frame(self, f):
        if len(f) < 4 or f[2] != len(f) - 4 or (~sum(f[:-1]) & 0xFF) != f[-1]:
            return  # not a valid MOSI frame: no answer
        if f[0] != self.address:
            return
        self.heard.append(shdlc_frame(f[:-1]))
        cmd, data = f[1], f[3:-1]
        if self.state == SPS30Twin.SLEEP and cmd != 0x11:
            return
        now = self._now()
        st, out = 0, b""
        if cmd == 0x00:  # DS 5.3.1 start measurement
            if len(data) != 2:
                st = 0x01
            elif data[0] != 0x01 or data[1] not in (0x03, 0x05):
                st = 0x04
            elif self.state != SPS30Twin.IDLE:
                st = 0x43
            else:
                self.fmt, self._since, self._read_at = data[1], now, -1
                self._go(SPS30Twin.MEASURING)
        elif cmd == 0x01:  # DS 5.3.2 stop measurement
            if self.state != SPS30Twin.MEASURING:
                st = 0x43
            else:
                self.fan_ms += now - self._since
                self._go(SPS30Twin.IDLE)
        elif cmd == 0x03:  # DS 5.3.3 read measured values: empty when no new values
            if self.state != SPS30Twin.MEASURING:
                st = 0x43
            else:
                k = (now - self._since) // 1000  # a new measurement every second
                if k >= 1 and k != self._read_at:
                    self._read_at = k
                    out = self._measurement(now)
        elif cmd == 0x10:  # DS 5.3.4 sleep (from idle only)
            if self.state != SPS30Twin.IDLE:
                st = 0x43
            else:
                self._reply(cmd, 0, b"")
                self._go(SPS30Twin.SLEEP)
                self._iface_awake = False
                return
        elif cmd == 0x11:  # DS 5.3.5 wake-up
            if self.state != SPS30Twin.SLEEP:
                st = 0x43
            else:
                self._go(SPS30Twin.IDLE)
        elif cmd == 0xD0:  # DS 5.3.8 device information (null-terminated ASCII)
            if len(data) != 1:
                st = 0x01
            elif data[0] == 0x00:
                out = b"00080000\x00"
            elif data[0] == 0x03:
                out = self.serial.encode() + b"\x00"
            else:
                st = 0x04
        elif cmd == 0xD1:  # DS 5.3.9 read version
            out = bytes(self.version)
        elif cmd == 0xD3:  # DS 5.3.11 device reset
            self.resets += 1
            if self.state == SPS30Twin.MEASURING:
                self.fan_ms += now - self._since
            self._go(SPS30Twin.IDLE)
        else:
            st = 0x02
        self._reply(cmd, st, out)

    def _measurement(self, now):
        v = self._values(now)
        pm1, pm25, pm10 = v["pm1"], v["pm2_5"], v["pm10"]
        pm4 = (pm25 + pm10) / 2
        nc = (pm1 * 7.0, pm1 * 8.0, pm25 * 8.2, pm4 * 8.3, pm10 * 8.3)
        if self.fmt == 0x05:  # big-endian uint16: ug/m3, #/cm3, nm
            vals = [_raw(x, 1) for x in (pm1, pm25, pm4, pm10) + nc] + [600]
            return struct.pack(">10H", *vals)
        return struct.pack(">10f", pm1, pm25, pm4, pm10, nc[0], nc[1], nc[2], nc[3], nc[4], 0.6)

    def _reply(self, cmd, state, data):
        body = bytearray([self.address, cmd, state, len(data)]) + data
        self._emit(shdlc_frame(body, self._fault("checksum")))


# --- PMS5003 (Plantower PMS5003 series data manual V2.3, appendix I and II) ---------------------------
def pms_command(cmd, data):
    """7-byte host command 42 4D CMD DATAH DATAL LRCH LRCL, LRC = 16-bit sum of the first five bytes."""
    f = bytearray([0x42, 0x4D, cmd, (data >> 8) & 0xFF, data & 0xFF, 0, 0])
    s = sum(f[:5])
    f[5], f[6] = s >> 8, s & 0xFF
    return bytes(f)


class PMS5003Twin(_Twin):
    """Power-on state: active mode (a frame every interval_ms), awake. The SET pin (manual: high or floating =
    working, low = sleep) follows a wire when the test connects it: machine.wire(gpio).watch(twin.set_pin)."""

    def __init__(self, clock, series, passive=False, interval_ms=2300, seed=1, acks=True):
        _Twin.__init__(self, clock, series, seed)
        self.passive = passive
        self.awake = True  # by the sleep/wake command (E4)
        self.set_high = True  # the SET pin: floating (internal pull-up) until driven
        self.power_state = "work"  # fan and laser run from power-on (manual: active mode)
        self.interval_ms = interval_ms  # manual: 2.3 s in stable mode
        self.acks = acks  # answer E1/E4 with 42 4D 00 04 CMD DATA CHK (seen on sensors, not in the manual)
        self._next_ms = self._now() + interval_ms
        self._rx = bytearray()

    def fan_on(self):
        return self.awake and self.set_high

    def set_pin(self, level):
        """The SET pin's level as the MCU drives it: low puts the sensor to sleep whatever the command said."""
        on = bool(level)
        if on and not self.set_high and self.awake:
            self._next_ms = self._now() + self.interval_ms
        self.set_high = on
        self._follow()

    def _follow(self):
        st = "work" if self.fan_on() else "sleep"
        if st != self.power_state:
            self._power(st)

    def frame(self, ms):
        v = self._values(ms)
        atm = [_raw(v["pm1"], 1), _raw(v["pm2_5"], 1), _raw(v["pm10"], 1)]
        counts = [a * 30 for a in (atm[0] * 5, atm[0] * 2, atm[1], atm[2] // 3, atm[2] // 10, atm[2] // 30)]
        data = atm + atm + [min(c, 65535) for c in counts] + [0x9700]
        f = bytearray(b"\x42\x4d\x00\x1c") + struct.pack(">13H", *data) + b"\x00\x00"
        s = sum(f[:30])
        if self._fault("checksum"):
            s += 1
        f[30], f[31] = (s >> 8) & 0xFF, s & 0xFF
        return bytes(f)

    def on_write(self, uart, data):
        self._rx += data
        while len(self._rx) >= 7:
            i = self._rx.find(b"\x42\x4d")
            if i < 0:
                self._rx = self._rx[-1:]
                return
            if len(self._rx) - i < 7:
                self._rx = self._rx[i:]
                return
            f = bytes(self._rx[i:i + 7])
            if (f[5] << 8 | f[6]) == sum(f[:5]):
                self._rx = self._rx[i + 7:]
                self.heard.append(f)
                self._command(f[2], (f[3] << 8) | f[4])
            else:
                self._rx = self._rx[i + 1:]

    def _ack(self, cmd, data):
        if self.acks:
            f = bytearray([0x42, 0x4D, 0x00, 0x04, cmd, data & 0xFF, 0, 0])
            s = sum(f[:6])
            f[6], f[7] = s >> 8, s & 0xFF
            self._emit(bytes(f))

    def _command(self, cmd, data):
        if not self.awake and not (cmd == 0xE4 and data == 1):
            return
        if cmd == 0xE2 and self.passive:
            self._emit(self.frame(self._now()))
        elif cmd == 0xE1:
            self.passive = data == 0
            self._ack(cmd, data)
        elif cmd == 0xE4:
            if data == 1 and not self.awake:
                self._next_ms = self._now() + self.interval_ms
            self.awake = data == 1
            self._follow()
            self._ack(cmd, data)

    def _tick(self, now_ms):
        if not self.fan_on() or self.passive:
            self._next_ms = max(self._next_ms, now_ms)
            return
        step = self.interval_ms
        if now_ms - self._next_ms > 32 * step:
            self._next_ms += ((now_ms - self._next_ms) // step - 31) * step
        while self._next_ms <= now_ms:
            self._emit(self.frame(self._next_ms), self._next_ms)
            self._next_ms += step


# --- peers and series for tests -----------------------------------------------------------------------
class ReplayPeer:
    """A UART peer answering each write with the next canned reply (bytes, or None for silence)."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.heard = []

    def on_write(self, uart, data):
        self.heard.append(bytes(data))
        if self.replies:
            r = self.replies.pop(0)
            if r:
                uart.feed(r)


def constant(pm2_5, pm10=None, pm1=None):
    """A series returning the same values at every time."""
    v = {"pm2_5": pm2_5, "pm10": pm2_5 if pm10 is None else pm10}
    if pm1 is not None:
        v["pm1"] = pm1
    return lambda ms: v


def _days(y, m, d):
    """Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian)."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def iso_seconds(ts):
    """Unix seconds of an ISO timestamp 'YYYY-MM-DDTHH:MM:SS' (UTC, as in the sensor.community archive)."""
    return (_days(int(ts[0:4]), int(ts[5:7]), int(ts[8:10])) * 86400
            + int(ts[11:13]) * 3600 + int(ts[14:16]) * 60 + int(ts[17:19]))


class RecordedSeries:
    """Sample-and-hold series from sensor.community SDS011 archive CSVs (';'-separated, columns
    timestamp, P1 = PM10, P2 = PM2.5). series(ms) gives the last row at or before start + ms (the first
    row before it); `start_s` is the Unix time of the first row, `span_ms` the time to the last."""

    def __init__(self, paths):
        import array
        self.t = array.array("i")  # seconds since the first row
        self.p25 = array.array("i")  # ug/m3 x 100
        self.p10 = array.array("i")
        rows = []
        for path in paths:
            with open(path) as f:
                head = f.readline().strip().split(";")
                it, i1, i2 = head.index("timestamp"), head.index("P1"), head.index("P2")
                for line in f:
                    c = line.strip().split(";")
                    if len(c) <= max(it, i1, i2) or not c[i1] or not c[i2]:
                        continue
                    rows.append((iso_seconds(c[it]), int(float(c[i2]) * 100 + 0.5),
                                 int(float(c[i1]) * 100 + 0.5)))
        if not rows:
            raise ValueError("no SDS011 rows in " + repr(paths))
        rows.sort()
        self.start_s = rows[0][0]
        for r in rows:
            self.t.append(r[0] - self.start_s)
            self.p25.append(r[1])
            self.p10.append(r[2])
        self.span_ms = self.t[-1] * 1000

    def index(self, ms):
        s = ms // 1000
        lo, hi = 0, len(self.t) - 1
        if s <= self.t[0]:
            return 0
        while lo < hi:  # last index with t <= s
            mid = (lo + hi + 1) // 2
            if self.t[mid] <= s:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def __call__(self, ms):
        i = self.index(ms)
        return {"pm2_5": self.p25[i] / 100, "pm10": self.p10[i] / 100}
