"""citynode simulate: whole nodes on a shared air, decoded on the network side, power cuts and all."""
from __future__ import annotations

import json
import os
import stat

import pytest

from citynode.cli import main
from citynode.sim.fleet.sim import SimConfig, Simulation, duty_cycle_use
from citynode.payload.frame import decode_frame  # noqa: F401


@pytest.fixture(scope="module")
def small_fleet():
    sim = Simulation(SimConfig(nodes=4, days=1, seed=7))
    return sim, sim.run()


def test_every_measured_sample_is_delivered(small_fleet):
    _, res = small_fleet
    t = res.totals
    assert t["samples_measured"] == 4 * 288
    assert t["samples_delivered"] == t["samples_measured"]
    assert t["samples_lost"] == 0 and t["decode_errors"] == 0
    for n in res.nodes:
        assert n["join_attempts"] >= 1 and n["uplinks"] > 0


def test_duty_cycle_from_the_frames_on_the_air(small_fleet):
    sim, _ = small_fleet
    for w in sim.worlds:
        txs = [tx for tx in sim.air.log if tx.source == w.name]
        use = duty_cycle_use(txs)
        assert use, "the node transmitted"
        for band, worst, limit in use:
            assert worst <= limit, (w.name, band, worst)


def test_decoded_values_follow_the_twins(small_fleet):
    sim, res = small_fleet
    temps = [s["values"]["temperature"] for s in res.decoded if s["values"].get("temperature") is not None]
    assert len(temps) >= 4 * 280
    assert 0 < min(temps) < max(temps) < 25  # the synthetic day: 12 +- 6.5 degC with per-node offsets
    bat = [s["values"]["battery"] for s in res.decoded if "battery" in s["values"]]
    assert all(3.6 <= b <= 4.2 for b in bat)


def test_frames_carry_what_the_decoder_needs(small_fleet):
    sim, _ = small_fleet
    lines = [json.loads(x) for x in sim.frames_jsonl()]
    ups = [x for x in lines if x["dir"] == "up"]
    assert {"t", "phy", "freq_hz", "dr", "dev_eui", "app_key"} <= set(ups[0])
    data = [x for x in ups if int(x["phy"][:2], 16) >> 5 == 2]
    assert data and all("app_s_key" in x and "nwk_s_key" in x for x in data)
    assert all(868_000_000 <= x["freq_hz"] <= 868_600_000 for x in ups)


def test_power_cuts_lose_nothing_and_duplicates_are_removed():
    sim = Simulation(SimConfig(nodes=4, days=2, seed=11, power_cuts=60))
    res = sim.run()
    t = res.totals
    assert t["power_cuts"] >= 55
    assert t["samples_lost"] == 0
    assert t["samples_delivered"] == t["samples_measured"] > 0
    assert t["duplicates"] > 0  # a cut between send and ack re-sends; the decoder drops the copies


def test_deep_sleep_reboots_every_cycle_and_keeps_state():
    sim = Simulation(SimConfig(nodes=2, days=0.5, seed=5, deep_sleep=True))
    res = sim.run()
    t = res.totals
    assert t["boots"] >= 2 * 140
    assert t["samples_delivered"] == t["samples_measured"] == 2 * 144
    assert t["join_attempts"] == 2  # the session survives deep sleep (NVS), no rejoin per boot


def test_lossy_air_reports_losses():
    sim = Simulation(SimConfig(nodes=3, days=1, seed=2, loss=0.3))
    t = sim.run().totals
    assert t["lost_on_air"] > 0
    assert t["samples_lost"] > 0
    assert t["samples_delivered"] + t["samples_lost"] + t["samples_pending"] == t["samples_measured"]


def test_confirmed_uplinks_recover_from_a_lossy_air():
    sim = Simulation(SimConfig(nodes=3, days=1, seed=2, loss=0.3, confirmed=True))
    t = sim.run().totals
    assert t["lost_on_air"] > 0
    assert t["samples_lost"] == 0
    assert t["samples_delivered"] == t["samples_measured"] >= 3 * 285


