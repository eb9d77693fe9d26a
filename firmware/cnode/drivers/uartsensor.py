# What the UART sensors share: a drained port, a frame read to a deadline, and the stuck-reading count.
from cnode.drivers.errors import SensorStuck, no_frame


class UartSensor:
    """Base of PMS5003, SDS011 and SPS30. A subclass names itself (_name) and parses in _feed(chunk, n): it takes
    n received bytes and returns -1 once they complete a frame (raising for a bad one), else how many of them are
    no sign of life (a command's acknowledgement), and keeps in _part whether a frame has begun. Nothing here
    allocates after __init__."""

    _name = "UART sensor"

    def __init__(self, uart, clock, timeout_ms, stuck_after, nvalues):
        self.uart = uart
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.stuck_after = stuck_after  # SensorStuck after this many identical readings in a row (0: never)
        self.values: list = [None] * nvalues
        self.errors = 0
        self._chunk = bytearray(32)
        self._part = 0  # a frame has begun (how much of it, or True)
        self._same = 0

    def _feed(self, chunk, n):
        raise NotImplementedError

    def _drain(self):
        """Drop what the sensor sent before we asked."""
        u = self.uart
        n = u.any()
        while n:
            u.readinto(self._chunk, n if n < 32 else 32)
            n = u.any()

    def _collect(self, step_ms):
        """Feed what arrives to _feed() until a frame is complete, polling every step_ms; none by timeout_ms
        raises no_frame()'s error: SensorAbsent (nothing heard), SensorTimeout (a frame cut short) or FrameError
        (bytes, no frame)."""
        u = self.uart
        c = self.clock
        chunk = self._chunk
        self._part = 0
        t0 = c.ticks_ms()
        got = 0
        while True:
            n = u.any()
            if n:
                n = u.readinto(chunk, n if n < 32 else 32) or 0
                k = self._feed(chunk, n)
                if k < 0:
                    return
                got += n - k
            elif c.ticks_diff(c.ticks_ms(), t0) >= self.timeout_ms:
                self.errors += 1
                raise no_frame(self._name, got, self._part)
            else:
                c.sleep_ms(step_ms)

    def _keep(self, a, b, d=None):
        """A reading of two channels (three with d) into values; SensorStuck when it is the same stuck_after times
        in a row."""
        v = self.values
        same = v[0] == a and v[1] == b and (d is None or v[2] == d)
        v[0] = a
        v[1] = b
        if d is not None:
            v[2] = d
        self._same = self._same + 1 if same else 0
        if self.stuck_after and self._same + 1 >= self.stuck_after:
            raise SensorStuck("%s same reading %d times" % (self._name, self._same + 1))
