"""docs/library.md's examples are the host library's public API in use: each one runs here, as written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "library.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_there_is_an_example_per_area():
    text = "\n".join(BLOCKS)
    for area in ("citynode.payload", "citynode.device", "citynode.bridge", "citynode.sim"):
        assert f"from {area}" in text, area


@pytest.mark.parametrize("code", BLOCKS, ids=[b.splitlines()[0][:40] for b in BLOCKS])
def test_the_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {"__name__": "example"})
