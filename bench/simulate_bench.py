"""Benchmark of `citynode simulate`: 50 nodes x 7 days under CPython (target < 60 s), the MicroPython runtime,
100 power cuts, and the smallest MicroPython heap a node runs a week in. Prints one JSON line at the end."""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tools"))
from citynode.sim.runtime import compiled_firmware, micropython_exe  # noqa: E402

MIP_INDEX = ROOT.parent / "shared" / "mip-index"  # micropython-lib's index, for the radio drivers
FRAMES = ROOT / "bench" / ".sim_frames.jsonl"


def simulate(*args) -> tuple[dict, float]:
    rep = ROOT / "bench" / ".sim_report.json"
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("citynode")), "simulate", *args, "--report", str(rep)],
                   check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r = json.loads(rep.read_text())
    rep.unlink()
    return r["totals"], wall


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    out: dict = {}
    nodes, days = (10, 2) if a.quick else (50, 7)
    t, wall = simulate("--nodes", str(nodes), "--days", str(days), "--seed", "1")
    out["cpython_fleet"] = {"nodes": nodes, "days": days, "wall_s": round(wall, 1), "sim_s": t["wall_s"],
                            "target_s": 60, "measured": t["samples_measured"], "delivered": t["samples_delivered"],
                            "uplinks": t["uplinks"], "airtime_s_per_node_day": round(t["airtime_s_per_day"] / nodes, 2),
                            "duty_cycle_worst_pct_of_limit": t["duty_cycle_pct_of_limit"]}
    t, wall = simulate("--nodes", "10", "--days", "3", "--seed", "3", "--power-cuts", "100")
    out["power_cuts_100"] = {"nodes": 10, "days": 3, "power_cuts": t["power_cuts"], "measured": t["samples_measured"],
                             "delivered": t["samples_delivered"], "pending": t["samples_pending"],
                             "lost": t["samples_lost"], "lost_in_frames_lost_on_air": t["samples_lost_on_air"],
                             "lost_to_power_cuts": t["samples_lost"] - t["samples_lost_on_air"],
                             "collided_frames": t["collided"], "duplicates_removed": t["duplicates"]}
    # the same with confirmed uplinks: a frame that collided is sent again, so nothing may be missing at all
    t, _ = simulate("--nodes", "10", "--days", "3", "--seed", "3", "--power-cuts", "100", "--confirmed")
    out["power_cuts_100_confirmed"] = {"power_cuts": t["power_cuts"], "measured": t["samples_measured"],
                                       "delivered": t["samples_delivered"], "pending": t["samples_pending"],
                                       "lost": t["samples_lost"], "collided_frames": t["collided"],
                                       "duplicates_removed": t["duplicates"]}
    mp_nodes, mp_days = (2, 0.5) if a.quick else (50, 7)  # the CPython fleet target, under the unix port
    t, wall = simulate("--runtime", "micropython", "--nodes", str(mp_nodes), "--days", str(mp_days), "--heap", "256K",
                       "--api-radio")
    out["micropython_fleet"] = {"nodes": mp_nodes, "days": mp_days, "wall_s": round(wall, 1), "radio": t["radio"],
                                "measured": t["samples_measured"], "delivered": t["samples_delivered"],
                                "per_node_day_s": round(wall / mp_nodes / mp_days, 2)}
    # the same fleet with each node's radio chip as its register-level twin under micropython-lib's driver
    if MIP_INDEX.is_dir():
        for board, n in (("ttgo-lora32-v2.1", mp_nodes), ("heltec-wifi-lora-32-v3", max(2, mp_nodes // 5))):
            t, wall = simulate("--runtime", "micropython", "--nodes", str(n), "--days", str(mp_days),
                               "--board", board, "--mip-index", str(MIP_INDEX), "--frames", str(FRAMES))
            ups = [json.loads(x) for x in FRAMES.read_text().splitlines() if '"up"' in x]
            FRAMES.unlink()
            out[f"micropython_fleet_twin_{board}"] = {
                "nodes": n, "days": mp_days, "wall_s": round(wall, 1), "radio": t["radio"],
                "measured": t["samples_measured"], "delivered": t["samples_delivered"],
                "per_node_day_s": round(wall / n / mp_days, 2), "live_heap_peak_bytes": t["heap_peak_bytes"],
                "power_at_antenna_dbm": sorted({u["power_dbm"] for u in ups}, key=str),
                "uplinks_on_air": len(ups)}
    # smallest heap (64-bit unix port) in which one node runs a week, in 4K steps down from the 128K target
    # (or up, if it does not fit); a node that fails shows as a non-zero exit or as samples not delivered
    week = "1" if a.quick else "7"

    def runs(kb, *mode):
        try:
            t, _ = simulate("--runtime", "micropython", *mode, "--nodes", "1", "--days", week, "--heap", f"{kb}K",
                            "--api-radio")
        except subprocess.CalledProcessError:
            return None
        return t if t["samples_delivered"] == t["samples_measured"] > 0 else None

    good, t = None, None
    kb = 128
    first = runs(kb, "--deep-sleep")
    step = -4 if first else 4
    if first:
        good, t = kb, first
    while 64 <= kb + step <= 256 and (good is None or step < 0):
        kb += step
        r = runs(kb, "--deep-sleep")
        if r is None and step < 0:
            break
        if r is not None:
            good, t = kb, r
    # the node's interned names after its imports: the unix port's name pools double in size, and the sixth
    # (7 KB on 64-bit) starts at name 621 of this interpreter, so the headroom below that is worth watching
    probe = ("import gc, micropython\ntry:\n    import cn_node_main\nexcept SystemExit:\n    pass\n"
             "gc.collect()\nprint(gc.mem_alloc())\nmicropython.qstr_info()\n")
    env = dict(os.environ, MICROPYPATH=str(compiled_firmware()))
    p = subprocess.run([micropython_exe(), "-X", "heapsize=256K", "-c", probe], input="", env=env,
                       capture_output=True, text=True, check=True)
    m = re.search(r"n_pool=(\d+), n_qstr=(\d+)", p.stdout)
    imports = {"heap_after_imports_bytes": int(p.stdout.split()[1]), "name_pools": int(m.group(1)),
               "interned_names": int(m.group(2))}
    if good is None:
        out["micropython_heap"] = {"smallest_heap_kb": None, "note": "did not run in 256K", **imports}
    else:
        loop = runs(128)
        out["micropython_heap"] = {
            "days": float(week), "smallest_heap_kb": good, "target_kb": 128,
            "live_heap_after_cycle_bytes": t.get("heap_peak_bytes"), "port": "unix x86-64 (8-byte words)",
            "mode": "deep sleep after every cycle: a new process (fresh heap) per boot",
            "one_process_run_in_128k": loop is not None,
            "one_process_live_heap_bytes": loop.get("heap_peak_bytes") if loop else None, **imports}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
