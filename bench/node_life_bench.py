"""Benchmark of issue 11 (a node that runs for years): a MicroPython fleet in deep sleep, every wake a new
process, with the watchdog on, injected hangs and power cuts; every sample's time against the true UTC, duty
cycle per band and hour from the frames on the air, network MAC requests answered; a node out of SF7 range
joining. Prints one JSON line; bench/run.py stores it in results.json."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "host_tools"), str(ROOT / "firmware"), str(ROOT / "tests" / "firmware")]


def fleet(nodes: int, days: float, heap: str) -> dict:
    rep = ROOT / "bench" / ".life_report.json"
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("citynode")), "simulate", "--runtime", "micropython",
                    "--nodes", str(nodes), "--days", str(days), "--deep-sleep", "--api-radio", "--heap", heap,
                    "--hangs", str(nodes // 2), "--power-cuts", str(nodes // 2), "--seed", "11",
                    "--report", str(rep)], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    t = json.loads(rep.read_text())["totals"]
    rep.unlink()
    keys = ("samples_measured", "samples_delivered", "samples_pending", "samples_lost", "wdt_resets",
            "hangs_injected", "power_cuts", "boots", "time_error_max_s", "samples_time_wrong", "clock_sets",
            "mac_answered", "mac_unanswered", "duty_cycle_pct_of_limit", "heap_peak_bytes")
    return {"nodes": nodes, "days": days, "heap": heap, "wall_s": round(wall, 1), **{k: t[k] for k in keys}}


def far_join() -> dict:
    """A node whose only gateway hears SF12 alone, waking every 5 min from deep sleep (tests' rig)."""
    from test_lorawan_sleep import Board

    b = Board(gateway_sf_min=12)
    for wake in range(200):
        m = b.wake()
        try:
            m.join(1, 30000)
            return {"join_dr": m.dr, "minutes_to_join": round(b.clock.monotonic_ms() / 60000, 1),
                    "join_requests": sum(1 for t in b.ups() if t.data[0] == 0), "wakes": wake + 1}
        except Exception:  # noqa: BLE001 (JoinFailed, DutyCycleError: next wake)
            b.sleep(m)
    return {"join_dr": None}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--days", type=float, default=7)
    ap.add_argument("--heap", default="128K")
    a = ap.parse_args()
    out = {"far_join": far_join(), "deep_sleep_fleet": fleet(a.nodes, a.days, a.heap)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
