# GPS receiver twin on a simulated UART: replays an NMEA log or synthesises RMC + GGA at 1 Hz, at line speed.
#
# As machine.UART's peer, pump(uart, now_ms) feeds what the receiver has sent by now (baud / 10 bytes per
# second, so a slow reader sees sentences arrive in pieces). Faults: garbage(n) binary noise, bad_checksum(n)
# corrupts the checksum of the next n sentences, silence(on) stops the output (unplugged antenna cable or
# receiver), cut() ends the current sentence half way (disconnect mid-line).
from citynode.sim.hwsim.twin_mobility import Rng
from citynode.sim.hwsim.power import Powered


def checksum(body):
    """XOR of the bytes between "$" and "*" (NMEA 0183)."""
    x = 0
    for b in body:
        x ^= b
    return x


def sentence(body):
    """b"$" + body + b"*hh\\r\\n" for body like b"GPRMC,..."."""
    return b"$" + body + (b"*%02X\r\n" % checksum(body))


def _coord(v_e5, deg_digits):
    """1e-5 degree -> (b"ddmm.mmmmm", hemisphere index 0 positive / 1 negative), integers only."""
    neg = v_e5 < 0
    v = -v_e5 if neg else v_e5
    deg = v // 100000
    min_e5 = (v % 100000) * 60  # minutes at 1e-5
    mm = min_e5 // 100000
    frac = min_e5 % 100000
    fmt = b"%02d%02d.%05d" if deg_digits == 2 else b"%03d%02d.%05d"
    return fmt % (deg, mm, frac), neg


