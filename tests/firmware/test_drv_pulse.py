# Pulse counter tests: dead time, bounce, read-and-reset, irq guard, twin-driven counts (CPython + MicroPython).
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.twin_mobility import PulseTwin
from cnode.drivers.pulse import PulseCounter
from fwtest import raises


def _setup(dead_ms, channel="pedestrians", guard=None):
    clk = VirtualClock()
    machine.use(clk)
    pin = machine.Pin(4, machine.Pin.IN)
    drv = PulseCounter(pin, clk, channel=channel, dead_ms=dead_ms, irq_guard=guard)
    return clk, pin, drv


def _edge(clk, pin, at_ms, width_ms=50):
    clk.call_at_ms(at_ms, lambda: pin.drive(1))
    clk.call_at_ms(at_ms + width_ms, lambda: pin.drive(0))


def test_contract_and_channel_choice():
    clk, pin, drv = _setup(2000, channel="bikes")
    assert drv.channels == ("bikes",)
    assert drv.values == [None]
    assert raises(ValueError, PulseCounter, pin, clk, "temperature")
    assert raises(ValueError, PulseCounter, pin, clk, "bikes", -1)


def test_pir_dead_time_rejects_retrigger():
    clk, pin, drv = _setup(2000)
    for t in (1000, 1500, 2990, 3000, 3100, 9000):  # 1000 ok, 1500/2990 inside, 3000 ok, 3100 inside, 9000 ok
        _edge(clk, pin, t, width_ms=5)
    clk.advance_ms(10000)
    assert drv.read() == 3
    assert drv.values == [3]
    assert drv.rejected == 3
    assert drv.total == 3


def test_radar_short_dead_time_and_reset_on_read():
    clk, pin, drv = _setup(200, channel="vehicles")
    for t in range(1000, 3000, 250):  # 8 vehicles 250 ms apart: all counted with a 200 ms dead time
        _edge(clk, pin, t, width_ms=30)
    clk.advance_ms(2500)
    assert drv.read() == 7  # edges at 1000..2500 have happened by 2500
    clk.advance_ms(1000)
    assert drv.read() == 1
    assert drv.read() == 0
    assert drv.values == [0]
    assert drv.total == 8


def test_only_rising_edges_count():
    clk, pin, drv = _setup(0)
    pin.drive(1)
    pin.drive(0)
    pin.drive(0)
    pin.drive(1)
    assert drv.read() == 2


def test_irq_guard_is_used_around_the_swap():
    calls = []

    def off():
        calls.append("off")
        return 7

    def on(state):
        calls.append(("on", state))

    clk, pin, drv = _setup(100, guard=(off, on))
    pin.drive(1)
    assert drv.read() == 1
    assert calls == ["off", ("on", 7)]


def test_twin_series_with_bounce_counts_every_arrival():
    clk = VirtualClock()
    machine.use(clk)
    pin = machine.Pin(5, machine.Pin.IN)
    drv = PulseCounter(pin, clk, channel="bikes", dead_ms=2000)
    counts = [12, 0, 30, 7]  # an hourly series (bikes per hour)
    twin = PulseTwin(pin, clk, counts, period_ms=3600000, hold_ms=300, min_gap_ms=2500, bounce=3)
    got = []
    for _ in counts:
        clk.advance_ms(3600000)
        got.append(drv.read())
    clk.advance_ms(3600000)  # events pushed past the last hour by min_gap
    got.append(drv.read())
    assert sum(got) == 49
    assert twin.emitted == 49
    assert drv.rejected >= 49 * 3  # every bounce spike was rejected
    assert got[1] <= 1  # an empty hour (at most one event spilled over from hour 0)


def test_twin_faults_stuck_line_and_glitch_burst_then_recovery():
    clk = VirtualClock()
    machine.use(clk)
    pin = machine.Pin(5, machine.Pin.IN)
    drv = PulseCounter(pin, clk, channel="pedestrians", dead_ms=2000)
    twin = PulseTwin(pin, clk, [20], period_ms=600000, hold_ms=500, min_gap_ms=3000, bounce=0)
    twin.stuck(1)  # output stuck high: no edges at all
    clk.advance_ms(600000)
    assert drv.read() == 1  # only the edge made by sticking high
    twin.stuck(None)
    pin.drive(0)  # the line is released low
    twin.glitch_burst(clk.monotonic_ms() + 10, 10)  # EMI: 10 spikes 2 ms apart count once
    clk.advance_ms(1000)
    assert drv.read() == 1
    assert drv.rejected >= 9
    # recovery: a fresh series is counted in full
    twin2 = PulseTwin(pin, clk, [5], period_ms=60000, start_ms=clk.monotonic_ms() + 5000, min_gap_ms=2500)
    clk.advance_ms(80000)
    assert drv.read() == 5
    assert twin2.emitted == 5


def test_irq_handler_is_created_once():
    clk, pin, drv = _setup(2000)
    assert pin._handler is drv._handler
    h = drv._handler
    pin.drive(1)
    pin.drive(0)
    assert pin._handler is h
