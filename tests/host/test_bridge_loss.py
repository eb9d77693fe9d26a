"""The bridge against a stock Mosquitto (max_queued_messages 1000): a burst of 10,000 uplinks, an outage of 60 s
while 5,000 arrive followed by a burst, each uplink delivered once; FCnt gaps counted and reported."""
from __future__ import annotations

import json
import re
import threading
import time

import pytest

from citynode.bridge.state import DeliveryState
from citynode.payload.frame import encode
from mqttkit import BridgeProc, Collector, Mosquitto, publish_all, ttn_message

T = 1546300800
DEVICES = [f"70b3d57ed00001{i:02x}" for i in range(20)]


def uplinks(n: int, start: int = 0) -> list[tuple[str, str]]:
    """n uplinks from 20 devices, numbered from `start`: uplink j is device j % 20's FCnt j // 20."""
    frames = {}
    out = []
    for j in range(start, start + n):
        i = j // len(DEVICES)
        if i not in frames:
            frames[i] = encode([{"t": T + 300 * i, "values": {"temperature": 8.5 + i % 40 / 10, "pm10": 9.4}}],
                               51)[0]
        dev = DEVICES[j % len(DEVICES)]
        out.append((f"v3/city@ttn/devices/{dev}/up", ttn_message(frames[i], dev, fcnt=i)))
    return out


def identities(msgs) -> list[tuple[str, int]]:
    """(device topic, sample time) per SenML pack: which uplink it came from."""
    return [(t, json.loads(p)[0]["bt"]) for t, p in msgs if not t.endswith("/_errors")]


