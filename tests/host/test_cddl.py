"""Every shared test vector is valid against the CDDL schema in docs/payload.cddl (pycddl)."""
from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pycddl
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = pycddl.Schema((ROOT / "docs" / "payload.cddl").read_text())
VECTORS = json.loads((ROOT / "tests" / "vectors" / "payload.json").read_text())


@pytest.mark.parametrize("frame", [f for v in VECTORS for f in v["frames"]])
def test_vector_frames_match_schema(frame):
    SCHEMA.validate_cbor(bytes.fromhex(frame))


@pytest.mark.parametrize("bad", [[2, 55, b"\x00"], [1, 0, b"\x00"], [1, 55, "text"], [1, 55], {"v": 1},
                                 [1, 55, b"\x00", [1, -2, 3]]])
def test_schema_rejects_malformed_frames(bad):
    with pytest.raises(pycddl.ValidationError):
        SCHEMA.validate_cbor(cbor2.dumps(bad))
