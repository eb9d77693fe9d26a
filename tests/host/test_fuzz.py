"""Robustness: hostile payloads and input lines never crash or hang the decoder or the CLI.

Default profile: quick (CI). `make fuzz` runs `--hypothesis-profile=long` (200,000 examples a test, profile
registered in tests/host/conftest.py). Example counts come from the profile, so the tests set none."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import signal
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from citynode.cli import main
from citynode.payload.decode import Deduplicator, Stats, decode_uplink
from citynode.payload.frame import PayloadError, decode_frame
from citynode.payload.uplink import UplinkError, parse_line

ROOT = Path(__file__).resolve().parents[2]
FRAMES = [bytes.fromhex(f) for v in json.loads((ROOT / "tests" / "vectors" / "payload.json").read_text())
          for f in v["frames"]]
HANG_S = 5  # far above the slowest legitimate decode (about 1 ms)


@contextlib.contextmanager
def no_hang(seconds: float = HANG_S):
    def alarm(signum, frame):
        raise TimeoutError(f"no result within {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def decode_ok_or_payload_error(data: bytes) -> bool:
    with no_hang():
        try:
            samples, warns = decode_frame(data)
        except PayloadError as e:
            assert str(e)  # a message that says why
            return False
    assert samples and all(isinstance(w, str) for w in warns)
    return True


@st.composite
def mutated(draw):
    b = bytearray(draw(st.sampled_from(FRAMES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 4))
        i = draw(st.integers(0, max(0, len(b) - 1)))
        if op == 0 and b:
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and b:
            b[i] = draw(st.integers(0, 255))
        elif op == 2:
            b[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif op == 3 and b:
            del b[i:i + draw(st.integers(1, 3))]
        else:
            b = b[:i]
    return bytes(b)


frames_st = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=60).map(lambda b: b"\x83\x01" + b),
    st.binary(max_size=60).map(lambda b: b"\x84\x01\x1b" + b),
    mutated(),
    st.sampled_from(FRAMES).flatmap(lambda f: st.integers(0, len(f) - 1).map(lambda n: f[:n])),
)


@settings(deadline=None)
@given(frames_st)
def test_decode_frame_raises_only_payload_error(data):
    decode_ok_or_payload_error(data)


def test_truncated_frames_are_all_errors():
    # every proper prefix of every vector frame is rejected (the CBOR item or the bit stream is incomplete)
    for f in FRAMES:
        for n in range(len(f)):
            assert not decode_ok_or_payload_error(f[:n]), (f.hex(), n)
        assert decode_ok_or_payload_error(f)


# --- input lines ----------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=12)
payload_text = st.one_of(st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
                         mutated().map(lambda b: base64.b64encode(b).decode()),
                         st.sampled_from(FRAMES).map(lambda b: base64.b64encode(b).decode()), json_values)
ttn_like = st.fixed_dictionaries(
    {"uplink_message": st.one_of(json_values, st.fixed_dictionaries(
        {"frm_payload": payload_text, "f_port": st.one_of(st.just(2), json_values),
         "f_cnt": st.one_of(st.integers(0, 2**32), json_values)}))},
    optional={"end_device_ids": st.one_of(json_values, st.fixed_dictionaries(
        {"dev_eui": st.one_of(st.just("70B3D57ED0000001"), json_values)}, optional={"device_id": json_values})),
        "received_at": json_values})
chirpstack_like = st.fixed_dictionaries(
    {"data": payload_text, "deviceInfo": st.one_of(json_values, st.fixed_dictionaries(
        {"devEui": st.one_of(st.just("70b3d57ed0000002"), json_values)}))},
    optional={"fPort": st.one_of(st.just(2), json_values), "fCnt": st.one_of(st.integers(0, 2**32), json_values),
              "time": json_values})
hex_like = st.one_of(st.binary(max_size=40).map(bytes.hex), mutated().map(bytes.hex),
                     st.fixed_dictionaries({"hex": st.one_of(mutated().map(bytes.hex), json_values)},
                                           optional={"fport": json_values, "device": json_values,
                                                     "fcnt": json_values}).map(json.dumps),
                     st.text(max_size=40))


def line_of(kind):
    if kind == "hex":
        return hex_like
    shaped = ttn_like if kind == "ttn" else chirpstack_like
    return st.one_of(shaped.map(json.dumps), json_values.map(json.dumps), st.text(max_size=60))


def library_result(line: str, kind: str, dedup: Deduplicator) -> int | None:
    """Samples the library gives for one line, or None for a bad line (UplinkError or PayloadError only)."""
    with no_hang():
        try:
            up = parse_line(line, kind)
            samples, _ = decode_uplink(up, dedup, Stats())
        except (UplinkError, PayloadError) as e:
            assert str(e)
            return None
    return len(samples)


def run_cli(args: list[str], stdin: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), no_hang(30):
            rc = main(args)
    finally:
        sys.stdin = old
    return rc, out.getvalue(), err.getvalue()


def _lines_test(kind: str, lines: list[str]) -> None:
    lines = [ln.replace("\n", " ").replace("\r", " ") for ln in lines]
    good = base64.b64encode(FRAMES[0]).decode()
    valid = {"hex": FRAMES[0].hex(),
             "ttn": json.dumps({"end_device_ids": {"dev_eui": "70B3D57ED00000FF"},
                                "uplink_message": {"f_port": 2, "f_cnt": 1, "frm_payload": good}}),
             "chirpstack": json.dumps({"deviceInfo": {"devEui": "70b3d57ed00000ff"}, "fPort": 2, "fCnt": 1,
                                       "data": good})}[kind]
    lines = lines + [valid]  # a good line after the bad ones is still decoded
    dedup = Deduplicator()
    results = [library_result(ln, kind, dedup) if ln.strip() else 0 for ln in lines]
    rc, out, err = run_cli(["decode", "--input", kind], "".join(ln + "\n" for ln in lines))
    bad = [i + 1 for i, r in enumerate(results) if r is None]
    errors = [ln for ln in err.splitlines() if ": warning: " not in ln and "duplicate samples dropped" not in ln]
    assert [int(e.split(": line ", 1)[1].split(":", 1)[0]) for e in errors] == bad, err
    assert all(e.startswith(f"citynode decode: line {n}: ") for e, n in zip(errors, bad))
    assert rc == (1 if bad else 0)
    assert len(out.splitlines()) == sum(r for r in results if r)
    assert out.splitlines()[-1].startswith('{"t": 1546300844, ')


@settings(deadline=None)
@given(st.lists(line_of("ttn"), min_size=1, max_size=6))
def test_cli_ttn_lines(lines):
    _lines_test("ttn", lines)


@settings(deadline=None)
@given(st.lists(line_of("chirpstack"), min_size=1, max_size=6))
def test_cli_chirpstack_lines(lines):
    _lines_test("chirpstack", lines)


@settings(deadline=None)
@given(st.lists(line_of("hex"), min_size=1, max_size=6))
def test_cli_hex_lines(lines):
    _lines_test("hex", lines)
