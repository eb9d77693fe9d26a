"""`citynode simulate --replay` sends what was recorded: every decoded value within its sampling window's record."""
from __future__ import annotations

import csv
import inspect
import json
from bisect import bisect_right
from datetime import datetime, timezone
from pathlib import Path

import pytest

from citynode.cli import main
from citynode.payload.channels import BY_NAME
from cnode.drivers.sds011 import SDS011

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sensor-community" / "2019-01-aberdeen"

pytestmark = pytest.mark.recorded

# archive columns -> channels, read here on their own (not through citynode.sim.datasets, which the replay uses)
COLUMNS = {"sds011": {"P1": "pm10", "P2": "pm2_5"},
           "bme280": {"temperature": "temperature", "humidity": "humidity", "pressure": "pressure"}}
REPLAYED = ("pm2_5", "pm10", "temperature", "humidity", "pressure")  # the channels the files record
DAYS, SEED, INTERVAL_S = 1, 21, 300


def replay_files() -> list[str]:
    """The issue's input: the first 8 files of SDS011 15092 and BME280 15093 in sorted order (4 days of each)."""
    return sorted([str(p) for p in DATA.glob("*_sds011_sensor_15092.csv")]
                  + [str(p) for p in DATA.glob("*_bme280_sensor_15093.csv")])[:8]


def recorded(paths) -> dict[str, tuple[list[int], list[float]]]:
    """channel -> (unix times, values) of every row that carries it, in time order."""
    rows: dict[str, list] = {}
    for path in paths:
        kind = next(k for k in COLUMNS if f"_{k}_" in Path(path).name)
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh, delimiter=";"):
                t = int(datetime.fromisoformat(r["timestamp"]).replace(tzinfo=timezone.utc).timestamp())
                for col, ch in COLUMNS[kind].items():
                    if (r.get(col) or "").strip():
                        rows.setdefault(ch, []).append((t, float(r[col])))
    return {ch: ([t for t, _ in sorted(v)], [x for _, x in sorted(v)]) for ch, v in rows.items()}


def window_s() -> float:
    """The sampling window of a sample stamped t is [t, t + window_s()], from how the node samples
    (cnode.app.Node.cycle, cnode.sampler): it reads its clock in whole seconds (t names [t, t + 1)) once the
    PM sensor has warmed up, then reads every sensor once in slot order (reads=1: no averaging in the simulated
    node; test_the_window_spans_every_reading checks this). The SDS011 comes first: after a boot its setup()
    checks and, where they differ, sets reporting mode and working period (up to 4 exchanges), then the query;
    each waits at most the driver's time-out for its answer. The BME280's forced measurement follows, at most its
    max_ms. The twins read the recording at the true moment of each reading (sample and hold)."""
    from citynode.sim.hwsim import machine as hw
    from citynode.sim.hwsim.clock import VirtualClock
    from citynode.sim.hwsim.twin_bme280 import BME280Twin
    from cnode.drivers.bme280 import BME280

    clock = VirtualClock()
    i2c = hw.I2C(0)
    i2c.attach(0x76, BME280Twin(clock))
    bme_max_ms = BME280(i2c, clock).max_ms
    sds_timeout_ms = inspect.signature(SDS011.__init__).parameters["timeout_ms"].default
    return 1 + (5 * sds_timeout_ms + bme_max_ms) / 1000


def outside(samples, rec, win_s) -> list[tuple]:
    """Every decoded value of a recorded channel that is not within [lo - step, hi + step], where lo..hi span the
    recorded values current at some moment of its window (the row current at t, and every row up to t + win_s)
    and step is the channel's resolution (the payload carries integers at it; the twins add the chips' own
    quantisation, less than half a step more). Before the first recorded row nothing was recorded: outside."""
    bad = []
    for s in samples:
        for ch, v in s["values"].items():
            if ch not in rec or v is None:
                continue
            times, vals = rec[ch]
            i = bisect_right(times, s["t"]) - 1
            cur = vals[i:bisect_right(times, s["t"] + win_s)] if i >= 0 else []
            step = BY_NAME[ch].resolution * (1 + 1e-9)  # (float representation of the bounds)
            if not cur or not min(cur) - step <= v <= max(cur) + step:
                bad.append((s["device"], s["t"], ch, v, (min(cur), max(cur)) if cur else None))
    return bad