def expected(n: int, prefix: str) -> list[tuple[str, int]]:
    return sorted((f"{prefix}/{DEVICES[j % len(DEVICES)]}", T + 300 * (j // len(DEVICES))) for j in range(n))


def summary_counts(line: str) -> dict[str, int]:
    return {k: int(v) for v, k in re.findall(r"(\d+) (received|published|errors|duplicates|missing)", line)}


@pytest.fixture
def stock(tmp_path):
    m = Mosquitto(tmp_path / "mosq").start()
    yield m
    m.stop()


def test_burst_of_10000_on_a_stock_broker(stock, tmp_path):
    n = 10_000
    out = Collector(stock.port, "city/#")
    b = BridgeProc(stock.port, "ttn", "v3/city@ttn/devices/+/up", "city", client_id="burst",
                   state=tmp_path / "state.sqlite")
    try:
        b.wait_line("subscribed to $share/")
        publish_all(stock.port, uplinks(n))  # as fast as the broker takes them
        msgs = out.wait_for(n, timeout=120)
        time.sleep(0.5)  # anything extra (a duplicate) would arrive now
        msgs = out.wait_for(n + 1, timeout=0.5)
    finally:
        counts = summary_counts(b.stop())
        out.close()
    assert sorted(identities(msgs)) == expected(n, "city")  # every uplink, none twice
    assert counts == {"received": n, "published": n, "errors": 0, "duplicates": 0, "missing": 0}
    assert stock.dropped() == 0


def test_bridge_down_for_60_s_while_5000_arrive_then_a_burst(stock, tmp_path):
    """The bridge is stopped; over the next 60 s 5,000 uplinks arrive (a stock broker keeps only 1,000 per
    session away); it comes back with the same client id and state while a burst of 10,000 follows."""
    down, burst = 5_000, 10_000
    state = tmp_path / "state.sqlite"
    out = Collector(stock.port, "city/#")
    b = BridgeProc(stock.port, "ttn", "v3/city@ttn/devices/+/up", "city", client_id="outage", state=state)
    b.wait_line("subscribed to $share/")
    publish_all(stock.port, uplinks(200))
    out.wait_for(200, timeout=30)
    b.stop()
    t0 = time.monotonic()
    items = uplinks(down, start=200)
    for k in range(60):  # 5,000 spread over a minute
        publish_all(stock.port, items[k * len(items) // 60:(k + 1) * len(items) // 60])
        time.sleep(max(0.0, t0 + k + 1 - time.monotonic()))
    assert time.monotonic() - t0 >= 60
    b2 = BridgeProc(stock.port, "ttn", "v3/city@ttn/devices/+/up", "city", client_id="outage", state=state)
    try:
        b2.wait_line("session present: True")
        pub = threading.Thread(target=publish_all, args=(stock.port, uplinks(burst, start=200 + down)))
        pub.start()
        total = 200 + down + burst
        msgs = out.wait_for(total, timeout=180)
        pub.join()
        time.sleep(0.5)
        msgs = out.wait_for(total + 1, timeout=0.5)
    finally:
        counts = summary_counts(b2.stop())
        out.close()
    got = identities(msgs)
    assert len(set(got)) == total, f"{total - len(set(got))} lost"
    assert sorted(got) == expected(total, "city")  # none twice either
    assert counts["missing"] == 0 and counts["errors"] == 0
    assert stock.dropped() == 0


def test_fcnt_gaps_are_counted_and_reported_late_uplinks_fill_them(stock, tmp_path):
    dev = DEVICES[0]

    def up(fcnt):
        frame = encode([{"t": T + 300 * fcnt, "values": {"temperature": 8.5}}], 51)[0]
        return (f"v3/city@ttn/devices/{dev}/up", ttn_message(frame, dev, fcnt=fcnt))

    out = Collector(stock.port, "city/_errors")
    b = BridgeProc(stock.port, "ttn", "v3/city@ttn/devices/+/up", "city", client_id="gaps",
                   state=tmp_path / "state.sqlite", extra=("--gap-grace", "2"))
    try:
        b.wait_line("subscribed to $share/")
        # (the bridge's 8 sessions may hand over uplinks published together in any order: a device's first
        # uplinks go first, as they would a minute apart)
        publish_all(stock.port, [up(f) for f in (10, 11)])
        time.sleep(0.5)
        publish_all(stock.port, [up(f) for f in (14, 15, 20)])  # 12, 13 and 16..19 missing
        time.sleep(0.5)
        publish_all(stock.port, [up(13)])  # late, within the grace: the gap shrinks to 12 and 16..19
        msgs = out.wait_for(2, timeout=10)
        time.sleep(1.5)
        msgs = out.wait_for(3, timeout=0.5)
        publish_all(stock.port, [up(12)])  # after its gap was reported: delivered, counted late
    finally:
        counts = summary_counts(b.stop())
        out.close()
    gaps = sorted((r["fcnt_first"], r["fcnt_last"], r["missing"], r["device"], r["error"])
                  for r in (json.loads(p) for _, p in msgs))
    assert gaps == [(12, 12, 1, dev, "frame counter gap"), (16, 19, 4, dev, "frame counter gap")]
    assert counts["missing"] == 5 and counts["published"] == 7
    assert any("device 70b3d57ed0000100: 4 uplink(s) missing (FCnt 16..19)" in x for x in b.log)


def test_redelivered_and_repeated_uplinks_are_dropped_across_a_restart(stock, tmp_path):
    """The network server publishes some uplinks twice, and the bridge restarts (same state) in between: the
    output has each once; a device that re-joined (same FCnt, new payload) is not mistaken for a repeat."""
    state = tmp_path / "state.sqlite"
    first = uplinks(100)
    out = Collector(stock.port, "city/#")
    b = BridgeProc(stock.port, "ttn", "v3/city@ttn/devices/+/up", "city", client_id="dups", state=state)
    b.wait_line("subscribed to $share/")
    publish_all(stock.port, first + first[:10])
    out.wait_for(100, timeout=30)
    c1 = summary_counts(b.stop())
    b2 = BridgeProc(stock.port, "ttn", "v3/city@ttn/devices/+/up", "city", client_id="dups", state=state)
    rejoined = encode([{"t": T + 86400, "values": {"temperature": 1.5}}], 51)[0]
    try:
        b2.wait_line("session present: True")
        publish_all(stock.port, first[50:] + [(first[0][0], ttn_message(rejoined, DEVICES[0], fcnt=0))])
        msgs = out.wait_for(101, timeout=30)
        time.sleep(0.5)
        msgs = out.wait_for(102, timeout=0.5)
    finally:
        c2 = summary_counts(b2.stop())
        out.close()
    assert sorted(identities(msgs)) == sorted(expected(100, "city") + [(f"city/{DEVICES[0]}", T + 86400)])
    assert c1["duplicates"] + c2["duplicates"] == 60
    assert c2["published"] == 1


def test_delivery_state_tracks_gaps_resets_and_repeats(tmp_path):
    st = DeliveryState(tmp_path / "s.sqlite")
    d = b"\x01" * 16
    assert st.record([("a", 5, d, "s1"), ("a", 9, d, "s1")], now=100.0) == 0
    assert st.open_gaps(older_than=101) == [("a", 6, 8)]
    assert st.open_gaps(older_than=100) == []
    st.record([("a", 7, d, "s1")], now=102.0)
    assert st.open_gaps(older_than=200) == [("a", 6, 6), ("a", 8, 8)]  # split, keeping the first time
    assert st.delivered("a", 7, d) and not st.delivered("a", 7, b"\x02" * 16) and not st.delivered("a", 6, d)
    st.close_gaps([("a", 6, 6)])
    assert st.record([("a", 6, d, "s1")], now=103.0) == 1  # after its gap was reported: late
    # a new session (re-join) restarts the FCnt: no gap from the old top, no late uplinks
    assert st.record([("a", 1, b"\x03" * 16, "s2"), ("a", 2, d, "s2")], now=104.0) == 0
    assert st.open_gaps(older_than=200) == [("a", 8, 8)]
    # without session ids, an FCnt far below the highest one is a new session too
    st.record([("b", 5000, d, None)], now=105.0)
    assert st.record([("b", 0, d, None), ("b", 1, d, None)], now=106.0) == 0
    assert st.open_gaps(older_than=200) == [("a", 8, 8)]
    st.close()
    again = DeliveryState(tmp_path / "s.sqlite")  # on disk: a restart remembers
    assert again.delivered("a", 2, d) and again.open_gaps(older_than=200) == [("a", 8, 8)]


def test_a_stock_broker_keeps_1000_messages_for_a_session_that_is_away(stock):
    """Why the bridge holds 8 sessions: the broker in these tests really has the stock limit, and says so."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    got = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="away", protocol=MQTTProtocolVersion.MQTTv5)
    c.on_message = lambda cl, u, m: got.append(m.payload)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    props.ReceiveMaximum = 65535
    c.connect("127.0.0.1", stock.port, clean_start=True, properties=props)
    c.loop_start()
    c.subscribe("away/#", qos=1)
    time.sleep(0.3)
    c.disconnect()
    c.loop_stop()
    publish_all(stock.port, [(f"away/{i}", str(i)) for i in range(1500)])
    c.connect("127.0.0.1", stock.port, clean_start=False, properties=props)
    c.loop_start()
    end = time.monotonic() + 10
    while len(got) < 1000 and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()
    assert len(got) == 1000
    assert stock.dropped() >= 1
