"""`make bench`: measures the payload (bytes, decode rate, firmware encoder cost) and runs the other
benchmarks in bench/; writes bench/results.json and the table in bench/README.md."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cbor2

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]
DATA = ROOT.parent / "shared" / "data"

import designs  # noqa: E402

from citynode.sim.datasets import aberdeen_january  # noqa: E402
from citynode.payload.frame import channel_set, decode_frame, encode, to_ints  # noqa: E402
from citynode.sim.runtime import run_mp  # noqa: E402

# other benchmark scripts: each prints one JSON object as its last stdout line
OTHERS = ("drivers_env.py", "drivers_uart.py", "drivers_mobility.py", "queue_bench.py", "airtime.py",
          "simulate_bench.py", "flash_bench.py", "provision_bench.py", "bridge_bench.py", "bringup_bench.py",
          "node_life_bench.py", "energy_bench.py", "sta_bench.py")
MICROPYTHON_ONLY = ("drivers_mobility.py", "queue_bench.py")  # scripts that measure heap only when run by micropython


def _rate(fn, items, min_s=1.0):
    n, t0 = 0, time.perf_counter()
    while True:
        for x in items:
            fn(x)
        n += len(items)
        el = time.perf_counter() - t0
        if el >= min_s:
            return n / el


def payload_bench(month) -> dict:
    n = len(month)
    res: dict = {"series": "sensor.community Aberdeen 2019-01, SDS011 15092 + BME280 15093, 5-min grid",
                 "samples": n, "values_per_sample": 5}
    ours = {}
    frames_by_dr = {}
    for dr, limit in ((0, 51), (3, 115), (5, 222)):
        fr = encode(month, limit)
        frames_by_dr[dr] = fr
        ours[f"dr{dr}"] = {"limit": limit, "frames": len(fr), "bytes_per_sample": sum(map(len, fr)) / n,
                           "samples_per_frame": n / len(fr), "largest_frame": max(map(len, fr))}
    singles = [len(encode([s], 51)[0]) for s in month]
    ours["single_sample_frame"] = {"max": max(singles), "mean": sum(singles) / n}
    res["citynode"] = ours
    alt = {}
    for name, enc in (("A_cbor_delta_map", designs.delta_map), ("B_cbor_varint_stream", designs.varint_stream)):
        alt[name] = {f"dr{dr}": sum(map(len, designs.pack_greedy(month, enc, lim))) / n
                     for dr, lim in ((0, 51), (5, 222))}
    res["designs_tried"] = alt
    res["others_bytes_per_sample"] = {
        "cayenne_lpp_one_sample_per_frame": sum(len(designs.cayenne(s)) for s in month) / n,
        "senml_cbor_with_names": sum(len(designs.senml_cbor_names(s)) for s in month) / n,
        "airrohr_json_document": sum(len(designs.airrohr_json(s)) for s in month) / n,
        "lzma_whole_month_deltas": len(designs.lzma_month(month)) / n,
    }
    # decode rate: our decoder against plain cbor2.loads on the same frames
    for dr in (0, 5):
        fr = frames_by_dr[dr]
        ours_fps = _rate(decode_frame, fr)
        cbor_fps = _rate(cbor2.loads, fr)
        res[f"decode_dr{dr}"] = {"citynode_frames_per_s": ours_fps, "cbor2_loads_frames_per_s": cbor_fps,
                                 "citynode_samples_per_s": ours_fps * n / len(fr), "ratio": ours_fps / cbor_fps}
    # a like-for-like view: samples/s out of our frames against cbor2.loads of SenML-CBOR packs that carry
    # the same samples as ready CBOR items (one pack per sample)
    packs = [designs.senml_cbor_names(s) for s in month]
    res["decode_samples_vs_senml_cbor"] = {
        "citynode_dr5_samples_per_s": res["decode_dr5"]["citynode_samples_per_s"],
        "cbor2_loads_senml_samples_per_s": _rate(cbor2.loads, packs),
    }
    res["decode_samples_vs_senml_cbor"]["ratio"] = (res["decode_samples_vs_senml_cbor"]["citynode_dr5_samples_per_s"]
                                                    / res["decode_samples_vs_senml_cbor"]["cbor2_loads_senml_samples_per_s"])
    # the firmware encoder under the MicroPython unix port
    chans = channel_set(month)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"ids": [c.id for c in chans], "refs": [c.ref for c in chans], "limit": 222,
                   "ints": [to_ints(s, chans) for s in month[:4000]]}, fh)
    try:
        proc = run_mp(ROOT / "bench" / "mp_encoder.py", heap="4M", args=(fh.name,))
        res["micropython_encoder_dr5"] = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        os.unlink(fh.name)
    return res


def run_other(script: str, quick: bool) -> dict | None:
    path = ROOT / "bench" / script
    if not path.exists():
        return None
    t0 = time.perf_counter()
    if script in MICROPYTHON_ONLY:
        proc = run_mp(path, heap="4M", timeout=3600)
    else:
        args = [sys.executable, str(path)] + (["--quick"] if quick else [])
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    out = None
    text = proc.stdout.strip()
    starts = [i for i in range(len(text)) if text[i] == "{" and (i == 0 or text[i - 1] == "\n")]
    for i in reversed(starts):  # the last JSON object printed, on one line or several
        try:
            out = json.loads(text[i:])
            break
        except ValueError:
            continue
    if proc.returncode != 0 or out is None:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1], "rc": proc.returncode}
    out["_wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def fmt(x):
    return f"{x:,.2f}" if isinstance(x, float) else str(x)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))[:80]
    return str(v)


def _tables(r: dict) -> list[str]:
    """A benchmark's JSON as markdown: lists of records become tables, the rest a key/value table."""
    out: list[str] = []
    flat: list[tuple[str, object]] = []

    def walk(prefix, v):
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            keys: list[str] = []
            for x in v:
                for k in x:
                    if k not in keys and not isinstance(x[k], (dict, list)):
                        keys.append(k)
            out.extend([f"{prefix}:", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)])
            for x in v:
                out.append("| " + " | ".join(_cell(x.get(k, "")) for k in keys) + " |")
            out.append("")
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else k, x)
        else:
            flat.append((prefix, v))

    walk("", r)
    if flat:
        out = ["| figure | value |", "|---|---:|"] + [f"| {k} | {_cell(v)} |" for k, v in flat] + [""] + out
    return out


