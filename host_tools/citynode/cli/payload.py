"""`citynode channels`, `citynode encode` and `citynode decode`."""
from __future__ import annotations

import json
import sys

from citynode.cli import add_command
from citynode.payload.decode import Deduplicator, Stats, decode_uplink
from citynode.errors import CitynodeError, UsageError
from citynode.payload.outputs import FORMATS, Writer
from citynode.payload.frame import DR_LIMITS, FPORT, PayloadError, channel_set, encode, to_ints
from citynode.payload.channels import CHANNELS
from citynode.payload.uplink import UplinkError, parse_line


def register(sub) -> None:
    p = add_command(sub, "channels", cmd_channels, "Print the channel registry.", "citynode channels --json")
    p.add_argument("--json", action="store_true", help="one JSON array of channel objects")

    p = add_command(sub, "encode", cmd_encode, "Encode JSON-lines samples (stdin) into uplink payloads.",
                    """echo '{"t": 1546300844, "values": {"pm10": 9.37}}' | citynode encode --dr 5""")
    p.add_argument("--dr", type=int, default=5, choices=range(6), help="EU868 data rate (frame size limit)")
    p.add_argument("--runtime", choices=("cpython", "micropython"), default="cpython",
                   help="run the firmware encoder under CPython or the MicroPython unix port")

    p = add_command(sub, "decode", cmd_decode, "Decode uplinks (stdin) into samples.",
                    "citynode encode < samples.jsonl | citynode decode --format senml-json")
    p.add_argument("--input", choices=("hex", "ttn", "chirpstack"), default="hex",
                   help="hex: encode's lines, bare hex or base64; ttn: TTS v3 uplink messages; "
                        "chirpstack: ChirpStack v4 up events")
    p.add_argument("--format", choices=FORMATS, default="jsonl")
    p.add_argument("--keep-duplicates", action="store_true", help="do not drop re-sent samples")


def cmd_channels(args) -> int:
    rows = [c.as_dict() for c in CHANNELS]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'id':>3}  {'name':<14} {'unit':<6} {'resolution':>10} {'min':>12} {'max':>12}")
    for r in rows:
        print(f"{r['id']:>3}  {r['name']:<14} {r['unit'] or '-':<6} {r['resolution']:>10} {r['min']:>12} "
              f"{r['max']:>12}")
    return 0


def read_samples(stream) -> tuple[list[dict], int]:
    samples, bad = [], 0
    for no, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            s = json.loads(line)
            if not isinstance(s, dict):
                raise ValueError("expected a JSON object")
            samples.append(s)
        except ValueError as e:
            bad += 1
            sys.stderr.write(f"citynode encode: line {no}: {e}\n")
    return samples, bad


def encode_micropython(samples: list[dict], limit: int) -> list[bytes]:
    from citynode.sim.runtime import MP_DIR, run_mp

    chans = channel_set(samples)
    lines = [json.dumps({"ids": [c.id for c in chans], "refs": [c.ref for c in chans], "limit": limit})]
    lines += [json.dumps(list(to_ints(s, chans))) for s in samples]
    proc = run_mp(MP_DIR / "encode_main.py", "\n".join(lines) + "\n")
    if proc.returncode != 0:
        raise CitynodeError(f"MicroPython encoder failed: {proc.stderr.strip().splitlines()[-1:]}")
    return [bytes.fromhex(x) for x in proc.stdout.split()]


def cmd_encode(args) -> int:
    samples, bad = read_samples(sys.stdin)
    if not samples:
        raise CitynodeError("no samples on stdin")
    limit = DR_LIMITS[args.dr]
    try:
        frames = encode_micropython(samples, limit) if args.runtime == "micropython" else encode(samples, limit)
    except (ValueError, KeyError) as e:
        raise CitynodeError(str(e).strip('"')) from None
    for f in frames:
        sys.stdout.write(json.dumps({"fport": FPORT, "hex": f.hex()}) + "\n")
    return 1 if bad else 0


MAX_LINE = 1 << 20  # characters per input line: a network server's uplink message is a few kB


def bounded_lines(stream, limit: int = MAX_LINE):
    """The lines of a text stream; None in place of one longer than `limit` (read through in pieces, never
    held whole), so that one huge line costs neither the memory nor the lines after it."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line.endswith("\n") and len(line) == limit + 1:
            yield line
            continue
        while line and not line.endswith("\n"):
            line = stream.readline(limit)
        yield None


def cmd_decode(args) -> int:
    if args.format == "senml-cbor" and sys.stdout.isatty():
        raise UsageError("senml-cbor is binary: redirect it to a file")
    writer = Writer(args.format, sys.stdout, getattr(sys.stdout, "buffer", None))
    dedup = None if args.keep_duplicates else Deduplicator()
    stats = Stats()
    for no, line in enumerate(bounded_lines(sys.stdin), 1):
        if line is None:
            stats.errors += 1
            sys.stderr.write(f"citynode decode: line {no}: longer than {MAX_LINE:,} characters: skipped\n")
            continue
        if not line.strip():
            continue
        try:
            up = parse_line(line, args.input)
            samples, warns = decode_uplink(up, dedup, stats)
        except (UplinkError, PayloadError) as e:
            stats.errors += 1
            msg = " ".join(str(e).splitlines())  # one line, whatever the input put into the message
            sys.stderr.write(f"citynode decode: line {no}: {msg}\n")
            continue
        for w in warns:
            w = " ".join(w.splitlines())
            sys.stderr.write(f"citynode decode: line {no}: warning: {w}\n")
        writer.write(samples, up.device)
    sys.stdout.flush()
    if stats.duplicates:
        sys.stderr.write(f"citynode decode: {stats.duplicates} duplicate samples dropped\n")
    return 1 if stats.errors else 0
