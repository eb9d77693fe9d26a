"""Provisioning under concurrency: 20 `citynode provision --count 50` processes at once on one new registry.

Prints one JSON object (last line): count (rows in the registry), unique (distinct DevEUIs), printed (DevEUIs the
processes reported), failures (processes with a non-zero exit), seconds (wall time of the whole run, process
start-up included), and the same for one process creating all 1000 for comparison.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CITYNODE = str(Path(sys.executable).with_name("citynode"))


def run(procs: int, each: int, folder: Path) -> dict:
    reg = folder / f"fleet-{procs}x{each}.db"
    t0 = time.perf_counter()
    ps = [subprocess.Popen([CITYNODE, "provision", "--registry", str(reg), "--count", str(each)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(procs)]
    outs = [p.communicate() for p in ps]
    seconds = time.perf_counter() - t0
    printed = [e for out, _ in outs for e in out.split()]
    with sqlite3.connect(reg) as db:
        count, unique = db.execute("SELECT count(*), count(DISTINCT dev_eui) FROM devices").fetchone()
    return {"processes": procs, "per_process": each, "count": count, "unique": unique, "printed": len(printed),
            "printed_unique": len(set(printed)), "failures": sum(p.returncode != 0 for p in ps),
            "seconds": round(seconds, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--processes", type=int, default=20)
    ap.add_argument("--count", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        conc = run(args.processes, args.count, Path(d))
        single = run(1, args.processes * args.count, Path(d))
    result = dict(conc, single_process_seconds=single["seconds"], single_process_unique=single["unique"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
