# Crash records and the boot-loop counter: what a boot that failed leaves in flash and RTC memory.
#
# A failed boot writes one line to /crash.log (the newest kept, the file trimmed to _KEEP bytes), counts
# itself in RTC memory (consecutive failures since the last good cycle, and all failures since power-on),
# then waits longer each time before the reset: a board in a boot loop keeps its battery and says why.
# The first _HEAD bytes of RTC memory are ours; RtcArea hands the rest to the node (cnode.app.Node).
import struct

from micropython import const

LOG = "crash.log"  # in the current folder: / on a board
_KEEP = const(2048)
_FMT = const("<HHH")  # magic, consecutive failed boots, failed boots since power-on
_MAGIC = const(0xB007)
HEAD = const(6)
_DELAY_MS = const(2000)  # first retry; doubles per consecutive failure
_DELAY_MAX_MS = const(3600000)


class RtcArea:
    """machine.RTC's memory() minus our header, for the node: it reads and writes its part only."""

    def __init__(self, rtc):
        self.rtc = rtc

    def memory(self, data=None):
        m = self.rtc.memory()
        head = m[:HEAD] if len(m) >= HEAD else bytes(HEAD)
        if data is None:
            return m[HEAD:]
        self.rtc.memory(bytes(head) + bytes(data))


def counts(rtc):
    """(consecutive failed boots, failed boots since power-on) from RTC memory; (0, 0) after power-on."""
    m = rtc.memory()
    if len(m) >= HEAD:
        magic, run, total = struct.unpack_from(_FMT, m, 0)
        if magic == _MAGIC:
            return run, total
    return 0, 0


def _put(rtc, run, total):
    m = rtc.memory()
    rtc.memory(struct.pack(_FMT, _MAGIC, run & 0xFFFF, total & 0xFFFF) + bytes(m[HEAD:]))


def good(rtc):
    """A cycle completed: the boot loop (if any) is over."""
    run, total = counts(rtc)
    if run:
        _put(rtc, 0, total)


def failed(rtc, fs_open, line):
    """Record a failed boot: count it in RTC memory, append `line` to the crash log; returns the delay (ms)
    before the reset, doubling per consecutive failure up to an hour."""
    run, total = counts(rtc)
    run += 1
    _put(rtc, run, total + 1)
    try:
        old = b""
        try:
            with fs_open(LOG, "rb") as f:
                old = f.read()
        except OSError:
            pass
        new = old + line.encode() + b"\n"
        if len(new) > _KEEP:
            new = new[len(new) - _KEEP:]
            new = new[new.find(b"\n") + 1:]
        with fs_open(LOG, "wb") as f:
            f.write(new)
    except Exception:  # a full or broken filesystem must not stop the reset
        pass
    d = _DELAY_MS << (run - 1) if run < 12 else _DELAY_MAX_MS
    return d if d < _DELAY_MAX_MS else _DELAY_MAX_MS


def last(fs_open):
    """The newest crash record, or None."""
    try:
        with fs_open(LOG, "rb") as f:
            data = f.read()
    except OSError:
        return None
    lines = data.decode().strip().split("\n")
    return lines[-1] if lines and lines[-1] else None
