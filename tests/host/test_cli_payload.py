"""The payload commands as scripts use them: channels, encode (both runtimes byte-identical), decode."""
from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import pytest

from citynode.cli import main
from citynode.payload.channels import CHANNELS

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "payload.json").read_text())


def run(monkeypatch, capsys, argv, stdin=""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _series(n=300):
    out = []
    for i in range(n):
        out.append({"t": 1546300800 + 300 * i, "values": {
            "pm10": round(12 + 8 * math.sin(i / 7.0) + (i % 5), 2), "pm2_5": round(4 + 3 * math.sin(i / 9.0), 2),
            "temperature": round(8 - 3 * math.cos(i / 40.0), 2), "humidity": round(70 + 10 * math.sin(i / 50.0), 2),
            "pressure": 101000 + (i * 7) % 400 if i % 37 else None}})
    return out


def test_channels_json_is_the_registry(monkeypatch, capsys):
    rc, out, _ = run(monkeypatch, capsys, ["channels", "--json"])
    assert rc == 0
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [c.id for c in CHANNELS]
    assert {r["name"]: r["unit"] for r in rows}["pm2_5"] == "ug/m3"
    assert {r["name"]: r["resolution"] for r in rows}["temperature"] == 0.01


def test_channels_table(monkeypatch, capsys):
    rc, out, _ = run(monkeypatch, capsys, ["channels"])
    assert rc == 0 and "temperature" in out and "Cel" in out


@pytest.mark.parametrize("dr", [0, 3, 5])
def test_micropython_encoder_gives_identical_bytes(monkeypatch, capsys, dr):
    stdin = "".join(json.dumps(s) + "\n" for s in _series())
    rc1, out1, _ = run(monkeypatch, capsys, ["encode", "--dr", str(dr)], stdin)
    rc2, out2, _ = run(monkeypatch, capsys, ["encode", "--dr", str(dr), "--runtime", "micropython"], stdin)
    assert rc1 == rc2 == 0
    assert out1 == out2
    frames = [json.loads(x) for x in out1.splitlines()]
    limit = (51, 51, 51, 115, 222, 222)[dr]
    assert frames and all(f["fport"] == 2 and len(bytes.fromhex(f["hex"])) <= limit for f in frames)


def test_micropython_encoder_on_every_vector(monkeypatch, capsys):
    for v in VECTORS:
        dr = {51: 0, 115: 3, 222: 5}.get(v["limit"])
        if dr is None:
            continue
        stdin = "".join(json.dumps(s) + "\n" for s in v["samples"])
        rc, out, _ = run(monkeypatch, capsys, ["encode", "--dr", str(dr), "--runtime", "micropython"], stdin)
        assert rc == 0
        assert [json.loads(x)["hex"] for x in out.splitlines()] == v["frames"], v["name"]


def test_encode_then_decode_round_trip(monkeypatch, capsys):
    series = _series(120)
    rc, out, _ = run(monkeypatch, capsys, ["encode", "--dr", "0"], "".join(json.dumps(s) + "\n" for s in series))
    rc, out, err = run(monkeypatch, capsys, ["decode"], out)
    assert rc == 0 and err == ""
    got = [json.loads(x) for x in out.splitlines()]
    assert [g["t"] for g in got] == [s["t"] for s in series]
    for g, s in zip(got, series):
        for k, v in s["values"].items():
            if v is None:
                assert g["values"].get(k) is None
            else:
                step = {"pm10": 0.1, "pm2_5": 0.1, "temperature": 0.01, "humidity": 0.1, "pressure": 1}[k]
                assert abs(g["values"][k] - v) <= step / 2 + 1e-9


def test_encode_bad_lines_are_reported_and_the_rest_encoded(monkeypatch, capsys):
    stdin = '{"t": 1546300800, "values": {"co2": 500}}\nnot json\n{"t": 1546300900, "values": {"co2": 510}}\n'
    rc, out, err = run(monkeypatch, capsys, ["encode"], stdin)
    assert rc == 1
    assert err.count("\n") == 1 and "line 2" in err
    assert len(out.splitlines()) == 1


def test_encode_unknown_channel_is_one_clean_error(monkeypatch, capsys):
    rc, out, err = run(monkeypatch, capsys, ["encode"], '{"t": 1546300800, "values": {"ozone": 5}}\n')
    assert rc == 1 and out == ""
    assert err.startswith("citynode encode: error: unknown channel 'ozone'") and "Traceback" not in err


def test_decode_goes_on_after_bad_lines(monkeypatch, capsys):
    good = VECTORS[0]["frames"][0]
    stdin = f"{good}\nzz\n8301\n{{\"fport\": 2, \"hex\": \"{good}\"}}\n"
    rc, out, err = run(monkeypatch, capsys, ["decode", "--keep-duplicates"], stdin)
    assert rc == 1
    assert len(out.splitlines()) == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("citynode decode: line 2:") and "line 3" in lines[1]


def test_usage_errors_exit_2(monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        run(monkeypatch, capsys, ["encode", "--dr", "9"])
    assert e.value.code == 2


def test_every_command_has_help_with_an_example(capsys):
    from citynode.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {"channels", "encode", "decode", "simulate"} <= set(sub.choices)
    for name, p in sub.choices.items():
        assert "Example:" in (p.description or ""), name


@pytest.mark.parametrize("line, says", [
    ('{"t": 1546300800, "values": {"temperature": NaN}}', "bad value for temperature: nan"),
    ('{"t": 1546300800, "values": {"temperature": Infinity}}', "bad value for temperature: inf"),
    ('{"t": 1546300800, "values": {"temperature": 1e400}}', "bad value for temperature: inf"),
    ('{"t": 1546300800, "values": {"temperature": 1e300}}', "bad value for temperature: 1e+300"),
    ('{"t": 123456789012345678901234567890, "values": {"temperature": 1}}', "bad sample time 1234567890"),
])
def test_encode_refuses_non_finite_values_and_absurd_times_in_one_line(monkeypatch, capsys, line, says):
    rc, out, err = run(monkeypatch, capsys, ["encode"], line + "\n")
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and says in err and "Traceback" not in err and "internal error" not in err


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import citynode.cli.payload as cmd

    def boom(args):
        raise RuntimeError("something we did not foresee")

    monkeypatch.setattr(cmd, "cmd_channels", boom)
    monkeypatch.setattr("citynode.cli.build_parser", _parser_with(cmd, boom))
    rc, out, err = run(monkeypatch, capsys, ["channels"])
    assert rc == 1 and err == ("citynode channels: internal error: RuntimeError: something we did not foresee "
                               "(run again with --debug for the traceback, and please report it)\n")
    with pytest.raises(RuntimeError):
        run(monkeypatch, capsys, ["channels", "--debug"])


def _parser_with(cmd, func):
    from citynode.cli import build_parser as real

    def build():
        p = real()
        sub = next(a for a in p._actions if a.dest == "command")
        sub.choices["channels"].set_defaults(func=func)
        return p
    return build


def test_ctrl_c_while_the_commands_load_is_one_line(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr("citynode.cli.build_parser", interrupted)
    rc, out, err = run(monkeypatch, capsys, ["decode"])
    assert rc == 130 and err == "citynode: interrupted\n"


def test_csv_cells_that_start_like_a_formula_are_neutralised(monkeypatch, capsys):
    import base64

    from citynode.payload.outputs import cell

    assert [cell(x) for x in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "node-1", "")] == [
        "'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "node-1", ""]
    frame = bytes.fromhex(json.loads((ROOT / "tests" / "vectors" / "payload.json").read_text())[0]["frames"][0])
    msg = json.dumps({"end_device_ids": {"device_id": "=HYPERLINK(\"http://x\")"},
                      "uplink_message": {"f_port": 2, "frm_payload": base64.b64encode(frame).decode()}})
    rc, out, err = run(monkeypatch, capsys, ["decode", "--input", "ttn", "--format", "csv"], msg + "\n")
    import csv

    rows = list(csv.reader(io.StringIO(out)))[1:]
    assert rc == 0 and rows and all(r[1] == "'=hyperlink(\"http://x\")" for r in rows), rows[:2]
    assert all(r[3] and r[3][0].isdigit() for r in rows)  # values stay numbers


def test_a_huge_input_line_is_skipped_with_one_error_and_the_next_line_decodes(monkeypatch, capsys):
    from citynode.cli.payload import MAX_LINE

    good = json.loads((ROOT / "tests" / "vectors" / "payload.json").read_text())[0]["frames"][0]
    stdin = "x" * (3 * MAX_LINE) + "\n" + good + "\n"
    rc, out, err = run(monkeypatch, capsys, ["decode", "--input", "hex"], stdin)
    assert rc == 1
    assert err == f"citynode decode: line 1: longer than {MAX_LINE:,} characters: skipped\n"
    assert len(out.splitlines()) >= 1  # line 2 decoded
