# Pulse/presence counter (PIR, microwave radar) on a pin interrupt with a dead time; read() = count since last read.
#
# The IRQ handler only records: it reads ticks_ms from the injected clock, compares with the last accepted
# edge and bumps integers held in the instance. It allocates nothing (the bound method is made once in
# __init__ and passed to pin.irq). The ESP32 port's Pin.irq takes no `hard=` (TypeError) and always
# schedules the handler (soft IRQ, a queue of 8): the time is read when the handler runs, and an edge that
# finds the queue full is lost; the dead time (>= 200 ms) keeps the queue short.
#
# Dead time: a PIR holds its output for its own retrigger time and contacts bounce, so an edge closer than
# dead_ms to the last accepted one is rejected (counted in .rejected). Typical: PIR 2000 ms, radar 200 ms.
#
# Atomicity: read() takes the count and zeroes it. On a board pass irq_guard=(machine.disable_irq,
# machine.enable_irq) and nothing can land between the two. Without a guard the code assumes single-threaded
# IRQ semantics: an edge whose handler runs exactly between the load and the store of `count` is lost (one
# pulse at most per read, never counted twice).
from micropython import const

from cnode.channels import by_name

IRQ_RISING = const(1)  # machine.Pin.IRQ_RISING on the ESP32 port
IRQ_FALLING = const(2)
_COUNT_CHANNELS = ("pedestrians", "bikes", "vehicles")
# ticks wrap at 2**30 ms (~12.4 days); forget the last edge long before ticks_diff could alias
_FORGET_MS = const(0x10000000)


class PulseCounter:
    keeps_count_in_ram = True  # edges between two reads are counted in RAM: deep sleep would lose them

    def __init__(self, pin, clock, channel="pedestrians", dead_ms=2000, trigger=IRQ_RISING, irq_guard=None):
        if channel not in _COUNT_CHANNELS or by_name(channel) is None:
            raise ValueError("pulse channel must be pedestrians, bikes or vehicles")
        if dead_ms < 0:
            raise ValueError("dead_ms < 0")
        self.channels = (channel,)
        self.values = [None]  # type: list
        self._clock = clock
        self._dead = dead_ms
        self._guard = irq_guard
        self.count = 0  # accepted edges since the last read()
        self.total = 0  # accepted edges since construction
        self.rejected = 0  # edges inside the dead time (bounce, retrigger)
        self._last = 0  # ticks_ms of the last accepted edge
        self._seen = False  # False until an edge was accepted (or after _FORGET_MS of silence)
        self._pin = pin
        self._handler = self._irq  # bound method made once: the IRQ path creates no objects
        pin.irq(handler=self._handler, trigger=trigger)

    def _irq(self, pin):
        c = self._clock
        now = c.ticks_ms()
        if self._seen and c.ticks_diff(now, self._last) < self._dead:
            self.rejected += 1
            return
        self._seen = True
        self._last = now
        self.count += 1
        self.total += 1

    def read(self):
        """Accepted pulses since the previous read(), into values[0]; the counter restarts at 0."""
        g = self._guard
        if g is not None:
            state = g[0]()
            n = self.count
            self.count = 0
            g[1](state)
        else:
            n = self.count
            self.count = 0
        c = self._clock
        if self._seen and c.ticks_diff(c.ticks_ms(), self._last) > _FORGET_MS:
            self._seen = False  # long silence: the next edge is accepted whatever ticks_diff would say
        self.values[0] = n
        return n

    def deinit(self):
        self._pin.irq(handler=None)
