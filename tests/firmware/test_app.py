# The node's cycle (cnode.app.Node) against a scripted link: what a failing join or send does to the queue.
from cnode.app import Node
from cnode.lorawan import JoinFailed
from cnode.queue import Queue
from cnode.sampler import Sampler, Slot
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.flashfs import FlashFS
from fwtest import raises


class _Thermo:
    channels = ("temperature",)

    def __init__(self):
        self.values = [None]

    def read(self):
        self.values[0] = 1234


class _Link:
    """Joins or sends by raising what `fail` holds (an exception instance), else succeeds."""

    def __init__(self):
        self.joined = False
        self.downlink = None
        self.fail = None
        self.sent = []

    def join(self, attempts, wait_ms=-1):
        if self.fail is not None:
            raise self.fail
        self.joined = True

    def max_payload(self):
        return 51

    def send(self, port, data, confirmed=False):
        if self.fail is not None:
            raise self.fail
        self.sent.append((port, bytes(data)))
        return True


def _node(link):
    clock = VirtualClock(start_s=800000000)
    q = Queue(FlashFS(), "/q")
    return Node(clock, Sampler([Slot(_Thermo())], clock), q, link, interval_s=300, max_latency_s=0), q


def test_a_network_failure_keeps_the_sample_and_the_cycle_goes_on():
    link = _Link()
    node, q = _node(link)
    link.fail = JoinFailed("no join-accept")
    assert node.cycle() > 0
    assert q.depth == 1 and node.errors == 1 and link.sent == []
    link.fail = None
    node.cycle()  # joins, then sends both samples
    assert q.depth == 0 and len(link.sent) == 1


def test_out_of_memory_is_not_taken_for_a_network_failure():
    # a MemoryError in join or send must end the cycle (the board resets) rather than be retried forever as
    # if the network were down; the sample taken before it is already in flash
    link = _Link()
    node, q = _node(link)
    link.fail = MemoryError("memory allocation failed")
    raises(MemoryError, node.cycle)
    assert q.depth == 1 and node.errors == 0
    link.joined = True
    raises(MemoryError, node.cycle)
    assert q.depth == 2 and link.sent == []


def _sends_over(node, clock, link, cycles):
    before = len(link.sent)
    for _ in range(cycles):
        clock.sleep_ms(node.cycle())
    return len(link.sent) - before


def _steady(max_latency_s=3600):
    link = _Link()
    link.joined = True
    clock = VirtualClock(start_s=800000000)
    q = Queue(FlashFS(), "/q")
    node = Node(clock, Sampler([Slot(_Thermo())], clock), q, link, interval_s=300, max_latency_s=max_latency_s)
    steady = _sends_over(node, clock, link, 36)  # 3 h: a frame when the hour is up or the frame is full
    assert 3 <= steady <= 5
    while _sends_over(node, clock, link, 1) == 0:  # up to the next frame
        pass
    return link, clock, q, steady


def test_after_a_power_cut_queued_samples_are_not_taken_for_overdue():
    # a power cut loses RTC memory (the oldest queued sample's time) but not the queue: the next boot reads
    # that time from flash instead of sending at once, and the node keeps to a frame an hour
    link, clock, q, steady = _steady()
    _sends_over(Node(clock, Sampler([Slot(_Thermo())], clock), q, link, interval_s=300), clock, link, 5)
    assert q.depth == 5
    t_oldest = clock.time() - 5 * 300
    node = Node(clock, Sampler([Slot(_Thermo())], clock), q, link, interval_s=300, max_latency_s=3600)  # reboot
    assert node.pending == 5 and node.oldest_t == t_oldest
    assert _sends_over(node, clock, link, 36) <= steady + 1


def test_a_small_frame_sent_for_latency_does_not_make_every_later_frame_small():
    # after a long outage the first frame goes out for latency with two samples; the frames after it must
    # grow back to an hour's worth, not stay at two (which sent a frame every other cycle from then on)
    link, clock, q, steady = _steady()
    node = Node(clock, Sampler([Slot(_Thermo())], clock), q, link, interval_s=300, max_latency_s=3600)
    _sends_over(node, clock, link, 1)
    clock.sleep_ms(2 * 3600 * 1000)  # off for two hours
    node = Node(clock, Sampler([Slot(_Thermo())], clock), q, link, interval_s=300, max_latency_s=3600)
    assert _sends_over(node, clock, link, 1) == 1  # overdue: sent at once
    assert _sends_over(node, clock, link, 36) <= steady + 2


