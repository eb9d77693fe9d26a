"""Hostile uplinks through a real Mosquitto: device ids that cannot be a topic (lone surrogates, control
characters, 70,000 characters, '_errors', wildcards), bad JSON and payloads. The bridge never stops, each bad
message becomes an error record and is acknowledged, and every good message arrives."""
from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citynode.bridge.core import device_name_ok
from citynode.payload.frame import encode
from mqttkit import BridgeProc, Collector, Mosquitto, publish_all

T = 1546300800
GOOD = "70b3d57ed0000501"
FRAME = encode([{"t": T, "values": {"temperature": 8.5}}], 51)[0]


def tts(device_id: str, dev_eui: str | None, fcnt: int, frame: bytes = FRAME) -> str:
    import base64

    ids = {"device_id": device_id}
    if dev_eui is not None:
        ids["dev_eui"] = dev_eui
    # ensure_ascii: a lone surrogate travels as \\ud800 in the JSON, as a network server would send it
    return json.dumps({"end_device_ids": ids, "received_at": "2019-01-01T00:05:00Z",
                       "uplink_message": {"f_port": 2, "f_cnt": fcnt, "frm_payload": base64.b64encode(frame).decode()}})


def good(fcnt: int) -> str:
    frame = encode([{"t": T + 300 * fcnt, "values": {"temperature": 8.5}}], 51)[0]
    return tts("node-501", GOOD.upper(), fcnt, frame)


HOSTILE = ["ab\ud800", "x" * 70_000, "x\u0001y", "_errors", "+", "#", "a/b", "", " ", "ÄÖÜ", "a" * 37, "-a",
           "$SYS", "a\u0000b"]


def test_device_names_that_may_be_used():
    assert device_name_ok("70b3d57ed0000501") and device_name_ok("node-501") and device_name_ok("a" * 36)
    assert not any(device_name_ok(d) for d in HOSTILE)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    broker = Mosquitto(d / "mosq").start()
    out = Collector(broker.port, "h/#")
    b = BridgeProc(broker.port, "ttn", "up/#", "h", client_id="hostile", state=d / "state.db")
    b.wait_line("subscribed to $share/")
    rig = {"broker": broker, "out": out, "bridge": b, "fcnt": [0]}
    yield rig
    b.stop()
    out.close()
    broker.stop()


def _round(rig, hostile_msgs: list[str]) -> None:
    """The hostile messages, then a good one: the good one arrives, with one error record per hostile one."""
    rig["fcnt"][0] += 1
    f = rig["fcnt"][0]
    before = rig["out"].count()
    publish_all(rig["broker"].port, [("up/x", m) for m in hostile_msgs] + [("up/x", good(f))])
    msgs = rig["out"].wait_for(before + len(hostile_msgs) + 1, timeout=20)[before:]
    assert rig["bridge"].proc.poll() is None, rig["bridge"].log[-5:]
    data = [json.loads(p) for t, p in msgs if t == f"h/{GOOD}"]
    errors = [json.loads(p) for t, p in msgs if t == "h/_errors"]
    assert [d[0]["bt"] for d in data] == [T + 300 * f]
    assert len(errors) == len(hostile_msgs) and all("error" in e for e in errors)
    assert len(msgs) == len(hostile_msgs) + 1  # nothing else published (no SenML on h/_errors)


def test_each_known_hostile_device_id_is_an_error_record_and_the_bridge_goes_on(rig):
    for dev in HOSTILE:
        # as the device id, and as the DevEUI (an empty DevEUI counts as none: the device id is used)
        _round(rig, [tts(dev, None, 7)] + ([tts("ok-id", dev, 8)] if dev else []))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.text(max_size=60).filter(lambda s: not device_name_ok(s.lower())),
                          st.binary(max_size=200).map(lambda b: b.decode("latin-1"))), min_size=1, max_size=4),
       st.lists(st.binary(max_size=300), max_size=3))
def test_fuzzed_device_ids_and_payloads_never_stop_the_bridge(rig, ids, payloads):
    hostile = [tts(d, None, 9) for d in ids if not device_name_ok(d.lower())]
    hostile += [p.decode("latin-1") for p in payloads if not p.lstrip().startswith(b"{")]  # not JSON objects
    _round(rig, hostile)
