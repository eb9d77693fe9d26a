# MicroPython: time and heap per frame of the firmware encoder. argv: input JSON (ids, refs, limit, ints).
import sys
import gc
import json
import time
from cnode.encoder import Encoder

with open(sys.argv[1]) as f:
    job = json.load(f)
samples = [(s[0], s[1], s[2]) for s in job["ints"]]
enc = Encoder(job["ids"], job["refs"])
limit = job["limit"]


def run(samples):
    # frames of the whole series; returns (frames, total us, total bytes allocated, worst bytes in a frame)
    frames = 0
    us = 0
    alloc = 0
    worst = 0
    enc.begin(limit)
    gc.collect()
    gc.disable()
    t0 = time.ticks_us()
    a0 = gc.mem_alloc()
    for t, vals, flags in samples:
        start = 0
        while True:
            start = enc.add(t, vals, flags, start)
            if start >= enc.nch:
                break
            enc.finish()
            a1 = gc.mem_alloc()
            t1 = time.ticks_us()
            frames += 1
            us += time.ticks_diff(t1, t0)
            alloc += a1 - a0
            worst = max(worst, a1 - a0)
            gc.enable()
            gc.collect()
            gc.disable()
            enc.begin(limit)
            t0 = time.ticks_us()
            a0 = gc.mem_alloc()
    gc.enable()
    return frames, us, alloc, worst


run(samples[:200])  # warm-up
frames, us, alloc, worst = run(samples)
print(json.dumps({"frames": frames, "us_per_frame": us / frames, "bytes_alloc_per_frame": alloc / frames,
                  "worst_bytes_alloc_in_a_frame": worst}))
