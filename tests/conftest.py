"""Shared pytest set-up: import paths for the firmware and host packages, and the recorded-data marker."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT / "firmware", ROOT / "host_tools", ROOT / "tests" / "firmware"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

SHARED_DATA = ROOT.parent / "shared" / "data"
MIP_INDEX = ROOT.parent / "shared" / "mip-index"
SHARED_DOCS = ROOT.parent / "shared" / "docs"


def pytest_collection_modifyitems(config, items):
    for marker, folder, what in (("recorded", SHARED_DATA, "recorded data"),
                                 ("mipindex", MIP_INDEX, "micropython-lib's mip index"),
                                 ("esp32doc", SHARED_DOCS, "the ESP32 port's API reference")):
        if folder.is_dir():
            continue
        skip = pytest.mark.skip(reason=f"{what} not found at {folder}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@contextlib.contextmanager
def serve_http(folder: Path):
    """Serve a folder over HTTP on loopback (a thread, port 0) as a web server would; yields its base URL."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, name="http-" + Path(folder).name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="session")
def mip_url() -> str:
    """micropython-lib's mip index (../shared/mip-index) served over HTTP on loopback, as the public index is
    (https://micropython.org/pi/v2); for `--mip-index`. Tests that use it are marked mipindex."""
    with serve_http(MIP_INDEX) as url:
        yield url


@pytest.fixture
def serve_folder():
    """serve_folder(path) -> URL: serves a folder (e.g. a doctored copy of the index) over HTTP for one test."""
    with contextlib.ExitStack() as stack:
        yield lambda folder: stack.enter_context(serve_http(Path(folder)))


@pytest.fixture(scope="session")
def lora_lib(tmp_path_factory, mip_url) -> Path:
    """A board's lib folder with micropython-lib's lora packages (lora, lora-sync, lora-sx127x, lora-sx126x)
    as .py sources: fetched over HTTP from the mip index in ../shared/mip-index by the flash tool's installer
    (citynode.device.mip, the versions and SHA-256s of mip-lock.json), so the twin tests run exactly what a board gets
    (there as .mpy compiled from these sources). Tests that use it are marked mipindex."""
    from citynode.device.mip import fetch_sources

    lib = tmp_path_factory.mktemp("lib")
    sources = fetch_sources(("lora", "lora-sync", "lora-sx127x", "lora-sx126x"), mip_url,
                            cache=tmp_path_factory.mktemp("cache"))
    for path, data in sources.items():
        dest = lib / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return lib
