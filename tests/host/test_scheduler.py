"""The fleet scheduler runs node threads strictly in virtual-time order."""
from __future__ import annotations

import pytest

from citynode.sim.fleet.scheduler import Scheduler, TaskClock


def test_events_interleave_in_virtual_time_order():
    s = Scheduler()
    log = []

    def node(name, period_ms, n):
        def body(task):
            clock = TaskClock(s, task)
            for _ in range(n):
                log.append((clock.monotonic_ms(), name))
                clock.sleep_ms(period_ms)
        return body

    s.spawn("a", node("a", 300, 5))
    s.spawn("b", node("b", 500, 3), at_s=0.1)
    s.run(until_s=10)
    times = [t for t, _ in log]
    assert times == sorted(times)
    # at a tie (600 ms) the event queued first runs first: b queued its wake-up at 100 ms, a at 300 ms
    assert log == [(0, "a"), (100, "b"), (300, "a"), (600, "b"), (600, "a"), (900, "a"), (1100, "b"),
                   (1200, "a")]


def test_short_sleeps_do_not_hand_over():
    s = Scheduler()

    def body(task):
        clock = TaskClock(s, task)
        for _ in range(1000):
            clock.sleep_ms(1)

    s.spawn("solo", body)
    s.run(until_s=100)
    assert s.switches == 1


def test_run_stops_threads_at_the_end():
    s = Scheduler()
    reached = []

    def body(task):
        clock = TaskClock(s, task)
        while True:
            reached.append(clock.monotonic_ms())
            clock.sleep_ms(1000)

    s.spawn("x", body)
    s.spawn("y", body, at_s=0.5)
    s.run(until_s=3)
    assert max(reached) <= 3000


def test_errors_in_a_node_reach_the_caller():
    s = Scheduler()

    def body(task):
        TaskClock(s, task).sleep_ms(10)
        raise RuntimeError("node crashed")

    s.spawn("bad", body)
    s.spawn("other", lambda task: TaskClock(s, task).sleep_ms(5000))
    with pytest.raises(RuntimeError, match="node crashed"):
        s.run(until_s=10)