def test_cli_writes_report_samples_and_frames(tmp_path, capsys):
    old = os.umask(0o022)  # a usual umask: the frames file, which holds the nodes' keys, must still be private
    try:
        rc = main(["simulate", "--nodes", "2", "--days", "0.25", "--out", str(tmp_path / "o.jsonl"),
                   "--frames", str(tmp_path / "f.jsonl"), "--report", str(tmp_path / "r.json")])
    finally:
        os.umask(old)
    assert rc == 0
    out = capsys.readouterr().out
    assert "measured" in out and "all" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert len(rep["nodes"]) == 2 and rep["totals"]["samples_delivered"] == 2 * 72
    samples = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(samples) == rep["totals"]["samples_delivered"]
    frames = [json.loads(x) for x in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert any(f["dir"] == "down" for f in frames)
    assert stat.S_IMODE((tmp_path / "f.jsonl").stat().st_mode) == 0o600


def test_cli_rejects_bad_arguments(capsys):
    assert main(["simulate", "--nodes", "0"]) == 1
    assert "error" in capsys.readouterr().err


def test_micropython_runtime_delivers_the_same():
    from citynode.sim.fleet.unix_nodes import run_micropython

    res, frames = run_micropython(SimConfig(nodes=1, days=0.1, seed=3), heap="192K")
    t = res.totals
    assert t["runtime"] == "micropython"
    assert t["samples_measured"] >= 28
    assert t["samples_delivered"] == t["samples_measured"]
    ups = [json.loads(f) for f in frames if '"up"' in f]
    assert ups


def test_replayed_series_reach_the_network(tmp_path):
    from citynode.cli.simulate import replay_series

    sds = tmp_path / "2019-01-01_sds011_sensor_1.csv"
    sds.write_text("sensor_id;sensor_type;location;lat;lon;timestamp;P1;durP1;ratioP1;P2;durP2;ratioP2\n"
                   + "".join(f"1;SDS011;1;0;0;2019-01-01T{h:02d}:00:00;{10 + h}.5;;;{3 + h}.25;;\n"
                             for h in range(24)))
    start, env, pm, counter = replay_series([str(sds)])
    assert counter is None
    assert start == 1546300800
    sim = Simulation(SimConfig(nodes=1, days=0.5, seed=1, start_unix=start, env_series=env, pm_series=pm))
    res = sim.run()
    pm10 = {s["t"]: s["values"]["pm10"] for s in res.decoded if s["values"].get("pm10") is not None}
    assert pm10
    for t, v in pm10.items():
        hour = (t - start) // 3600
        assert v == pytest.approx(10.5 + hour, abs=0.051) or v == pytest.approx(10.5 + hour - 1, abs=0.051)
    _ = decode_frame


def test_every_frame_of_a_run_checks_out_with_lora_packet():
    """The frames the simulated radio carried, checked by an independent implementation (npm lora-packet):
    join MICs, session keys, data MICs, and the decrypted payloads decode to what the network delivered."""
    from test_lorapacket import lora_packet

    sim = Simulation(SimConfig(nodes=3, days=0.5, seed=4, power_cuts=3))
    res = sim.run()
    frames = [json.loads(x) for x in sim.frames_jsonl()]
    todo, kinds = [], []
    for f in frames:
        mtype = int(f["phy"][:2], 16) >> 5
        if mtype == 0:
            todo.append({"kind": "joinreq", "phy": f["phy"], "appkey": f["app_key"]})
        elif mtype == 1:
            todo.append({"kind": "joinaccept", "phy": f["phy"], "appkey": f["app_key"],
                         "devnonce": "0000"})
        else:
            todo.append({"kind": "data", "phy": f["phy"], "nwk": f["nwk_s_key"], "app": f["app_s_key"]})
        kinds.append((mtype, f))
    out = lora_packet(todo)
    assert len(out) == len(frames) > 20
    delivered = set()
    for (mtype, f), r in zip(kinds, out):
        assert r["mic"] is True, (mtype, f)
        if mtype == 1:
            assert r["nwkskey"] is not None
        if mtype == 2 and r["fport"] == 2:
            for s in decode_frame(bytes.fromhex(r["payload"]))[0]:
                delivered.add((f["dev_eui"], s.t))
    assert {(s["device"], s["t"]) for s in res.decoded} <= delivered


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_replayed_counter_csv_drives_pulse_counting(tmp_path, runtime):
    from citynode.cli.simulate import replay_series
    from citynode.sim.fleet.unix_nodes import MpSimulation

    counts = [3, 0, 12, 40, 25, 7, 0, 1]
    csv = tmp_path / "bikes.csv"
    csv.write_text("time,bikes\n" + "".join(f"2019-06-01T{h:02d}:00:00,{c}\n" for h, c in enumerate(counts)))
    start, env, pm, counter = replay_series([str(csv)])
    assert counter == ("bikes", counts)
    cfg = SimConfig(nodes=2, days=9 / 24, seed=1, start_unix=start, env_series=env, pm_series=pm, counter=counter)
    # under micropython the counter's edges reach the node process as interrupts at their virtual times
    sim = Simulation(cfg) if runtime == "cpython" else MpSimulation(cfg, "192K")
    res = sim.run()
    assert res.totals["samples_delivered"] == res.totals["samples_measured"]
    for w in sim.worlds:
        got = sum(s["values"].get("bikes") or 0 for s in res.decoded if s["device"] == w.dev_eui.hex())
        assert got == sum(counts) == w.count_twin.emitted  # every pulse counted once, debounced


def test_micropython_runtime_confirmed_uplinks_recover_from_a_lossy_air():
    from citynode.sim.fleet.unix_nodes import run_micropython

    res, _ = run_micropython(SimConfig(nodes=2, days=0.5, seed=2, loss=0.3, confirmed=True), heap="192K")
    t = res.totals
    assert t["lost_on_air"] > 0 and t["samples_lost"] == 0
    assert t["samples_delivered"] == t["samples_measured"] >= 2 * 140


def test_micropython_deep_sleep_boots_a_fresh_process_per_cycle():
    from citynode.sim.fleet.unix_nodes import run_micropython

    res, _ = run_micropython(SimConfig(nodes=1, days=0.1, seed=2, deep_sleep=True), heap="192K")
    t = res.totals
    assert t["boots"] >= 28 and t["power_cuts"] == 0  # one process per wake, none lost to a crash
    assert t["samples_delivered"] == t["samples_measured"] >= 28
    assert t["join_attempts"] == 1  # the session is kept in NVS across deep sleep


def test_counting_nodes_stay_out_of_deep_sleep_and_lose_no_count(tmp_path, capsys):
    counts = [0, 5, 9, 2]  # (none in the first minutes, before the node has booted)
    csv = tmp_path / "bikes.csv"
    csv.write_text("time,bikes\n" + "".join(f"2019-06-01T{h:02d}:00:00,{c}\n" for h, c in enumerate(counts)))
    out = tmp_path / "samples.jsonl"
    assert main(["simulate", "--nodes", "1", "--days", "0.2", "--deep-sleep", "--replay", str(csv),
                 "--out", str(out)]) == 0
    assert "counting nodes stay in light sleep" in capsys.readouterr().err
    got = [json.loads(x)["values"].get("bikes") or 0 for x in out.read_text().splitlines()]
    assert sum(got) == sum(counts)
