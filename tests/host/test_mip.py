"""citynode.device.mip: micropython-lib's radio drivers from a mip index (served over HTTP on loopback as the public one
is), pinned by mip-lock.json, verified, compiled, cached; the bad indexes a technician can meet are one line each."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from citynode.device import mip
from citynode.device.boards import get_board, load_boards
from citynode.device.flash import FlashError
from citynode.sim.hwsim.vnode import micropython_exe
from citynode.device.mip import (LOCK_FILE, MipError, compile_sources, driver_files, fetch_sources, load_lock, make_lock,
                          packages_for)

ROOT = Path(__file__).resolve().parents[2]
BOARDS_DIR = ROOT / "boards"
MIP_INDEX = ROOT.parent / "shared" / "mip-index"
PINNED = {"lora": "0.2.0", "lora-sync": "0.1.1", "lora-sx127x": "0.1.2", "lora-sx126x": "0.1.6"}
SX127X = ["lib/lora/__init__.mpy", "lib/lora/modem.mpy", "lib/lora/sx127x.mpy", "lib/lora/sync_modem.mpy"]
SX126X = ["lib/lora/__init__.mpy", "lib/lora/modem.mpy", "lib/lora/sx126x.mpy", "lib/lora/sync_modem.mpy"]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def index_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "index"
    shutil.copytree(MIP_INDEX, dest)
    return dest


def one_line_error(call) -> str:
    with pytest.raises(MipError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, FlashError)
    return msg


# -- which packages, the lock ---------------------------------------------------------------------------------
def test_packages_follow_the_radio_chip():
    boards = load_boards(BOARDS_DIR)
    got = {name: packages_for(b) for name, b in boards.items()}
    assert got == {"esp32-devkit-lora-e5": (),
                   "heltec-wifi-lora-32-v2": ("lora", "lora-sync", "lora-sx127x"),
                   "heltec-wifi-lora-32-v3": ("lora", "lora-sync", "lora-sx126x"),
                   "tbeam": ("lora", "lora-sync", "lora-sx127x"),
                   "ttgo-lora32-v2.1": ("lora", "lora-sync", "lora-sx127x"),
                   "virtual": ("lora", "lora-sync", "lora-sx127x")}  # the SX1276 twin under the upstream driver
    for radio in ("rak3172", "lora-e5", "simulated", "wifi", None):  # board dicts work too
        assert packages_for({"radio": {"type": radio}}) == ()
    assert packages_for({"radio": {"type": "sx1262"}})[-1] == "lora-sx126x"
    assert driver_files(boards["esp32-devkit-lora-e5"], "http://127.0.0.1:1") == []  # nothing to fetch


def test_the_lock_pins_the_versions_and_full_hashes():
    lock = load_lock()
    assert {n: e["version"] for n, e in lock["packages"].items()} == PINNED
    for entry in lock["packages"].values():
        assert all(p.endswith(".py") and len(h) == 64 for p, h in entry["files"].items())
    assert sorted(lock["packages"]["lora-sx127x"]["files"]) == ["lora/__init__.py", "lora/modem.py",
                                                                "lora/sx127x.py"]
    # shipped as package data beside the module
    assert LOCK_FILE == Path(mip.__file__).with_name("mip-lock.json")


@pytest.mark.mipindex
def test_the_lock_is_what_the_helper_makes_from_the_index(tmp_path, mip_url):
    assert make_lock(mip_url, PINNED)["packages"] == load_lock()["packages"]
    out = tmp_path / "lock.json"
    out.write_text(LOCK_FILE.read_text())
    mip.write_lock(MIP_INDEX, path=out)  # re-pin the locked versions from a local copy
    assert json.loads(out.read_text()) == json.loads(LOCK_FILE.read_text())


# -- fetching over HTTP, cache --------------------------------------------------------------------------------
@pytest.mark.mipindex
def test_install_from_the_index_over_http_then_offline_from_the_cache(tmp_path, mip_url):
    v2 = get_board("heltec-wifi-lora-32-v2", BOARDS_DIR)
    cache = tmp_path / "cache"
    files = driver_files(v2, mip_url, cache=cache)
    assert [p for p, _ in files] == SX127X
    for _, data in files:
        assert data[:2] == b"M\x06"  # .mpy version 6, loads on MicroPython 1.19+
    lock = load_lock()["packages"]
    cached = sorted(p.name for p in (cache / "mip" / "sha256").iterdir())
    assert cached == sorted({h for n in packages_for(v2) for h in lock[n]["files"].values()})
    # the second flash: the index is gone (closed port, --offline) and the cache serves the verified sources
    dead = f"http://127.0.0.1:{closed_port()}"
    assert driver_files(v2, dead, cache=cache) == files
    assert driver_files(v2, dead, cache=cache, offline=True) == files
    # a damaged cache entry is not used: the index is asked again
    victim = next((cache / "mip" / "sha256").iterdir())
    victim.write_bytes(b"bit rot")
    assert "cannot reach the mip index" in one_line_error(lambda: driver_files(v2, dead, cache=cache))
    assert driver_files(v2, mip_url, cache=cache) == files
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == victim.name


@pytest.mark.mipindex
def test_a_local_copy_of_the_index_gives_the_same_files(tmp_path, mip_url):
    v3 = get_board("heltec-wifi-lora-32-v3", BOARDS_DIR)
    over_http = driver_files(v3, mip_url, cache=tmp_path / "a")
    assert [p for p, _ in over_http] == SX126X
    assert driver_files(v3, str(MIP_INDEX), cache=tmp_path / "b") == over_http
    assert driver_files(v3, MIP_INDEX.as_uri(), cache=tmp_path / "c") == over_http


@pytest.mark.mipindex
def test_default_index_is_the_public_one_or_the_environment(monkeypatch, tmp_path, mip_url):
    monkeypatch.delenv(mip.INDEX_ENV, raising=False)
    assert mip.default_index() == "https://micropython.org/pi/v2"
    monkeypatch.setenv(mip.INDEX_ENV, mip_url)
    monkeypatch.setenv("CITYNODE_CACHE", str(tmp_path / "cache"))
    files = driver_files(get_board("tbeam", BOARDS_DIR))
    assert [p for p, _ in files] == SX127X and (tmp_path / "cache" / "mip" / "sha256").is_dir()


@pytest.mark.mipindex
def test_compiled_drivers_import_under_micropython(tmp_path, mip_url):
    """The .mpy files (bytecode only, so the unix port loads the xtensawin build too) import and build the
    board's modem classes; a stub machine stands in for the ESP32's (the unix port has no Pin)."""
    lib = tmp_path / "lib"
    files = dict(driver_files(get_board("heltec-wifi-lora-32-v2", BOARDS_DIR), mip_url, cache=tmp_path / "c"))
    files.update(driver_files(get_board("heltec-wifi-lora-32-v3", BOARDS_DIR), mip_url, cache=tmp_path / "c"))
    for dest, data in files.items():
        p = tmp_path / dest
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    assert not list(lib.rglob("*.py"))  # only the compiled files: nothing to fall back to
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "machine.py").write_text("class Pin:\n    IN = 0\n    OUT = 1\n    IRQ_RISING = 1\n"
                                     "    def __init__(self, *a, **k):\n        pass\n\n\ndef idle():\n    pass\n")
    script = tmp_path / "probe.py"
    script.write_text("import sys, lora\n"
                      "print(lora.__version__, sys.modules['lora.sx127x'].__version__,\n"
                      "      sys.modules['lora.sx126x'].__version__, sys.modules['lora.sync_modem'].__version__)\n"
                      "print(lora.SX1276.__name__, lora.SX1262.__name__, lora.RxPacket.__name__)\n")
    proc = subprocess.run([micropython_exe(), str(script)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MICROPYPATH=f"{stub}:{lib}"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["0.2.0", "0.1.2", "0.1.6", "0.1.1", "SX1276", "SX1262", "RxPacket"]


def test_compile_sources_maps_package_paths_to_lib(tmp_path):
    out = compile_sources({"lora/x.py": b"A = 1\n", "lora/data.bin": b"\x00\x01"}, "esp32s3")
    assert [p for p, _ in out] == ["lib/lora/x.mpy", "lib/lora/data.bin"]
    assert out[0][1][:2] == b"M\x06" and out[1][1] == b"\x00\x01"


# -- bad indexes: one line each -------------------------------------------------------------------------------
def test_unreachable_index_names_the_url_and_the_reason(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}"
    msg = one_line_error(lambda: driver_files(get_board("tbeam", BOARDS_DIR), url, cache=tmp_path))
    assert msg == (f"cannot reach the mip index {url} (Connection refused); without network give "
                   "--mip-index DIR (an offline copy of the index)")


def test_offline_with_nothing_cached_and_a_missing_local_index(tmp_path):
    tbeam = get_board("tbeam", BOARDS_DIR)
    msg = one_line_error(lambda: driver_files(tbeam, "https://micropython.org/pi/v2", cache=tmp_path, offline=True))
    assert msg.startswith("the radio drivers (lora, lora-sync, lora-sx127x) are not cached (") and "--offline" in msg
    msg = one_line_error(lambda: driver_files(tbeam, str(tmp_path / "nope"), cache=tmp_path))
    assert msg.startswith(f"mip index {tmp_path / 'nope'} is not a directory")


@pytest.mark.mipindex
def test_a_tampered_file_is_refused_and_not_cached(tmp_path, serve_folder):
    idx = index_copy(tmp_path)
    victim = idx / "file" / "41" / "4149243a"  # lora/sx127x.py
    data = bytearray(victim.read_bytes())
    data[1000] ^= 0x01
    victim.write_bytes(bytes(data))
    url = serve_folder(idx)
    cache = tmp_path / "cache"
    msg = one_line_error(lambda: driver_files(get_board("tbeam", BOARDS_DIR), url, cache=cache))
    got = hashlib.sha256(bytes(data)).hexdigest()
    assert msg == (f"hash mismatch: lora/sx127x.py (lora-sx127x 0.1.2) from {url}/file/41/4149243a has SHA-256 "
                   f"{got[:12]}, mip-lock.json expects 4149243af9ab; not installing it")
    assert not (cache / "mip" / "sha256" / got).exists()
    assert "4149243af9aba5d2438421059094b929fe55a7a24a22ae544186d5c3f0712df6" not in os.listdir(cache / "mip" / "sha256")


def _drop_sx126x(idx: Path) -> None:
    for kind in ("py", "6"):
        shutil.rmtree(idx / "package" / kind / "lora-sx126x")
    doc = json.loads((idx / "index.json").read_text())
    doc["packages"] = [p for p in doc["packages"] if p["name"] != "lora-sx126x"]
    (idx / "index.json").write_text(json.dumps(doc))


def _new_sx126x_only(idx: Path) -> None:
    doc = json.loads((idx / "index.json").read_text())
    for p in doc["packages"]:
        if p["name"] == "lora-sx126x":
            p["version"], p["versions"] = "0.1.7", {"py": ["0.1.7"], "6": ["0.1.7"]}
    (idx / "index.json").write_text(json.dumps(doc))
    (idx / "package" / "py" / "lora-sx126x" / "0.1.6.json").unlink()


def _version_file_gone(idx: Path) -> None:
    (idx / "package" / "py" / "lora-sx126x" / "0.1.6.json").unlink()


def _index_json_broken(idx: Path) -> None:
    (idx / "index.json").write_text('{"packages": [{"name": "lora"')


def _version_json_broken(idx: Path) -> None:
    (idx / "package" / "py" / "lora-sx126x" / "0.1.6.json").write_text('{"v": 1, "hashes": "lora/sx126x.py"}')


def _index_lists_another_file(idx: Path) -> None:
    p = idx / "package" / "py" / "lora-sx126x" / "0.1.6.json"
    meta = json.loads(p.read_text())
    meta["hashes"].append(["lora/extra.py", "0123abcd"])
    p.write_text(json.dumps(meta))


@pytest.mark.mipindex
@pytest.mark.parametrize("doctor, expect", [
    (_drop_sx126x, "package lora-sx126x is not in the mip index {url}"),
    (_new_sx126x_only, "lora-sx126x 0.1.6 (pinned in mip-lock.json) is not in the mip index {url}; it has 0.1.7"),
    (_version_file_gone, "lora-sx126x 0.1.6 is not in the mip index {url} (no package/py/lora-sx126x/0.1.6.json)"),
    (_index_json_broken, "malformed mip index: {url}/index.json is not valid JSON (Expecting"),
    (_version_json_broken, "malformed mip index: {url}/package/py/lora-sx126x/0.1.6.json has no list of [path, "
                           "hash] pairs"),
    (_index_lists_another_file, "lora-sx126x 0.1.6 in the mip index {url} has the files lora/__init__.py, "
                                "lora/extra.py, lora/modem.py, lora/sx126x.py, but mip-lock.json pins"),
], ids=["package-missing", "version-missing", "version-file-missing", "index-json-malformed",
        "version-json-malformed", "other-files"])
def test_a_bad_index_is_one_clear_line(tmp_path, serve_folder, doctor, expect):
    idx = index_copy(tmp_path)
    doctor(idx)
    url = serve_folder(idx)
    msg = one_line_error(lambda: driver_files(get_board("heltec-wifi-lora-32-v3", BOARDS_DIR), url,
                                              cache=tmp_path / "cache"))
    assert msg.startswith(expect.format(url=url)), msg


def test_a_folder_that_is_not_an_index(tmp_path, serve_folder):
    (tmp_path / "site").mkdir()
    url = serve_folder(tmp_path / "site")
    msg = one_line_error(lambda: fetch_sources(["lora"], url, cache=tmp_path / "c"))
    assert msg == f"{url} is not a mip index: it has no index.json"
