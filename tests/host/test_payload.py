"""Host decoder against the shared vectors, the registry agreement, round trips and bad input."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cbor2
import pytest

from citynode.payload import frame as payload
from citynode.payload.frame import PayloadError, decode_frame, encode
from citynode.payload.channels import BY_ID, BY_NAME, CHANNELS, EPOCH_2000
from cnode import channels as fw_channels

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "payload.json").read_text())


def _close(a, b, ch):
    return abs(a - b) <= 0.5 * ch.resolution + 1e-9


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_encodes_to_exact_bytes(vec):
    assert [f.hex() for f in encode(vec["samples"], vec["limit"])] == vec["frames"]


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_decodes_to_its_samples(vec):
    got = {}
    for f in vec["frames"]:
        frame = bytes.fromhex(f)
        assert len(frame) <= vec["limit"]
        samples, warns = decode_frame(frame)
        assert warns == []
        for s in samples:
            merged = got.setdefault(s.t, {"values": {}, "flags": {}})
            merged["values"].update(s.values)
            merged["flags"].update(s.flags)
    assert sorted(got) == [s["t"] for s in vec["samples"]]
    for s in vec["samples"]:
        g = got[s["t"]]
        for name, v in s["values"].items():
            if v is None:
                assert g["values"].get(name) is None
            else:
                assert _close(g["values"][name], v, BY_NAME[name]), (name, v, g["values"][name])
        assert g["flags"] == s.get("flags", {})


def test_vectors_are_plain_cbor():
    for vec in VECTORS:
        for f in vec["frames"]:
            obj = cbor2.loads(bytes.fromhex(f))
            assert obj[0] == 1 and isinstance(obj[1], int) and isinstance(obj[2], bytes)


def test_registry_host_mirrors_firmware_table():
    assert [c.id for c in CHANNELS] == [r[0] for r in fw_channels.CHANNELS]
    assert len(BY_ID) == len(CHANNELS) == len(BY_NAME)
    for row, c in zip(fw_channels.CHANNELS, CHANNELS):
        assert (c.id, c.name, c.unit, c.exp, c.lo, c.hi, c.ref) == row
        assert 0 <= c.id < 64 and c.lo <= c.ref <= c.hi


def test_registry_covers_cli_md_channels_at_required_resolution():
    required = {"temperature": 0.01, "humidity": 0.1, "pressure": 1, "pm1": 0.1, "pm2_5": 0.1, "pm10": 0.1,
                "co2": 1, "noise_laeq": 0.1, "noise_lamax": 0.1, "pedestrians": 1, "bikes": 1, "vehicles": 1,
                "occupancy": 1, "distance": 0.001, "latitude": 0.00001, "longitude": 0.00001, "battery": 0.001}
    units = {"temperature": "Cel", "humidity": "%RH", "pressure": "Pa", "pm10": "ug/m3", "co2": "ppm",
             "noise_laeq": "dBA", "distance": "m", "latitude": "lat", "longitude": "lon", "battery": "V"}
    for name, res in required.items():
        assert BY_NAME[name].resolution <= res * 1.000001, name
    for name, unit in units.items():
        assert BY_NAME[name].unit == unit
    for status in ("battery", "reboot_reason", "fw_version", "queue_depth", "dropped"):
        assert status in BY_NAME


def test_single_sample_frame_is_small():
    # typical street values fit 19 B; the extremes of every range still fit 21 B
    typical = {"pm10": 85.3, "pm2_5": 40.1, "temperature": -5.55, "humidity": 98.4, "pressure": 99012}
    extreme = {"pm10": 999.9, "pm2_5": 999.9, "temperature": -39.99, "humidity": 100.0, "pressure": 110000}
    assert len(encode([{"t": 1546300844, "values": typical}], 51)[0]) <= 19
    assert len(encode([{"t": 1546300844, "values": extreme}], 51)[0]) <= 21


def test_timestamps_exact_and_irregular():
    ts = [1546300844, 1546300845, 1546301000, 1546390000, 1546390000, 1546400001]
    frames = encode([{"t": t, "values": {"co2": 400 + i}} for i, t in enumerate(ts)], 222)
    out = [s for f in frames for s in decode_frame(f)[0]]
    assert [s.t for s in out] == ts
    assert [s.values["co2"] for s in out] == [400, 401, 402, 403, 404, 405]


def test_extreme_values_round_trip():
    vals = {c.name: c.from_raw(c.hi) for c in CHANNELS}
    lows = {c.name: c.from_raw(c.lo) for c in CHANNELS}
    frames = encode([{"t": EPOCH_2000 + 1, "values": vals}, {"t": EPOCH_2000 + 2, "values": lows}], 51)
    out = {}
    for f in frames:
        assert len(f) <= 51
        for s in decode_frame(f)[0]:
            out.setdefault(s.t, {}).update(s.values)
    assert out[EPOCH_2000 + 1] == vals and out[EPOCH_2000 + 2] == lows


def test_unknown_channel_is_skipped_with_a_warning(monkeypatch):
    frame = encode([{"t": 1546300844 + 60 * i, "values": {"humidity": 50.0 + i, "pm10": 7.0 * i}}
                    for i in range(4)], 222)[0]
    monkeypatch.delitem(payload.BY_ID, BY_NAME["humidity"].id)
    samples, warns = decode_frame(frame)
    assert warns == [f"unknown channel {BY_NAME['humidity'].id} skipped"]
    assert [s.values for s in samples] == [{"pm10": 7.0 * i} for i in range(4)]


def test_a_sample_whose_every_reading_failed_round_trips():
    # the first pedestrian count missing, the rest fine (found by the codec property test, seed 262): the
    # first frame holds the failed sample alone, with mask 0, and decodes
    samples = [{"t": 1893456000, "values": {"pedestrians": None}, "flags": {"pedestrians": ["missing"]}}] + [
        {"t": 1893456000 + 3600 * i, "values": {"pedestrians": 300000 + 5000 * i}} for i in range(1, 4)]
    frames = encode(samples, 51)
    got = [s for f in frames for s in decode_frame(f)[0]]
    assert [(s.t, s.values, s.flags) for s in got][0] == (1893456000, {"pedestrians": None}, {"pedestrians": ["missing"]})
    assert [s.values["pedestrians"] for s in got[1:]] == [305000, 310000, 315000]
    assert decode_frame(cbor2.dumps([1, 0, bytes.fromhex("45740cb52d80"), [0, 9, 1]]))[0][0].flags == {
        "pedestrians": ["missing"]}


@pytest.mark.parametrize("data,msg", [
    (b"", "empty payload"),
    (b"\xff\x00", "not CBOR"),
    (bytes.fromhex("830218374c"), "not CBOR"),
    (cbor2.dumps([2, 55, b"\x00" * 8]), "unsupported payload version 2"),
    (cbor2.dumps({"a": 1}), "expected a CBOR array"),
    (cbor2.dumps([1, -1, b""]), "bad channel mask"),
    (cbor2.dumps([1, 2**64, b""]), "bad channel mask"),
    (cbor2.dumps([1, 0, b""]), "truncated"),  # mask 0 is a frame of samples without values: it needs a time
    (cbor2.dumps([1, 1, "text"]), "bad sample stream"),
    (cbor2.dumps([1, 1, b"\x00\x00"]), "truncated"),
    (cbor2.dumps([1, 1, b"\x23\xbd\x6a\x2c\xb6", [0, 1]]), "bad quality flags"),
])
def test_bad_frames_give_specific_errors(data, msg):
    with pytest.raises(PayloadError, match=msg):
        decode_frame(data)


def test_every_truncation_of_every_vector_is_an_error_not_a_crash():
    for vec in VECTORS:
        for f in vec["frames"]:
            frame = bytes.fromhex(f)
            for n in range(len(frame)):
                with pytest.raises(PayloadError):
                    decode_frame(frame[:n])


def test_trailing_garbage_in_stream_is_rejected():
    frame = encode([{"t": 1546300844, "values": {"co2": 600}}], 51)[0]
    obj = cbor2.loads(frame)
    obj[2] = obj[2] + b"\x80"
    with pytest.raises(PayloadError, match="trailing"):
        decode_frame(cbor2.dumps(obj))


def test_encode_rejects_bad_samples():
    with pytest.raises(KeyError, match="unknown channel"):
        encode([{"t": 1546300844, "values": {"ozone": 1}}])
    with pytest.raises(ValueError, match="bad sample time"):
        encode([{"t": "yesterday", "values": {"co2": 1}}])
    with pytest.raises(ValueError, match="bad value"):
        encode([{"t": 1546300844, "values": {"co2": math.nan}}])
    with pytest.raises(ValueError, match="backwards"):
        encode([{"t": 1546300844, "values": {"co2": 1}}, {"t": 1546300843, "values": {"co2": 1}}])


def test_humid_flag_is_derived_by_the_decoder():
    frames = encode([{"t": 1546300800, "values": {"pm10": 20.0, "pm2_5": 9.0, "humidity": 85.0}},
                     {"t": 1546301100, "values": {"pm10": 21.0, "humidity": 65.0}},
                     {"t": 1546301400, "values": {"pm10": 22.0, "humidity": 70.0}},
                     {"t": 1546301700, "values": {"pm10": 23.0, "humidity": 70.1},
                      "flags": {"pm10": ["warming_up"]}}], 222)
    assert len(frames) == 1
    s = decode_frame(frames[0])[0]
    assert s[0].flags == {"pm10": ["humid"], "pm2_5": ["humid"]}
    assert s[1].flags == {} and s[2].flags == {}  # at or below 70 %RH
    assert s[3].flags == {"pm10": ["warming_up", "humid"]}
    assert len(cbor2.loads(frames[0])) == 4 and cbor2.loads(frames[0])[3] == [3, 5, 4]  # only the sent flag
