"""Coverage-guided fuzzing of the payload decoder and the uplink parsers with atheris (libFuzzer), optional.

    pip install atheris==2.3.0
    python bench/fuzz_atheris.py -runs=1000000 [-max_total_time=600] [CORPUS_DIR]

The first input byte picks the target (frame, hex line, TTS message, ChirpStack event); anything but
PayloadError/UplinkError from the library is a crash that libFuzzer reports with the input that caused it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "host_tools"), str(ROOT / "firmware")]

with atheris.instrument_imports():
    from citynode.payload.decode import Deduplicator, Stats, decode_uplink
    from citynode.payload.frame import PayloadError, decode_frame
    from citynode.payload.uplink import UplinkError, parse_line

KINDS = ("hex", "ttn", "chirpstack")
DEDUP = Deduplicator(limit=10_000)


def one_input(data: bytes) -> None:
    if not data:
        return
    target, rest = data[0] % 4, data[1:]
    if target == 0:
        try:
            decode_frame(rest)
        except PayloadError:
            pass
        return
    line = rest.decode("utf-8", "replace")
    try:
        decode_uplink(parse_line(line, KINDS[target - 1]), DEDUP, Stats())
    except (UplinkError, PayloadError):
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
