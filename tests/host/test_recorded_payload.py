"""The payload on the real January series: round trip within half a step, exact times, frame limits."""
from __future__ import annotations

from pathlib import Path

import pytest

from citynode.sim.datasets import aberdeen_january
from citynode.payload.frame import DR_LIMITS, decode_frame, encode
from citynode.payload.channels import BY_NAME

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = pytest.mark.recorded


@pytest.fixture(scope="module")
def month():
    s = aberdeen_january(DATA)
    assert len(s) > 8000
    return s


@pytest.mark.parametrize("dr", [0, 3, 5])
def test_month_round_trip_every_frame_alone(month, dr):
    limit = DR_LIMITS[dr]
    frames = encode(month, limit)
    out = []
    for f in frames:
        assert len(f) <= limit
        out.extend(decode_frame(f)[0])  # each frame decodes on its own
    assert [s.t for s in out] == [s["t"] for s in month]
    worst = 0.0
    for a, b in zip(month, out):
        for name, v in a["values"].items():
            if v is None:
                assert b.values.get(name) is None
            else:
                worst = max(worst, abs(b.values[name] - v) / BY_NAME[name].resolution)
    assert worst <= 0.5 + 1e-6


def test_month_bytes_per_sample_meet_targets(month):
    dr5 = sum(map(len, encode(month, 222))) / len(month)
    dr0 = sum(map(len, encode(month, 51))) / len(month)
    single = max(len(encode([s], 51)[0]) for s in month[::7])
    assert dr5 <= 4.5 and dr0 <= 9.5 and single <= 19, (dr5, dr0, single)
