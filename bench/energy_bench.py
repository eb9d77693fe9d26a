"""Benchmark of issue 12 (energy budget): `citynode budget` wall time per board, each board's deep-sleep floor
from its twins' states next to published measurements, the BME280-only node and a PM node on the best board, the
worked example of docs/energy.md against the simulator, and the fleet simulator's figure under both runtimes.
Prints one JSON line; bench/run.py stores it in results.json."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "host_tools"), str(ROOT / "firmware"), str(ROOT / "tests" / "host")]

from citynode.device.boards import get_board, load_boards  # noqa: E402
from citynode.cli.budget import driver_sources  # noqa: E402
from citynode.energy import model  # noqa: E402
from citynode.energy.budget import budget, shortest_interval  # noqa: E402
from citynode.energy.run import run  # noqa: E402

CLI = str(Path(sys.executable).with_name("citynode"))
INDEX = ROOT.parent / "shared" / "mip-index"
TWO_18650 = 6800.0


def _lib(name):
    lib, _ = driver_sources(get_board(name), str(INDEX) if INDEX.exists() else None)
    return lib


def cli_seconds(name: str) -> float:
    args = [CLI, "budget", "--board", name, "--json"]
    if INDEX.exists():
        args += ["--mip-index", str(INDEX)]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, text=True)
    return round(time.perf_counter() - t0, 2)


def floors() -> dict:
    out = {}
    for name in sorted(load_boards()):
        b = get_board(name).node_config()
        # a BLE counter keeps its board awake (it counts in RAM): the floor is the board's without it
        b["sensors"] = [s for s in b["sensors"] if s["driver"] != "blecount"]
        r = run(b, days=0.02, lib_dir=_lib(name))
        facts = model.board(name)
        out[name] = {"deep_sleep_ma": round(r.sleep_ma, 4) if r.sleep_states else None,
                     "states": {k: v[1] for k, v in r.sleep_states.items()},
                     "published": facts.get("published_deep_sleep_mA", []),
                     "budget_cli_s": cli_seconds(name)}
    return out


def nodes() -> dict:
    best, res = None, {}
    for name in ("heltec-wifi-lora-32-v3", "tbeam", "ttgo-lora32-v2.1", "heltec-wifi-lora-32-v2"):
        b = get_board(name).node_config()
        rep = budget(b, interval_s=300, sensors=["bme280"], battery_mah=TWO_18650, lib_dir=_lib(name))
        res[name] = {"mah_per_day": rep["mah_per_day"], "battery_days": rep["battery_days"],
                     "dominant": rep["dominant"], "components": rep["components"]}
        if best is None or rep["battery_days"] > res[best]["battery_days"]:
            best = name
    out = {"bme280_5min_2x18650": res, "best_board": best}
    b = get_board(best).node_config()
    for pm in ("sds011", "sps30"):
        rep = budget(b, interval_s=300, sensors=["bme280", pm], battery_mah=TWO_18650, lib_dir=_lib(best))
        life = shortest_interval(b, 365, sensors=["bme280", pm], battery_mah=TWO_18650, lib_dir=_lib(best))
        out[f"{pm}_node"] = {"at_300s": {"mah_per_day": rep["mah_per_day"], "battery_days": rep["battery_days"],
                                         "dominant": rep["dominant"]},
                             "interval_for_365_days_s": life["interval_s"], "battery_days_then": life["battery_days"]}
    return out


def worked_example() -> dict:
    from test_energy_example import hand_mah_per_day, simulated

    sim, r = simulated()
    hand = hand_mah_per_day(r)
    return {"hand_mah_per_day": round(hand, 4), "simulated_mah_per_day": round(sim, 4),
            "difference_pct": round(100 * (sim - hand) / hand, 3)}


def fleet_runtimes() -> dict:
    out = {}
    for rt in ("cpython", "micropython"):
        rep = ROOT / "bench" / f".energy_{rt}.json"
        args = [CLI, "simulate", "--nodes", "3", "--days", "1", "--deep-sleep", "--runtime", rt, "--report", str(rep)]
        if rt == "micropython":
            args += ["--api-radio", "--heap", "128K"]
        subprocess.run(args, check=True, capture_output=True, text=True)
        t = json.loads(rep.read_text())
        rep.unlink()
        out[rt] = {"mah_per_day_max": t["totals"]["mah_per_day"], "battery_days_min": t["totals"]["battery_days"],
                   "shares_node0": t["nodes"][0]["energy_shares"]}
    return out


def main() -> int:
    res = {"worked_example": worked_example(), "floors": floors(), **nodes(), "fleet": fleet_runtimes()}
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