def write_readme(res: dict) -> None:
    p = res["payload"]
    o = p["citynode"]
    lines = [
        "# Benchmarks", "",
        f"Written by `make bench` on {res['when']} ({res['machine']}). Raw figures: `results.json`.", "",
        "## Payload: bytes per 5-value sample (PM10, PM2.5, temperature, humidity, pressure)", "",
        f"Series: {p['series']}, {p['samples']} samples.", "",
        "| format | bytes/sample | target |", "|---|---:|---:|",
        f"| citynode at DR5 (222 B frames) | {o['dr5']['bytes_per_sample']:.2f} | ≤ 4.5 |",
        f"| citynode at DR3 (115 B frames) | {o['dr3']['bytes_per_sample']:.2f} | |",
        f"| citynode at DR0 (51 B frames) | {o['dr0']['bytes_per_sample']:.2f} | ≤ 9.5 |",
        f"| citynode, one sample per frame (largest) | {o['single_sample_frame']['max']} | ≤ 19 |",
        f"| design A: CBOR map of delta arrays, DR5 / DR0 | {p['designs_tried']['A_cbor_delta_map']['dr5']:.2f} / "
        f"{p['designs_tried']['A_cbor_delta_map']['dr0']:.2f} | |",
        f"| design B: CBOR + zigzag varint stream, DR5 / DR0 | "
        f"{p['designs_tried']['B_cbor_varint_stream']['dr5']:.2f} / "
        f"{p['designs_tried']['B_cbor_varint_stream']['dr0']:.2f} | |",
    ]
    for k, v in p["others_bytes_per_sample"].items():
        lines.append(f"| {k.replace('_', ' ')} | {v:.2f} | |")
    lines += ["", "## Decode rate (same frames)", "", "| frames | citynode frames/s | cbor2.loads frames/s | ratio | "
              "citynode samples/s |", "|---|---:|---:|---:|---:|"]
    for dr in (0, 5):
        d = p[f"decode_dr{dr}"]
        lines.append(f"| DR{dr} | {d['citynode_frames_per_s']:,.0f} | {d['cbor2_loads_frames_per_s']:,.0f} | "
                     f"{d['ratio']:.3f} | {d['citynode_samples_per_s']:,.0f} |")
    d = p["decode_samples_vs_senml_cbor"]
    lines += ["", f"Samples per second against `cbor2.loads` of SenML-CBOR packs holding the same samples as ready "
              f"CBOR items: citynode {d['citynode_dr5_samples_per_s']:,.0f}, cbor2 {d['cbor2_loads_senml_samples_per_s']:,.0f}"
              f" (ratio {d['ratio']:.2f})."]
    m = p["micropython_encoder_dr5"]
    lines += ["", "## Firmware encoder under the MicroPython unix port (x86-64 host)", "",
              f"{m['frames']} frames of 222 B: {m['us_per_frame']:,.0f} µs per frame, "
              f"{m['bytes_alloc_per_frame']:.1f} bytes of heap allocated per frame after warm-up "
              f"(worst frame {m['worst_bytes_alloc_in_a_frame']} bytes).", ""]
    for name, r in res.get("others", {}).items():
        if r is None:
            continue
        lines += [f"## {name}", ""] + _tables(r) + [""]
    (ROOT / "bench" / "README.md").write_text("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller runs of the slow benchmarks")
    ap.add_argument("--only-payload", action="store_true")
    ap.add_argument("--readme-only", action="store_true", help="rewrite bench/README.md from results.json")
    ap.add_argument("--only", nargs="+", metavar="SCRIPT", help="run just these benchmarks (e.g. flash_bench.py)")
    args = ap.parse_args()
    if args.readme_only or args.only:
        res = json.loads((ROOT / "bench" / "results.json").read_text())
        for script in args.only or ():
            res["others"][script] = run_other(script, args.quick)
            print(script, json.dumps(res["others"][script])[:400])
        (ROOT / "bench" / "results.json").write_text(json.dumps(res, indent=1) + "\n")
        write_readme(res)
        return _failed(res)
    if not DATA.is_dir():
        print(f"bench needs the recorded data at {DATA}", file=sys.stderr)
        return 1
    res = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    month = aberdeen_january(DATA)
    res["payload"] = payload_bench(month)
    print(json.dumps(res["payload"], indent=1))
    if not args.only_payload:
        res["others"] = {}
        for script in OTHERS:
            r = run_other(script, args.quick)
            if r is not None:
                res["others"][script] = r
                print(script, json.dumps(r)[:400])
    path = ROOT / "bench" / "results.json"
    if args.only_payload and path.exists():  # keep the other benchmarks' last figures
        res["others"] = json.loads(path.read_text()).get("others", {})
    path.write_text(json.dumps(res, indent=1) + "\n")
    write_readme(res)
    return _failed(res)


def _failed(res) -> int:
    """1 when a benchmark failed (its figures are an error record now): a bench that broke must not pass."""
    bad = [k for k, v in res.get("others", {}).items() if isinstance(v, dict) and "error" in v]
    for k in bad:
        print(f"bench: {k} failed: {res['others'][k]['error']}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
