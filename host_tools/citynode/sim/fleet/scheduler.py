"""Virtual time for many nodes at once: each node runs its blocking firmware code in its own thread, and
only one thread runs at a time, always the one whose virtual time is earliest.

A node's clock.sleep_ms() is the only place it gives up control, and only when its wake-up time is later
than some other pending event (conservative look-ahead); short sleeps with nothing else due in between
cost nothing. So the order of events is exactly the order of virtual time, and a run is deterministic."""
from __future__ import annotations

import heapq
import threading

from citynode.sim.hwsim.clock import _TICKS_PERIOD


class Stop(BaseException):
    """Raised inside a node thread when the simulation ends (BaseException: firmware must not catch it)."""


class _Task:
    __slots__ = ("name", "fn", "now", "go", "thread", "done", "error", "stop", "interrupt", "timers")

    def __init__(self, name, fn, at_us):
        self.name = name
        self.fn = fn
        self.now = at_us
        self.go = threading.Lock()  # held while the task must wait; released to let it run
        self.go.acquire()
        self.thread: threading.Thread | None = None
        self.done = False
        self.error: BaseException | None = None
        self.stop = False
        self.interrupt = None  # an exception to raise in the task when it next wakes
        self.timers: list = []  # (due us, seq, fn): this node's own events (pin edges from its twins)


class Scheduler:
    def __init__(self, start_s: int = 0):
        self.start_s = start_s  # wall clock (seconds since 2000) at virtual microsecond 0
        self.now = 0
        self._heap: list = []
        self._seq = 0
        self._back = threading.Lock()  # released by a task handing control back to the loop
        self._back.acquire()
        self._until = 0
        self.switches = 0
        self.current: _Task | None = None  # the task running now

    # --- setting up ------------------------------------------------------------------------------
    def spawn(self, name: str, fn, at_s: float = 0.0) -> "_Task":
        """Run fn(task) in its own thread from virtual second at_s on."""
        t = _Task(name, fn, int(at_s * 1_000_000))
        self._push(t.now, t)
        return t

    def call_at(self, at_s: float, fn) -> None:
        """Run fn() on the loop's thread at virtual second at_s."""
        self._push(int(at_s * 1_000_000), fn)

    def _push(self, t_us, item):
        self._seq += 1
        heapq.heappush(self._heap, (t_us, self._seq, item))

    # --- running ---------------------------------------------------------------------------------
    def run(self, until_s: float) -> None:
        self._until = int(until_s * 1_000_000)
        try:
            while self._heap and self._heap[0][0] <= self._until:
                t_us, _, item = heapq.heappop(self._heap)
                self.now = t_us
                if isinstance(item, _Task):
                    self._resume(item)
                else:
                    item()
        finally:
            self._stop_all()

    def _resume(self, task: _Task) -> None:
        task.now = self.now
        self.current = task
        self.switches += 1
        if task.thread is None:
            task.thread = threading.Thread(target=self._body, args=(task,), name=task.name, daemon=True)
            task.thread.start()
        else:
            task.go.release()
        self._back.acquire()
        if task.error is not None:
            err, task.error = task.error, None
            raise err

    def _body(self, task: _Task) -> None:
        try:
            task.fn(task)
        except Stop:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the loop's thread
            task.error = e
        task.done = True
        self._back.release()

    def _stop_all(self) -> None:
        for _, _, item in self._heap:
            if isinstance(item, _Task) and item.thread is not None and not item.done:
                item.stop = True
                item.go.release()
                self._back.acquire(timeout=5)
        self._heap.clear()

    # --- called from node threads ----------------------------------------------------------------
    def _fire(self, task: _Task, until_us: int) -> None:
        # a node's own events (e.g. a PIR edge and its interrupt handler) at their own times, in its thread
        tm = task.timers
        while tm and tm[0][0] <= until_us:
            due, _, fn = heapq.heappop(tm)
            if due > task.now:
                task.now = due
                self.now = due
            fn()

    def sleep_us(self, task: _Task, us: int) -> None:
        t = task.now + max(0, int(us))
        if task.timers:
            self._fire(task, t)
        if (not self._heap or t < self._heap[0][0]) and t <= self._until:
            task.now = t  # nothing else happens before we wake: no hand-over needed
            self.now = t
            return
        self._push(t, task)
        self._back.release()
        task.go.acquire()
        if task.stop:
            raise Stop()
        task.now = self.now
        if task.interrupt is not None:  # e.g. a power cut that struck while the node slept
            exc, task.interrupt = task.interrupt, None
            raise exc


class TaskClock:
    """A node's clock: MicroPython's time API over the scheduler's virtual time (seen from one task)."""

    def __init__(self, sched: Scheduler, task: _Task):
        self.sched = sched
        self.task = task

    def _now(self) -> int:
        return self.task.now

    def ticks_ms(self):
        return (self._now() // 1000) % _TICKS_PERIOD

    def ticks_us(self):
        return self._now() % _TICKS_PERIOD

    def ticks_add(self, t, delta):
        return (t + delta) % _TICKS_PERIOD

    def ticks_diff(self, a, b):
        d = (a - b) % _TICKS_PERIOD
        return d - _TICKS_PERIOD if d >= _TICKS_PERIOD // 2 else d

    def sleep_ms(self, ms):
        self.sched.sleep_us(self.task, int(ms * 1000))

    def sleep_us(self, us):
        self.sched.sleep_us(self.task, int(us))

    def sleep(self, s):
        self.sched.sleep_us(self.task, int(s * 1_000_000))

    def call_at_ms(self, at_ms, fn):
        """Run fn() when this node's time passes at_ms (monotonic ms); the twins' pin events use it."""
        self.sched._seq += 1
        heapq.heappush(self.task.timers, (int(at_ms * 1000), self.sched._seq, fn))

    def time(self):
        return self.sched.start_s + self._now() // 1_000_000

    def monotonic_ms(self):
        return self._now() // 1000



class SchedClock(TaskClock):
    """One clock object for every node and twin: it reads and sleeps on whichever task runs now."""

    def __init__(self, sched: Scheduler):
        self.sched = sched

    @property
    def task(self):  # type: ignore[override]
        return self.sched.current

    def _now(self) -> int:
        cur = self.sched.current
        return cur.now if cur is not None else self.sched.now

    @property
    def us(self) -> int:
        return self._now()
