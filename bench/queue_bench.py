# Flash queue benchmark: heap bytes allocated and time per push/peek/ack after warm-up, printed as JSON.
#
# Run under the MicroPython unix port (what the numbers are for):  .venv/bin/micropython bench/queue_bench.py
# or CPython (time only). Two filesystems: the port's own (VfsPosix under /tmp) and hwsim's FlashFS (in RAM).
# On a board the flash itself (littlefs program/erase) adds to the times; heap figures carry over.
import gc
import json
import sys
import time

_root = (__file__.rsplit("/", 1)[0] if "/" in __file__ else ".") + "/.."  # bench/.. is the repository
for p in (_root + "/firmware", _root + "/host_tools"):
    if p not in sys.path:
        sys.path.insert(0, p)

from cnode.queue import Queue  # noqa: E402
from citynode.sim.hwsim.flashfs import FlashFS  # noqa: E402

MP = sys.implementation.name == "micropython"
N = 200
FRAME = bytes(range(51))  # an EU868 DR0-sized frame


def _us():
    return time.ticks_us() if MP else int(time.perf_counter() * 1e6)  # type: ignore  (ticks wrap: ~18 min)


def _alloc():
    return gc.mem_alloc() if MP else 0  # type: ignore


def _clean(path):
    import os
    try:
        names = os.listdir(path)
    except OSError:
        return
    for n in names:
        os.remove(path + "/" + n)
    os.rmdir(path)


def _measure(q):
    # time and heap in separate passes: gc.mem_alloc() walks the heap and would count in the times
    for _ in range(5):  # warm-up: buffers, open handles, interned strings
        s = q.push(FRAME)
        q.peek()
        q.ack(s)
    us = {"push": 0, "peek": 0, "ack": 0}
    for _ in range(N):
        t0 = _us()
        q.push(FRAME)
        t1 = _us()
        item = q.peek()
        t2 = _us()
        q.ack(item[0])
        t3 = _us()
        us["push"] += t1 - t0
        us["peek"] += t2 - t1
        us["ack"] += t3 - t2
    heap = {"push": 0, "peek": 0, "ack": 0}
    for _ in range(N if MP else 0):
        gc.collect()
        gc.disable()
        a0 = _alloc()
        q.push(FRAME)
        a1 = _alloc()
        item = q.peek()
        a2 = _alloc()
        q.ack(item[0])
        a3 = _alloc()
        gc.enable()
        heap["push"] += a1 - a0
        heap["peek"] += a2 - a1
        heap["ack"] += a3 - a2
    out = {}
    for name in us:
        out[name] = {"heap_bytes_per_op": heap[name] // N if MP else None, "us_per_op": us[name] // N}
    return out


def _backlog(q):
    # peek/ack while a backlog sits in older segments (reads come from flash, not from the RAM copy)
    for _ in range(60):
        q.push(FRAME)
    gc.collect()
    if MP:
        gc.disable()
    a0 = _alloc()
    t0 = _us()
    n = 0
    while True:
        item = q.peek()
        if item is None:
            break
        q.ack(item[0])
        n += 1
    t1 = _us()
    a1 = _alloc()  # after t1: not timed
    if MP:
        gc.enable()
    return {"frames": n, "heap_bytes_per_peek_ack": (a1 - a0) // n if MP else None, "us_per_peek_ack": (t1 - t0) // n}


def _boot(fs, path):
    # a boot that finds a full backlog (every segment written): what recovering the queue costs
    q = Queue(fs, path, 4096, 8)
    n = 0
    while len(fs.listdir(path)) < 8 or q.depth < 7 * (4096 // (12 + len(FRAME))):
        q.push(FRAME)
        n += 1
    del q
    gc.collect()
    if MP:
        gc.disable()
    a0 = _alloc()
    t0 = _us()
    q = Queue(fs, path, 4096, 8)
    t1 = _us()
    a1 = _alloc()
    if MP:
        gc.enable()
    return {"frames": q.depth, "segments": len([n for n in fs.listdir(path) if n[0] == "s"]), "us": t1 - t0,
            "heap_bytes_allocated": (a1 - a0) if MP else None}


def main():
    res = {"runtime": sys.implementation.name, "frame_bytes": len(FRAME), "ops": N}
    fs = FlashFS()
    res["flashfs"] = _measure(Queue(fs, "/q", 4096, 8))
    res["flashfs"]["backlog"] = _backlog(Queue(fs, "/q", 4096, 8))
    res["flashfs"]["boot"] = _boot(FlashFS(), "/b")
    import cnode.osfs as osfs
    path = "/tmp/cn_queue_bench"
    _clean(path)
    res["posix"] = _measure(Queue(osfs, path, 4096, 8))
    res["posix"]["backlog"] = _backlog(Queue(osfs, path, 4096, 8))
    _clean(path)
    res["posix"]["boot"] = _boot(osfs, path)
    _clean(path)
    print(json.dumps(res))


main()
