"""Uplinks into a SensorThings server: N The Things Stack uplinks on a stock Mosquitto through 1 and then 2
`citynode bridge --publish sta` processes (a shared group) into django-ogc-sensorthings (SQLite, loopback); the
sustained rate, every Observation read back (lost, doubled), and where the time goes (CPU of the server and of
the bridges, the bridges' time waiting for each kind of request).

    python bench/sta_bench.py [--devices 50] [--uplinks 100] [--quick]

Prints a table and, as its last line, one JSON object (for bench/run.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "host"), str(ROOT / "host_tools"), str(ROOT / "firmware")]

from citynode.payload.frame import decode_frame, encode  # noqa: E402
from citynode.bridge.sta import unix  # noqa: E402
from mqttkit import BridgeProc, Mosquitto, publish_all, ttn_message  # noqa: E402
from stakit import StaClient, StaServer  # noqa: E402

T = 1546300800
TOPIC = "v3/city@ttn/devices/+/up"


def uplinks(devices: int, per_device: int) -> tuple[list[tuple[str, str]], set[tuple]]:
    """The messages, interleaved by device as a fleet sends them, and every value they carry."""
    msgs, want = [], set()
    for f in range(per_device):  # (in FCnt order: the first half of the list is the first half of each device)
        for k in range(devices):
            dev = f"70b3d57ed1{k:06x}"
            t = T + 600 * f
            frame = encode([{"t": t, "values": {"temperature": 8.5 + f % 7 / 10, "humidity": 64.5, "pm10": 9.4 + k % 5}},
                            {"t": t + 300, "values": {"temperature": 8.6, "pm10": 12.0 + f % 3}}], 222)[0]
            msgs.append((f"v3/city@ttn/devices/{dev}/up", ttn_message(frame, dev, fcnt=f)))
            for s in decode_frame(frame)[0]:
                for ch, v in s.values.items():
                    want.add((dev, ch, s.t, float(v)))
    return msgs, want


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count(c: StaClient) -> int:
    status, _, page = c.get("/Observations", count="true", top="1")
    return page["@iot.count"] if status == 200 else -1


def read_back(c: StaClient) -> list[tuple]:
    rows = {}
    for ds in c.get_all("/Datastreams"):
        dev, ch = ds["properties"]["deveui"], ds["properties"]["channel"]
        for o in c.get_all(f"/Datastreams('{ds['@iot.id']}')/Observations"):
            rows[o["@iot.id"]] = (dev, ch, int(unix(o["phenomenonTime"])), o["result"])
    return list(rows.values())


def run(n_bridges: int, msgs, want: set, workdir: Path) -> dict:
    broker = Mosquitto(workdir / "mosq").start()
    server = StaServer(workdir / "sta").start()
    assert server.proc is not None
    c = StaClient(server.url)
    bridges = [BridgeProc(broker.port, "ttn", TOPIC, "sta", group="bench", client_id=f"sta-bench-{i}",
                          state=workdir / f"state-{i}.db", extra=("--sta-url", server.url))
               for i in range(n_bridges)]
    try:
        for b in bridges:
            b.wait_line("subscribed to $share/bench/")
        half = len(msgs) // 2  # first half: new devices (entities made); second half: sustained
        phases = []
        for part in (msgs[:half], msgs[half:]):
            n_before = count(c)
            cpu0 = {"server": cpu_s(server.proc.pid),
                    **{f"bridge{i}": cpu_s(b.proc.pid) for i, b in enumerate(bridges)}}
            t0 = time.perf_counter()
            pub = threading.Thread(target=publish_all, args=(broker.port, part))
            pub.start()
            goal = len(want) * len(part) // len(msgs) + n_before
            while count(c) < goal and time.perf_counter() - t0 < 600:
                time.sleep(0.1)
            t1 = time.perf_counter()
            pub.join()
            cpu1 = {"server": cpu_s(server.proc.pid),
                    **{f"bridge{i}": cpu_s(b.proc.pid) for i, b in enumerate(bridges)}}
            wall = t1 - t0
            phases.append({"uplinks": len(part), "observations": goal - n_before, "seconds": round(wall, 2),
                           "uplinks_per_s": round(len(part) / wall, 1),
                           "observations_per_s": round((goal - n_before) / wall, 1),
                           "cpu_s": {k: round(cpu1[k] - cpu0[k], 2) for k in cpu0}})
        time.sleep(1.0)  # anything doubled would arrive now
        rows = read_back(c)
    finally:
        logs = []
        for b in bridges:
            b.stop()
            logs.append([x for x in b.log if "Observations posted" in x or "received," in x])
        server.stop()
        broker.stop()
    got = {(d, ch, t, v) for d, ch, t, v in rows}
    return {"bridges": n_bridges, "uplinks": len(msgs), "observations": len(want),
            "first_half_new_devices": phases[0], "second_half_sustained": phases[1],
            "lost": len(want - got), "doubled": len(rows) - len(got), "bridge_logs": logs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--uplinks", type=int, default=100, help="per device")
    ap.add_argument("--quick", action="store_true", help="10 devices x 10 uplinks")
    args = ap.parse_args()
    devices, per = (10, 10) if args.quick else (args.devices, args.uplinks)
    msgs, want = uplinks(devices, per)
    res: dict = {"server": "django-ogc-sensorthings 1.2.0, SQLite (WAL), Django's threaded server, loopback",
                 "broker": "Mosquitto 2.0, stock settings", "runs": []}
    with tempfile.TemporaryDirectory() as d:
        for k in (1, 2):
            r = run(k, msgs, want, Path(d) / f"r{k}")
            res["runs"].append(r)
            for name in ("first_half_new_devices", "second_half_sustained"):
                p = r[name]
                print(f"{k} bridge(s), {name}: {p['uplinks']} uplinks = {p['observations']} Observations in "
                      f"{p['seconds']} s: {p['uplinks_per_s']:,.0f} uplinks/s, {p['observations_per_s']:,.0f} "
                      f"Observations/s; CPU s {p['cpu_s']}", file=sys.stderr)
            print(f"   lost {r['lost']}, doubled {r['doubled']}", file=sys.stderr)
            for log in r["bridge_logs"]:
                print("   " + " | ".join(log), file=sys.stderr)
    print(json.dumps(res))
    return 0 if all(r["lost"] == 0 and r["doubled"] == 0 for r in res["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