def test_a_damaged_oldest_record_at_boot_is_dropped_not_a_crash_loop():
    # with RTC memory lost, the boot reads the oldest record's time from flash; a record that cannot be read
    # must not stop the node from starting (it would reset forever): it is dropped, counted, on the next send
    link = _Link()
    link.joined = True
    clock = VirtualClock(start_s=800000000)
    q = Queue(FlashFS(), "/q")
    q.push(b"\x01\x02\x03")  # too short for a sample record
    node = Node(clock, Sampler([Slot(_Thermo())], clock), q, link, interval_s=300, max_latency_s=3600)
    assert node.pending == 1 and node.oldest_t == 0
    clock.sleep_ms(node.cycle())
    assert node.dropped_bad == 1 and len(link.sent) == 1 and q.depth == 0


class _TimeLink(_Link):
    """A link that can set the clock (as the MAC does on a DeviceTimeAns) when `answer` is set."""

    def __init__(self, clock, answer):
        _Link.__init__(self)
        self.joined = True
        self.clock = clock
        self.answer = answer
        self.due = 0
        self.set_clock = lambda s, us: clock.set_time(s, us)

    def send(self, port, data, confirmed=False):
        if self.answer and not self.due:
            self.set_clock(820540800 + self.clock.monotonic_ms() // 1000, 0)
            self.due = 1
        return _Link.send(self, port, data, confirmed)


def test_samples_before_the_clock_is_set_wait_and_get_the_real_time():
    clock = VirtualClock()  # an ESP32 after power-on: the clock counts from 2000-01-01
    clock.sleep_ms(5000)
    link = _TimeLink(clock, answer=True)
    q = Queue(FlashFS(), "/q")
    node = Node(clock, Sampler([Slot(_Thermo())], clock), q, link, interval_s=300, max_latency_s=0)
    node.cycle()
    assert link.sent[0] == (2, b"")  # the time request goes first, with no data
    assert node.held is None and q.depth == 1
    t = node.rec.unpack(q.peek()[1])
    assert t == 820540805  # stamped with the real time of the measurement, not 5 s after 2000-01-01
    node.cycle()
    assert all(len(d) > 0 for _, d in link.sent[1:])


def test_without_an_answer_no_sample_goes_out_with_a_year_2000_time():
    clock = VirtualClock()
    link = _TimeLink(clock, answer=False)
    q = Queue(FlashFS(), "/q")
    node = Node(clock, Sampler([Slot(_Thermo())], clock), q, link, interval_s=300, max_latency_s=0)
    for _ in range(200):
        clock.sleep_ms(node.cycle())
    assert q.depth == 0 and all(d == b"" for _, d in link.sent)  # only time requests went on air
    assert sum(len(r) for r in node.held) <= 1024 and node.dropped_bad == 200 - len(node.held)


def test_a_gps_sets_the_clock_when_the_network_cannot():
    from cnode.runner import gps_time

    clock = VirtualClock()
    clock.sleep_ms(42000)

    class _Gps:  # cnode.drivers.nmea's face: the last RMC's time and when its fix came
        channels = ("latitude",)
        values = [None]
        fix_ms = None

        def read(self):
            self.fix_ms = clock.ticks_ms() - 300  # the RMC of 300 ms ago

        def seconds_2000(self):
            return 820540800 + clock.monotonic_ms() // 1000 if self.fix_ms is not None else None

    class _Rtc:
        def datetime(self, t):
            from citynode.sim.hwsim.clock import mktime

            clock.set_time(mktime(t[0], t[1], t[2], t[4], t[5], t[6]), t[7])

    link = _Link()  # an AT modem: no time service
    link.joined = True
    slots = [Slot(_Thermo()), Slot(_Gps())]
    q = Queue(FlashFS(), "/q")
    node = Node(clock, Sampler(slots, clock), q, link, interval_s=300, max_latency_s=0,
                time_src=gps_time(slots, _Rtc(), clock))
    node.cycle()
    assert node.held is None and q.depth == 1 and link.sent == []  # nothing on air with a time since power-on
    t = node.rec.unpack(q.peek()[1])
    assert 820540800 + 41 <= t <= 820540800 + 42  # the GPS's time (the RMC came 300 ms before it was read)
    clock.sleep_ms(300000)
    node.cycle()
    assert q.depth == 0 and len(link.sent) == 1


def test_rtc_memory_never_overflows_the_macs_state_comes_first():
    clock = VirtualClock()
    link = _TimeLink(clock, answer=False)
    link.pack = lambda ms: bytes(1500)  # a MAC with a long duty-cycle ledger
    mem = []

    class _Rtc:
        def memory(self, data=None):
            if data is None:
                return mem[-1] if mem else b""
            assert len(data) <= 2042  # 2048 bytes less cnode.crash's 6
            mem.append(bytes(data))

    node = Node(clock, Sampler([Slot(_Thermo())], clock), Queue(FlashFS(), "/q"), link, rtc=_Rtc(),
                interval_s=300, max_latency_s=0)
    for _ in range(60):
        clock.sleep_ms(node.cycle())
    assert mem[-1].endswith(bytes(1500)) and node.dropped_bad > 0 and len(node.held) < 60
