# Counted fault injection, the device's clock and a deterministic random stream, for the simulated UART devices.


class FaultyPeer:
    """Base of the UART twins: inject(kind, count) arms a fault for the next `count` occasions; the twin asks
    _fault(kind) at each occasion. Kinds are the subclass's FAULTS. MicroPython-compatible."""

    FAULTS = ()

    def __init__(self, clock, seed=1):
        self.clock = clock
        self.faults = {}
        self._rnd = seed & 0x7FFFFFFF

    def inject(self, kind, count=1):
        if kind not in self.FAULTS:
            raise ValueError("unknown fault " + kind)
        self.faults[kind] = count

    def clear(self):
        self.faults = {}

    def _fault(self, kind):
        n = self.faults.get(kind, 0)
        if n > 0:
            self.faults[kind] = n - 1
            return True
        return False

    def _now(self):
        return self.clock.monotonic_ms()

    def _rand(self):
        self._rnd = (1103515245 * self._rnd + 12345) & 0x7FFFFFFF
        return self._rnd >> 16
