"""MQTT bridge throughput: N The Things Stack uplinks through 1 and then 2 `citynode bridge` processes (a shared
subscription group) on a real Mosquitto with its stock settings on loopback; counts what arrives on the output
topics. Then the stock broker's limits: a burst of 10,000 (also with the bridge's settings before issue 13: one
session, Receive Maximum 100), and the bridge stopped for 60 s while 5,000 arrive, followed by a burst of 10,000.

    python bench/bridge_bench.py [--n 100000] [--quick]

Prints a table and, as its last line, one JSON object (for bench/run.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "host"), str(ROOT / "host_tools"), str(ROOT / "firmware")]

from citynode.payload.frame import encode  # noqa: E402
from mqttkit import BridgeProc, Collector, Mosquitto, publish_all, ttn_message  # noqa: E402

T = 1546300800
DISTINCT_FRAMES = 1000


def uplinks(n: int) -> list[tuple[str, str]]:
    """n TTN uplink messages; (device, sample time) identifies each one."""
    frames = [encode([{"t": T + 300 * i, "values": {"pm10": 9.4 + (i % 7), "pm2_5": 3.3 + (i % 3),
                                                     "temperature": 8.57 - i % 11, "humidity": 64.8,
                                                     "pressure": 102623 - i % 5}}], 51)[0]
              for i in range(min(n, DISTINCT_FRAMES))]
    out = []
    for j in range(n):
        dev = f"70b3d57ed{j // DISTINCT_FRAMES:07x}"
        out.append((f"v3/city@ttn/devices/{dev}/up", ttn_message(frames[j % DISTINCT_FRAMES], dev, fcnt=j)))
    return out


def run(n_bridges: int, msgs: list[tuple[str, str]], workdir: Path) -> dict:
    n = len(msgs)
    broker = Mosquitto(workdir).start()
    out = Collector(broker.port, "bench/senml/#")
    bridges = [BridgeProc(broker.port, "ttn", "v3/city@ttn/devices/+/up", "bench/senml", group="bench",
                          client_id=f"bench-bridge-{i}") for i in range(n_bridges)]
    try:
        for b in bridges:
            b.wait_line("subscribed to $share/bench/")
        t0 = time.perf_counter()
        pub_done = []
        pub = threading.Thread(target=lambda: (publish_all(broker.port, msgs), pub_done.append(time.perf_counter())))
        pub.start()
        got = out.wait_for(n, timeout=max(120.0, n / 200))
        t1 = time.perf_counter()
        pub.join()
    finally:
        summaries = [b.stop() for b in bridges]
        out.close()
        broker.stop()
    ids = set()
    for topic, payload in got:
        pack = json.loads(payload)
        ids.add((topic.rsplit("/", 1)[1], pack[0]["bt"]))
    want = {(t.split("/")[3], T + 300 * (j % DISTINCT_FRAMES)) for j, (t, _) in enumerate(msgs)}
    return {"bridges": n_bridges, "messages": n, "received_on_output": len(got), "distinct": len(ids & want),
            "lost": len(want - ids), "seconds": round(t1 - t0, 3), "msgs_per_s": round(n / (t1 - t0), 1),
            "publish_seconds": round(pub_done[0] - t0, 3) if pub_done else None, "summaries": summaries}


def stock_burst(n: int, workdir: Path, sessions: int | None = None, receive_maximum: int | None = None) -> dict:
    """n uplinks published at once to one bridge on a stock Mosquitto; sessions/receive_maximum given: the
    library bridge in this process with those settings (1 and 100 were the bridge's before issue 13)."""
    broker = Mosquitto(workdir).start()
    out = Collector(broker.port, "stock/#")
    msgs = uplinks(n)
    lib = None
    if sessions is None:
        b = BridgeProc(broker.port, "ttn", "v3/city@ttn/devices/+/up", "stock", client_id="stock-burst")
        b.wait_line("subscribed to $share/")
    else:
        from citynode.bridge.core import Bridge

        lib = Bridge("127.0.0.1", broker.port, "ttn", "v3/city@ttn/devices/+/up", "stock", client_id="lib",
                     sessions=sessions, receive_maximum=receive_maximum or 100)
        th = threading.Thread(target=lib.run)
        th.start()
        time.sleep(1.0)
    try:
        t0 = time.perf_counter()
        publish_all(broker.port, msgs)
        got = out.wait_for(n, timeout=30 if lib else 120)
        time.sleep(1.0)
        got = out.wait_for(n + 1, timeout=0.5)
        t1 = time.perf_counter()
    finally:
        if lib is None:
            b.stop()
        else:
            lib.stop()
            th.join()
        out.close()
        broker.stop()
    ids = {(t, json.loads(p)[0]["bt"]) for t, p in got}
    return {"uplinks": n, "sessions": sessions or 8, "receive_maximum": receive_maximum or 8192,
            "arrived": len(got), "lost": n - len(ids), "doubled": len(got) - len(ids),
            "broker_dropping_notices": broker.dropped(), "seconds": round(t1 - t0, 1)}


def stock_outage(workdir: Path, down_s: int = 60, during: int = 5000, burst: int = 10000) -> dict:
    """The bridge stopped for down_s seconds while `during` uplinks arrive, then started again while a burst
    follows; a stock Mosquitto."""
    broker = Mosquitto(workdir).start()
    out = Collector(broker.port, "stock/#")
    msgs = uplinks(during + burst)
    state = workdir / "state.sqlite"
    b = BridgeProc(broker.port, "ttn", "v3/city@ttn/devices/+/up", "stock", client_id="outage", state=state)
    b.wait_line("subscribed to $share/")
    b.stop()
    t0 = time.monotonic()
    for k in range(down_s):
        publish_all(broker.port, msgs[k * during // down_s:(k + 1) * during // down_s])
        time.sleep(max(0.0, t0 + k + 1 - time.monotonic()))
    b = BridgeProc(broker.port, "ttn", "v3/city@ttn/devices/+/up", "stock", client_id="outage", state=state)
    try:
        b.wait_line("session present: True")
        t1 = time.perf_counter()
        publish_all(broker.port, msgs[during:])
        got = out.wait_for(during + burst, timeout=180)
        t2 = time.perf_counter()
        time.sleep(1.0)
        got = out.wait_for(during + burst + 1, timeout=0.5)
    finally:
        summary = b.stop()
        out.close()
        broker.stop()
    ids = {(t, json.loads(p)[0]["bt"]) for t, p in got}
    return {"down_s": down_s, "arrived_while_down": during, "burst_after": burst, "lost": during + burst - len(ids),
            "doubled": len(got) - len(ids), "broker_dropping_notices": broker.dropped(),
            "seconds_to_catch_up": round(t2 - t1, 1), "summary": summary}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="uplinks per run (default 100000)")
    ap.add_argument("--quick", action="store_true", help="5000 uplinks")
    args = ap.parse_args()
    n = 5000 if args.quick else args.n
    msgs = uplinks(n)
    res = {"uplinks": n, "runs": []}
    with tempfile.TemporaryDirectory() as d:
        for k in (1, 2):
            r = run(k, msgs, Path(d) / f"b{k}")
            res["runs"].append(r)
            print(f"{k} bridge(s): {n} uplinks in {r['seconds']} s = {r['msgs_per_s']:,.0f} msg/s decoded and "
                  f"republished; {r['received_on_output']} on the output, {r['lost']} lost", file=sys.stderr)
        res["stock_broker"] = {
            "burst": stock_burst(10_000, Path(d) / "burst"),
            "burst_with_the_old_settings": stock_burst(10_000, Path(d) / "old", sessions=1, receive_maximum=100),
            "outage": stock_outage(Path(d) / "outage")}
        for k, v in res["stock_broker"].items():
            print(f"stock broker, {k}: {v}", file=sys.stderr)
    print(json.dumps(res))
    sb = res["stock_broker"]
    return 0 if all(r["lost"] == 0 for r in res["runs"]) and sb["burst"]["lost"] == sb["outage"]["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
