# Crash records and the boot-loop counter (cnode.crash): counted in RTC memory, logged in flash, growing delays.
from cnode import crash
from cnode.app import Node


class _Rtc:
    def __init__(self):
        self.m = b""

    def memory(self, data=None):
        if data is None:
            return self.m
        assert len(data) <= 2048
        self.m = bytes(data)


class _File:
    def __init__(self, files, name, mode):
        self.files, self.name, self.mode = files, name, mode
        if "r" in mode and name not in files:
            raise OSError(2)

    def read(self):
        return self.files[self.name]

    def write(self, b):
        self.files[self.name] = self.files.get(self.name, b"") + bytes(b) if "a" in self.mode else bytes(b)

    def __enter__(self):
        if "w" in self.mode:
            self.files[self.name] = b""
        return self

    def __exit__(self, *a):
        return False


def _fs():
    files = {}
    return files, lambda name, mode="r": _File(files, name, mode)


def test_failed_boots_count_grow_the_delay_and_a_good_cycle_ends_the_loop():
    rtc = _Rtc()
    files, op = _fs()
    assert crash.counts(rtc) == (0, 0) and crash.last(op) is None
    delays = [crash.failed(rtc, op, "boot %d: OSError: [Errno 19] ENODEV" % i) for i in range(14)]
    assert delays[:4] == [2000, 4000, 8000, 16000] and delays[-1] == 3600000  # doubling, capped at an hour
    assert crash.counts(rtc) == (14, 14)
    assert crash.last(op) == "boot 13: OSError: [Errno 19] ENODEV"
    crash.good(rtc)
    assert crash.counts(rtc) == (0, 14)  # the loop is over; failures since power-on stay for the status channel
    crash.failed(rtc, op, "x")
    assert crash.counts(rtc) == (1, 15)


def test_the_log_is_trimmed_to_whole_newest_lines():
    rtc = _Rtc()
    files, op = _fs()
    for i in range(200):
        crash.failed(rtc, op, "crash number %03d with some text" % i)
    data = files[crash.LOG]
    assert len(data) <= 2048 and data.startswith(b"crash number") and data.endswith(b"199 with some text\n")


def test_the_node_keeps_its_part_of_rtc_memory_behind_the_counter():
    rtc = _Rtc()
    files, op = _fs()
    crash.failed(rtc, op, "a")
    area = crash.RtcArea(rtc)
    assert area.memory() == b""
    area.memory(b"node state")
    assert area.memory() == b"node state" and crash.counts(rtc) == (1, 1)
    crash.good(rtc)
    assert area.memory() == b"node state"


def test_crashes_go_out_on_the_status_channel_at_the_first_cycle():
    from cnode.queue import Queue
    from cnode.sampler import Sampler
    from citynode.sim.hwsim.clock import VirtualClock
    from citynode.sim.hwsim.flashfs import FlashFS

    class _Link:
        joined = True
        downlink = None

        def max_payload(self):
            return 51

        def send(self, port, data, confirmed=False):
            return True

    clock = VirtualClock(start_s=800000000)
    q = Queue(FlashFS(), "/q")
    s = Sampler([], clock, extra=("reboot_reason", "crashes"))
    n = Node(clock, s, q, _Link(), crashes=3, reboot_reason=3)
    n.cycle()
    assert s.vals[s.index("crashes")] == 3 and s.vals[s.index("reboot_reason")] == 3
