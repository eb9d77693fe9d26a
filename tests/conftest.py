"""Shared pytest set-up: import paths for the firmware and host packages, and the recorded-data marker."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT / "firmware", ROOT / "host_tools", ROOT / "tests" / "firmware"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

SHARED_DATA = ROOT.parent / "shared" / "data"
MIP_INDEX = ROOT.parent / "shared" / "mip-index"


def pytest_collection_modifyitems(config, items):
    for marker, folder, what in (("recorded", SHARED_DATA, "recorded data"),
                                 ("mipindex", MIP_INDEX, "micropython-lib's mip index")):
        if folder.is_dir():
            continue
        skip = pytest.mark.skip(reason=f"{what} not found at {folder}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def lora_lib(tmp_path_factory) -> Path:
    """A board's lib folder with micropython-lib's lora packages (lora, lora-sync, lora-sx127x, lora-sx126x)
    as .py sources, taken from the mip index in ../shared/mip-index exactly as listed there (tests that use it
    are marked mipindex)."""
    import json

    lib = tmp_path_factory.mktemp("lib")
    for pkg in ("lora", "lora-sync", "lora-sx127x", "lora-sx126x"):
        meta = json.loads((MIP_INDEX / "package" / "py" / pkg / "latest.json").read_text())
        for path, short in meta["hashes"]:
            dest = lib / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes((MIP_INDEX / "file" / short[:2] / short).read_bytes())
    return lib