def rmc(t_s, lat_e5, lon_e5, valid=True, talker=b"GP", date=b"010125"):
    hh, mm, ss = (t_s // 3600) % 24, (t_s // 60) % 60, t_s % 60
    la, ls = _coord(lat_e5, 2)
    lo, lw = _coord(lon_e5, 3)
    body = talker + b"RMC,%02d%02d%02d.00,%s,%s,%s,%s,%s,0.02,,%s,,,A" % (
        hh, mm, ss, b"A" if valid else b"V", la, b"S" if ls else b"N", lo, b"W" if lw else b"E", date)
    return sentence(body)


def gga(t_s, lat_e5, lon_e5, quality=1, sats=8, hdop=b"0.9", alt=b"52.3", talker=b"GP"):
    hh, mm, ss = (t_s // 3600) % 24, (t_s // 60) % 60, t_s % 60
    la, ls = _coord(lat_e5, 2)
    lo, lw = _coord(lon_e5, 3)
    body = talker + b"GGA,%02d%02d%02d.00,%s,%s,%s,%s,%d,%02d,%s,%s,M,47.0,M,," % (
        hh, mm, ss, la, b"S" if ls else b"N", lo, b"W" if lw else b"E", quality, sats, hdop, alt)
    return sentence(body)


class GpsTwin(Powered):
    """position(ms) -> (lat_e5, lon_e5) or None (no fix: RMC status V, GGA quality 0), or log=bytes to replay."""

    def __init__(self, clock=None, position=None, log=None, baud=9600, start_ms=0, seed=9, loop=False):
        self.clock = clock
        self.position = position
        self.rate = baud // 10  # bytes per second on the wire (8N1)
        self.pending = bytearray(log) if log is not None else bytearray()
        self.synth = log is None
        self.loop_log = bytes(log) if (log is not None and loop) else None
        self.last_ms = start_ms
        self.next_epoch = start_ms
        self.carry = 0  # byte credit (thousandths of a byte)
        self.rng = Rng(seed)
        self.silent = False
        self.corrupt = 0
        self.sent = 0
        self.epochs = 0
        self.received = bytearray()
        self._powered = True  # its supply rail (the T-Beam's AXP192 LDO3): off, it sends nothing
        self.fix_from_ms = start_ms  # no fix before (a hot start after the rail comes back)
        self.power_state = "acquisition"  # powered, no fix yet (the first epoch with a fix: "tracking")

    HOT_START_MS = 1000  # u-blox NEO-6/M8 datasheets: hot start TTFF 1 s (RTC and ephemeris kept on V_BCKP)

    @property
    def powered(self):
        return self._powered

    @powered.setter
    def powered(self, on):
        """The main supply. Off, V_BCKP keeps the RTC and ephemeris (hardware backup mode); back on, a hot
        start: acquisition until the fix, then tracking."""
        on = bool(on)
        if on != self._powered:
            self._powered = on
            if not on:
                self._power("backup")
                return
            c = self.clock
            now = c.monotonic_ms() if c is not None else self.last_ms
            self.fix_from_ms = now + self.HOT_START_MS  # its epochs report no fix until then
            if self.position is not None and self.position(self.fix_from_ms) is not None:
                self._power("acquisition", for_us=self.HOT_START_MS * 1000, then="tracking")
            else:
                self._power("acquisition")  # no fix to find: acquisition until an epoch has one

    def on_write(self, uart, data):
        self.received += data  # configuration commands ($PMTK..., UBX) are only recorded

    def _epoch(self, ms):
        t_s = ms // 1000
        pos = self.position(ms) if self.position is not None and ms >= self.fix_from_ms else None
        if ms >= self.fix_from_ms:  # (during a hot start the timed "acquisition" runs)
            st = "acquisition" if pos is None else "tracking"
            if st != self.power_state:
                self._power(st)  # fix found or lost: told when the epoch goes out
        if pos is None:
            out = rmc(t_s, 0, 0, valid=False) + gga(t_s, 0, 0, quality=0, sats=0)
        else:
            out = rmc(t_s, pos[0], pos[1]) + gga(t_s, pos[0], pos[1])
        if self.corrupt:
            out = self._corrupt(out)
        self.pending += out
        self.epochs += 1

    def _corrupt(self, out):
        b = bytearray(out)
        i = 0
        while self.corrupt and i >= 0:
            j = b.find(b"*", i)
            if j < 0:
                break
            b[j + 1] = 0x30 if b[j + 1] != 0x30 else 0x31  # a wrong first hex digit
            self.corrupt -= 1
            i = j + 1
        return bytes(b)

    def pump(self, uart, now_ms):
        if not self.powered:
            self.last_ms = self.next_epoch = now_ms  # nothing is sent while its rail is off
            self.pending = bytearray()
            return
        if self.synth:
            while self.next_epoch <= now_ms:  # send what was due before each epoch, then queue the epoch
                self._send(uart, self.next_epoch)
                if not self.silent:
                    self._epoch(self.next_epoch)
                self.next_epoch += 1000
        elif self.loop_log is not None and len(self.pending) < 256:
            self.pending += self.loop_log
        self._send(uart, now_ms)

    def _send(self, uart, t_ms):
        """Put on the wire what the line rate allows between the last call and t_ms."""
        if t_ms <= self.last_ms:
            return
        if self.silent:
            self.pending = bytearray()
        if not self.pending:
            self.last_ms = t_ms
            self.carry = 0
            return
        self.carry += (t_ms - self.last_ms) * self.rate
        self.last_ms = t_ms
        n = self.carry // 1000
        self.carry -= n * 1000
        if n <= 0:
            return
        chunk = bytes(self.pending[:n])
        self.pending = self.pending[n:]
        self.sent += len(chunk)
        uart.feed(chunk)

    # faults
    def garbage(self, n):
        self.pending += bytes(self.rng.below(256) for _ in range(n))

    def bad_checksum(self, n=1):
        self.corrupt += n

    def silence(self, on=True):
        self.silent = on

    def cut(self):
        """Drop the rest of the sentence being sent (a disconnect half way through a line)."""
        i = self.pending.find(b"\n")
        if i >= 0:
            self.pending = self.pending[i + 1:]
