"""The generated JavaScript codec, run in Node, decodes exactly what `citynode decode` decodes."""
from __future__ import annotations

import json
import random
import re
import subprocess
from pathlib import Path

import cbor2
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from citynode.payload import downlink as commands
from citynode.cli import main
from citynode.payload.downlink import COMMANDS
from citynode.payload.codec import TTN_SIZE_LIMIT, device_repo_yaml, generate
from citynode.payload.decode import Stats, decode_uplink
from citynode.payload.frame import FPORT, PayloadError, decode_frame, encode
from citynode.payload.channels import CHANNELS, EPOCH_2000, FLAG_NAMES
from citynode.payload.uplink import Uplink
from cnode.encoder import Encoder, pack

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "tests" / "js"
RUNNER = JS / "codec_runner.js"
VECTORS = json.loads((ROOT / "tests" / "vectors" / "payload.json").read_text())
NODE = "/usr/bin/node"


class Node:
    """One Node process running a codec; requests and results are JSON lines."""

    def __init__(self, kind: str, path: Path):
        self.proc = subprocess.Popen([NODE, str(RUNNER), kind, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def call(self, fn: str, inputs: list[dict]) -> list[dict]:
        assert self.proc.stdin and self.proc.stdout
        for inp in inputs:
            self.proc.stdin.write(json.dumps({"fn": fn, "input": inp}) + "\n")
        self.proc.stdin.flush()
        return [json.loads(self.proc.stdout.readline()) for _ in inputs]

    def close(self):
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def codecs(tmp_path_factory):
    d = tmp_path_factory.mktemp("codec")
    (d / "citynode.js").write_text(generate("ttn"))
    (d / "citynode.mjs").write_text(generate("chirpstack"))
    nodes = {"ttn": Node("ttn", d / "citynode.js"), "chirpstack": Node("chirpstack", d / "citynode.mjs")}
    yield nodes
    for n in nodes.values():
        n.close()


def expected(payload: bytes, fport: int | None = FPORT) -> dict:
    """What the codec must return: the samples and warnings of citynode's decoder, or an error."""
    try:
        samples, warns = decode_uplink(Uplink(payload, fport), None, Stats())
    except PayloadError:
        return {"errors": True}
    out: dict = {"data": {"samples": samples}}
    if warns:
        out["warnings"] = warns
    return json.loads(json.dumps(out))


def check(codecs, payloads: list[bytes], fport: int | None = FPORT) -> None:
    inputs = [{"bytes": list(p), "fPort": fport} for p in payloads]
    want = [expected(p, fport) for p in payloads]
    for kind, node in codecs.items():
        got = node.call("decodeUplink", inputs)
        for p, g, w in zip(payloads, got, want):
            if "errors" in w:
                assert set(g) == {"errors"}, (kind, p.hex(), g)
                assert len(g["errors"]) == 1 and isinstance(g["errors"][0], str), (kind, p.hex(), g)
                assert not g["errors"][0].startswith("internal error"), (kind, p.hex(), g)
            else:
                assert g == w, (kind, p.hex())


# --- the generated source -------------------------------------------------------------------------------


def test_ttn_codec_is_es5_by_acorn(tmp_path):
    f = tmp_path / "c.js"
    f.write_text(generate("ttn"))
    r = subprocess.run([NODE, str(RUNNER), "es5", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr + " (run `npm ci --prefix tests/js` once)"
    # the check itself rejects ES2015 syntax
    f.write_text(generate("ttn") + "\nvar f = (x) => x;\n")
    r = subprocess.run([NODE, str(RUNNER), "es5", str(f)], capture_output=True, text=True)
    assert r.returncode == 1 and "not es5" in r.stdout


def test_chirpstack_codec_is_an_es2020_module(tmp_path):
    f = tmp_path / "c.mjs"
    src = generate("chirpstack")
    f.write_text(src)
    r = subprocess.run([NODE, str(RUNNER), "es2020-module", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "\nexport function decodeUplink(input) {" in src
    assert "\nexport function encodeDownlink(input) {" in src


def test_ttn_codec_has_no_es2015_tokens_and_fits():
    src = generate("ttn")
    assert len(src.encode()) <= TTN_SIZE_LIMIT
    code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', re.sub(r"//[^\n]*", "", src))
    for token in (r"\blet\b", r"\bconst\b", "=>", "`", r"\bclass\b", r"\bexport\b", r"\bimport\b",
                  r"\brequire\s*\(", r"\.\.\.", r"\bof\b"):
        assert not re.search(token, code), token


def test_codec_table_is_the_registry():
    src = generate("ttn")
    for c in CHANNELS:
        assert f'  {c.id}: ["{c.name}", "{c.unit}", {c.exp}, {c.ref}]' in src
    assert "var FLAG_NAMES = " + json.dumps(list(FLAG_NAMES)) + ";" in src
    assert "var VERSION = 1;" in src


def test_cli_writes_the_codec(tmp_path, capsys):
    out = tmp_path / "codec.js"
    assert main(["codec", "--target", "ttn", "-o", str(out)]) == 0
    assert out.read_text() == generate("ttn")
    assert main(["codec", "--target", "chirpstack"]) == 0
    assert capsys.readouterr().out == generate("chirpstack")
    with pytest.raises(SystemExit) as e:
        main(["codec", "--target", "lorawan-server"])
    assert e.value.code == 2


# --- decoding: shared vectors, generated series, hostile bytes -------------------------------------------


def test_shared_vectors_exactly(codecs):
    frames = [bytes.fromhex(f) for v in VECTORS for f in v["frames"]]
    check(codecs, frames)
    # and the vectors' own samples come back (sanity of the comparison itself)
    got = codecs["ttn"].call("decodeUplink", [{"bytes": list(bytes.fromhex(VECTORS[0]["frames"][0])), "fPort": 2}])
    assert got[0] == {"data": {"samples": [{"t": 1546300844, "values": {
        "temperature": 8.57, "humidity": 64.8, "pressure": 102623, "pm2_5": 3.3, "pm10": 9.4}}]}}


def test_fport_and_bad_input_give_errors_not_exceptions(codecs):
    frame = bytes.fromhex(VECTORS[0]["frames"][0])
    for node in codecs.values():
        got = node.call("decodeUplink", [{"bytes": list(frame), "fPort": 1}, {"bytes": []}, {"fPort": 2},
                                         {"bytes": [300, 1]}, {"bytes": list(frame)}])
        assert got[0] == {"errors": ["FPort 1 is not the citynode data port 2"]}
        assert got[1] == {"errors": ["empty payload"]}
        assert got[2] == {"errors": ["no bytes"]}
        assert got[3] == {"errors": ["bytes must be 0..255"]}
        assert got[4] == expected(frame, None)


def _cbor_variants() -> list[bytes]:
    """Frames a general CBOR decoder reads the same way as the canonical one, and near misses."""
    frame = bytes.fromhex(VECTORS[0]["frames"][0])
    ver, mask, stream = cbor2.loads(frame)
    flagged = bytes.fromhex(next(v for v in VECTORS if v["name"] == "quality_flags")["frames"][0])
    fl = cbor2.loads(flagged)
    tag = cbor2.CBORTag
    out = [
        cbor2.dumps([ver, mask, stream]) + b"\x00\xff",  # trailing bytes are ignored
        b"\x9f" + frame[1:] + b"\xff",  # indefinite-length array
        bytes([0x83, 0x18, 0x01]) + frame[2:],  # non-minimal version
        bytes([0x83, 0x1b, 0, 0, 0, 0, 0, 0, 0, 1]) + frame[2:],
        cbor2.dumps([tag(2, b"\x00\x01"), mask, stream]),  # bignum version
        cbor2.dumps([ver, tag(2, mask.to_bytes(9, "big")), stream]),  # bignum mask, leading zero
        cbor2.dumps([ver, tag(2, b"\x01" + mask.to_bytes(8, "big")), stream]),  # mask >= 2**64
        cbor2.dumps(tag(55799, [ver, mask, stream])),
        cbor2.dumps([ver, tag(55799, mask), tag(28, stream)]),
        bytes([0x83, 0x01, 0xd8, 0x1c]) + cbor2.dumps(mask) + bytes([0xd8, 0x1d, 0x00]),  # shared ref -> int
        bytes([0xd8, 0x1c, 0x83, 0x01]) + cbor2.dumps(mask) + bytes([0xd8, 0x1d, 0x00]),  # ref to the array
        bytes([0x83, 0x01]) + cbor2.dumps(mask) + b"\x5f" + cbor2.dumps(stream[:3]) + cbor2.dumps(stream[3:]) + b"\xff",
        bytes([0x83, 0x01]) + cbor2.dumps(mask) + b"\x5f" + cbor2.dumps(stream[:3]) + b"\x60\xff",
        bytes([0x83, 0x01, 0xc2, 0x5f]) + cbor2.dumps(mask.to_bytes(2, "big")) + b"\xff" + cbor2.dumps(stream),
        cbor2.dumps([True, mask, stream]),
        cbor2.dumps([1.0, mask, stream]),
        bytes([0x83, 0xe1]) + frame[2:],  # simple(1)
        bytes([0x83, 0x01, 0x1f]) + frame[3:],
        cbor2.dumps([ver, -mask, stream]),
        cbor2.dumps([ver, 0, stream]),
        cbor2.dumps([ver, mask, list(stream)]),
        cbor2.dumps([ver, mask, stream, []]),
        cbor2.dumps([ver, mask, stream, [0, 0]]),
        cbor2.dumps([ver, mask, stream, [0, 0, -1]]),
        cbor2.dumps([ver, mask, stream, [0, 0, 1.0]]),
        cbor2.dumps([ver, mask, stream, [0, 0, True]]),
        cbor2.dumps([ver, mask, stream, [0, 0, 1, 0, 40, 3]]),  # flags of an unknown channel
        cbor2.dumps([ver, mask, stream, [0, 2**64 - 1, 1]]),
        cbor2.dumps([ver, mask, stream, [0, tag(2, b"\x05" + bytes(12)), 1]]),
        cbor2.dumps([ver, mask, stream, [0, 4, 2**64 - 1]]),  # every flag bit: names and flag_0x...
        cbor2.dumps([ver, mask, stream, [0, 4, 0x40], [1]]),
        cbor2.dumps([ver, mask, stream, [0, 5, 0]]),  # flags of a channel without a value -> null
        cbor2.dumps([ver, mask, stream, [1, 5, 1]]),  # sample index out of range
        cbor2.dumps([ver, mask, stream, [2**64 - 1, 5, 1]]),
        cbor2.dumps([ver, mask | (1 << 20), stream]),  # unknown channel in the mask, no bits for it
        cbor2.dumps(fl[:3] + [list(fl[3]) + [0, 63, 8]]),
        cbor2.dumps([2, mask, stream]),
        cbor2.dumps({0: 1}),
        cbor2.dumps([ver, mask]),
        cbor2.dumps([ver, mask, stream, [], 0]),
        b"\x83\x01",
        b"\xff",
        b"\x1c",
        b"\x9b" + bytes(7) + b"\x03\x01\x01\x40",
    ]
    return out


def test_cbor_variants_agree(codecs):
    variants = _cbor_variants()
    check(codecs, variants)
    # a few of them decode (so the comparison covers accepted odd encodings, not only errors)
    assert sum("errors" not in expected(v) for v in variants) >= 15


def series_frames(rnd: random.Random, limit: int) -> list[bytes]:
    """A random sample series (registry channels, gaps, spikes, nulls, flags) through citynode.payload.frame.encode."""
    chans = rnd.sample(CHANNELS, rnd.randint(1, 8))
    n = rnd.randint(1, 60)
    t = rnd.randint(EPOCH_2000, EPOCH_2000 + (1 << 31) - 1 - 10**7)
    step = rnd.choice((0, 1, 60, 300, 3600, rnd.randint(0, 100000), None))
    prev = {c.name: rnd.randint(c.lo, c.hi) for c in chans}
    samples = []
    for i in range(n):
        if i:
            t += step if step is not None else rnd.randint(0, 100000)
        values: dict = {}
        flags: dict = {}
        for c in chans:
            if rnd.random() < 0.1:
                values[c.name] = None
                if rnd.random() < 0.5:
                    flags[c.name] = ["missing"]
                continue
            kind = rnd.randint(0, 9)
            if kind == 0:  # a spike far outside the range (Rice escape)
                raw = c.ref + rnd.randint(-(1 << 28), 1 << 28)
            else:
                raw = min(max(prev[c.name] + rnd.randint(-(4 ** kind), 4 ** kind), c.lo - 1000), c.hi + 1000)
            prev[c.name] = raw
            values[c.name] = c.from_raw(raw)
            if rnd.random() < 0.07:
                flags[c.name] = rnd.sample(FLAG_NAMES, rnd.randint(1, 3))
        s: dict = {"t": t, "values": values}
        if flags:
            s["flags"] = flags
        samples.append(s)
    if all(v is None for s in samples for v in s["values"].values()):
        samples[0]["values"][chans[0].name] = chans[0].from_raw(chans[0].ref)
    return encode(samples, limit)


def wide_frames(rnd: random.Random) -> list[bytes]:
    """The firmware encoder used directly: channel ids outside the registry, values up to the format's bounds."""
    ids = sorted(rnd.sample(range(64), rnd.randint(1, 6)))
    refs = [rnd.randint(-(1 << 20), 1 << 20) for _ in ids]
    t = rnd.randint(0, (1 << 31) - 1 - 30 * 100000)
    rows = []
    for _ in range(rnd.randint(1, 30)):
        vals = [None if rnd.random() < 0.2 else r + rnd.randint(-(1 << 29) + 1, (1 << 29) - 1) >> rnd.randint(0, 29)
                for r in refs]
        if all(v is None for v in vals):
            vals[0] = refs[0]
        rows.append((t, vals, None))
        t += rnd.choice((0, 60, rnd.randint(0, 100000)))
    frames: list[bytes] = []
    try:
        pack(Encoder(ids, refs), rows, rnd.choice((51, 222)), lambda buf, k: frames.append(bytes(buf[:k])))
    except ValueError:  # a value beyond what one frame can carry at this limit
        return []
    return frames


SEEDS = st.integers(0, 2**32 - 1)


@settings(max_examples=40, deadline=None)
@given(SEEDS)
def test_generated_series_agree(codecs, seed):
    """Random sample series through citynode.payload.frame.encode (the firmware encoder), 50 series per example."""
    rnd = random.Random(seed)
    frames: list[bytes] = []
    for _ in range(50):
        frames += series_frames(rnd, rnd.choice((51, 115, 222)))
    for f in frames:  # what the encoder writes, every decoder reads (seeds 262, 14: empty channel masks)
        assert "errors" not in expected(f, FPORT), f.hex()
    check(codecs, frames)


@settings(max_examples=30, deadline=None)
@given(SEEDS)
def test_unknown_channels_and_wide_values_agree(codecs, seed):
    rnd = random.Random(seed)
    frames: list[bytes] = []
    for _ in range(50):
        frames += wide_frames(rnd)
    assert frames
    check(codecs, frames)


def mutate(rnd: random.Random, frame: bytes) -> bytes:
    b = bytearray(frame)
    for _ in range(rnd.randint(1, 3)):
        op = rnd.randint(0, 4)
        if not b:
            b.append(rnd.randint(0, 255))
            continue
        i = rnd.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rnd.randint(0, 7)
        elif op == 1:
            b[i] = rnd.randint(0, 255)
        elif op == 2:
            b.insert(i, rnd.randint(0, 255))
        elif op == 3:
            del b[i]
        else:
            del b[i:]
    return bytes(b)


BASE_FRAMES = [bytes.fromhex(f) for v in VECTORS for f in v["frames"]]


@settings(max_examples=40, deadline=None)
@given(SEEDS)
def test_mutated_and_truncated_frames_agree(codecs, seed):
    rnd = random.Random(seed)
    payloads = []
    for _ in range(60):
        frame = rnd.choice(BASE_FRAMES)
        payloads.append(mutate(rnd, frame))
        payloads.append(frame[:rnd.randrange(len(frame))])
    for _ in range(10):
        payloads += [mutate(rnd, f) for f in series_frames(rnd, 222) + wide_frames(rnd)]
    check(codecs, payloads)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=64),
                          st.binary(max_size=40).map(lambda b: b"\x83\x01" + b),
                          st.binary(max_size=40).map(lambda b: b"\x84\x01" + b)), min_size=50, max_size=50))
def test_random_bytes_agree(codecs, payloads):
    check(codecs, payloads)


# --- downlinks ------------------------------------------------------------------------------------------


def test_encode_downlink_matches_citynode_commands(codecs):
    """encodeDownlink gives the bytes of citynode.payload.downlink.encode, or an error where it raises."""
    names = list(COMMANDS) + ["no_such_command"]
    args = [None, True, False, 0, 1, 5, 6, 9, 10, 600, 86400, 86401, -1, 2**32, 1.5, "co2", "pm10", "nope", 17, 18, 27]
    counters = [1, 7, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 0, 2**32, -3]
    inputs, want = [], []
    for i, name in enumerate(names):
        for j, a in enumerate(args):
            for counter in (counters[(i + j) % len(counters)], 300):
                for cmd in (name, COMMANDS.get(name, 99)):
                    inputs.append({"data": {"command": cmd, "counter": counter, "args": a}})
                    try:
                        want.append({"bytes": list(commands.encode(cmd, a, counter=counter)), "fPort": 3})
                    except commands.CommandError:
                        want.append(None)
    assert sum(w is not None for w in want) > 50 and sum(w is None for w in want) > 50
    for kind, node in codecs.items():
        got = node.call("encodeDownlink", inputs)
        for inp, g, w in zip(inputs, got, want):
            if w is None:
                assert set(g) == {"errors"} and not g["errors"][0].startswith("internal"), (kind, inp, g)
            else:
                assert g == w, (kind, inp)
        # the examples of docs/downlink.md
        got = node.call("encodeDownlink", [
            {"data": {"command": "set_interval", "counter": 7, "args": 600}},
            {"data": {"command": "status", "counter": 1}},
            {"data": {"command": "disable_channel", "counter": 300, "args": "co2"}},
            {}])
        assert bytes(got[0]["bytes"]).hex() == "a30007010102190258"
        assert bytes(got[1]["bytes"]).hex() == "a200010106"
        assert bytes(got[2]["bytes"]).hex() == "a300190" + "12c01030206"
        assert got[3] == {"errors": ["no data"]}


# --- device repository ----------------------------------------------------------------------------------


def test_device_repository_yaml_examples_equal_the_codec_output(codecs, tmp_path):
    text = device_repo_yaml(VECTORS, "citynode.js")
    doc = yaml.safe_load(text)
    dec = doc["uplinkDecoder"]
    assert dec["fileName"] == "citynode.js"
    n = sum(len(v["frames"]) for v in VECTORS)
    assert len(dec["examples"]) == n
    for node in codecs.values():
        got = node.call("decodeUplink", [ex["input"] for ex in dec["examples"]])
        for ex, g in zip(dec["examples"], got):
            assert ex["output"] == g, ex["description"]
            assert set(ex) == {"description", "input", "output"} and ex["input"]["fPort"] == 2
    # the first example is the first vector's samples, as typed into the vector file
    first = dec["examples"][0]["output"]["data"]["samples"][0]
    assert first == {"t": 1546300844, "values": {"temperature": 8.57, "humidity": 64.8, "pressure": 102623,
                                                  "pm2_5": 3.3, "pm10": 9.4}}
    out = tmp_path / "codec.js"
    yml = tmp_path / "codec.yaml"
    assert main(["codec", "--target", "ttn", "-o", str(out), "--yaml", str(yml)]) == 0
    assert yaml.safe_load(yml.read_text())["uplinkDecoder"]["fileName"] == "codec.js"


def test_expected_helper_sees_errors():
    # the reference used above: a bad frame is an error, a good one is samples
    assert expected(b"\x83\x02\x01\x40") == {"errors": True}
    with pytest.raises(PayloadError):
        decode_frame(b"\x83\x01\x01\x40")