@pytest.fixture(scope="module")
def record():
    files = replay_files()
    assert len(files) == 8
    return files, recorded(files)


@pytest.mark.parametrize("runtime,cuts", [("cpython", 0), ("cpython", 3), ("micropython", 0), ("micropython", 3)])
def test_every_replayed_value_lies_within_its_window(record, tmp_path, runtime, cuts):
    files, rec = record
    out, rep = tmp_path / "samples.jsonl", tmp_path / "report.json"
    args = ["simulate", "--replay", *files, "--seed", str(SEED), "--days", str(DAYS), "--nodes", "2",
            "--interval", str(INTERVAL_S), "--runtime", runtime, "--power-cuts", str(cuts),
            "--out", str(out), "--report", str(rep)]
    if runtime == "micropython":
        args.append("--api-radio")  # the radio does not touch the values; no mip index needed
    assert main(args) == 0
    report = json.loads(rep.read_text())
    assert report["totals"]["power_cuts"] == cuts
    assert report["totals"].get("runtime", "cpython") == runtime
    samples = [json.loads(x) for x in out.read_text().splitlines()]
    for dev in {n["dev_eui"] for n in report["nodes"]}:  # every node, every recorded channel, the whole day
        mine = [s for s in samples if s["device"] == dev]
        for ch in REPLAYED:
            got = [s["t"] for s in mine if s["values"].get(ch) is not None]
            assert len(got) >= 0.95 * DAYS * 86400 / INTERVAL_S, (dev, ch, len(got))
            assert max(got) - min(got) >= DAYS * 86400 - 2 * INTERVAL_S, (dev, ch)
    bad = outside(samples, rec, window_s())
    assert not bad, f"{len(bad)} values outside their window, e.g. {bad[:5]}"


def test_the_replay_starts_when_every_recorded_channel_has_a_value(record):
    from citynode.cli.simulate import replay_series

    files, rec = record
    start = replay_series(files)[0]
    assert start == max(times[0] for times, _ in rec.values())
    assert start > min(times[0] for times, _ in rec.values())  # these files: the BME280 starts 44 min later


def test_the_window_spans_every_reading(record):
    """The window the check uses holds the moment every replayed sensor was read for each sample (the twins'
    series calls, per node), and the simulated node reads each sensor once per sample."""
    from citynode.cli.simulate import replay_series
    from citynode.sim.fleet.sim import SimConfig, Simulation

    files, _ = record
    start, env, pm, _ = replay_series(files)
    sim = Simulation(SimConfig(nodes=2, days=0.25, seed=SEED, power_cuts=2, start_unix=start, env_series=env,
                               pm_series=pm))
    reads: dict[tuple, list] = {}
    for w in sim.worlds:
        for kind, twin in (("env", w.bme_twin), ("pm", w.sds_twin)):
            def log(ms, f=twin.series, key=(w.dev_eui.hex(), kind)):
                reads.setdefault(key, []).append(start + ms / 1000)
                return f(ms)
            twin.series = log
    res = sim.run()
    assert res.totals["power_cuts"] == 2
    for w in sim.worlds:
        assert all(slot.reads == 1 for slot in w.node.sampler.slots)
    win = window_s()
    n = 0
    for s in res.decoded:
        for kind, ch in (("env", "temperature"), ("pm", "pm2_5")):
            if s["values"].get(ch) is None:
                continue
            times = sorted(reads[(s["device"], kind)])
            i = bisect_right(times, s["t"] + win) - 1
            assert i >= 0 and s["t"] <= times[i], (s["device"], s["t"], kind)  # its reading lies in the window
            n += 1
    assert n >= 2 * 2 * 0.25 * 86400 / INTERVAL_S * 0.9


def test_the_check_finds_a_value_from_outside_the_window():
    rec = {"pm10": ([100, 200, 300], [1.0, 2.0, 3.0])}

    def sample(t, v):
        return {"device": "d", "t": t, "values": {"pm10": v}}

    assert not outside([sample(150, 1.0), sample(199, 2.0), sample(250, 2.1), sample(300, 2.9)], rec, 3)
    assert len(outside([sample(50, 1.0), sample(250, 1.0), sample(250, 2.2), sample(150, 2.0)], rec, 3)) == 4
