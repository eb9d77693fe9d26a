"""`citynode flash` pins a MicroPython image on first use (citynode.device.imagelock): the first download's SHA-256 goes
into the image lock and is said once, later flashes verify against it silently, and a changed image is refused
before anything reaches the board. The network is a stand-in that serves the board files' image URLs from memory
(nothing is downloaded from the internet); the board is the simulated ROM loader (real esptool) and, for the help
examples, the virtual node on a pty (real mpremote)."""
from __future__ import annotations

import contextlib
import io
import json
import shlex
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from citynode.device.boards import get_board
from citynode.cli import build_parser, main
from citynode.sim.hwsim.esp32rom import Esp32RomSim

from bringup import SIZES, fake_image

MIP_INDEX = Path(__file__).resolve().parents[3] / "shared" / "mip-index"
V3 = "heltec-wifi-lora-32-v3"


class Network:
    """urllib.request.urlopen for the tests: serves `images` {url: bytes}, counts requests, refuses every other
    address except loopback (the tests' own HTTP servers)."""

    def __init__(self, real):
        self.real = real
        self.images: dict[str, bytes] = {}
        self.requests: list[str] = []

    def __call__(self, url, *args, **kw):
        u = url if isinstance(url, str) else url.full_url
        if u.startswith(("http://127.0.0.1", "http://localhost")):
            return self.real(url, *args, **kw)
        self.requests.append(u)
        if u not in self.images:
            raise urllib.error.URLError("no internet in the tests")
        return contextlib.closing(io.BytesIO(self.images[u]))


@pytest.fixture
def net(monkeypatch, tmp_path):
    n = Network(urllib.request.urlopen)
    monkeypatch.setattr(urllib.request, "urlopen", n)
    monkeypatch.setenv("CITYNODE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CITYNODE_MIP_INDEX", str(MIP_INDEX))
    monkeypatch.delenv("CITYNODE_IMAGES_LOCK", raising=False)
    monkeypatch.chdir(tmp_path)  # the default lock is ./citynode-images.lock
    return n


def _flash_image_only(board, lock, capsys, *extra) -> tuple[int, str, str, bytes]:
    b = get_board(board)
    with Esp32RomSim(chip=b.chip, flash_size=SIZES[b.flash_size]) as sim:
        rc = main(["flash", "--board", board, "--port", sim.url, "--image-only", "--connect-attempts", "1",
                   *(["--images-lock", str(lock)] if lock is not None else []), *extra])
        flashed = bytes(sim.flash)
    out = capsys.readouterr()
    return rc, out.out, out.err, flashed


def test_the_first_flash_pins_the_image_and_says_so_once_then_later_flashes_verify_it_silently(net, tmp_path,
                                                                                               capsys):
    board = get_board(V3)
    img = fake_image(board.chip, 80_000)
    net.images[board.image_url] = img
    name = board.image_url.rsplit("/", 1)[-1]
    sha = __import__("hashlib").sha256(img).hexdigest()

    rc, out, err, flashed = _flash_image_only(V3, None, capsys)  # the help example's board, default lock
    lock = Path("citynode-images.lock")
    assert rc == 0, err
    assert err == f"citynode flash: pinned {name} sha256 {sha} in {lock}; commit this file\n"
    assert flashed[:len(img)] == img and "verified" in out
    doc = json.loads(lock.read_text())
    entry = doc["images"][board.image_url]
    assert entry["sha256"] == sha and entry["size"] == len(img) and entry["boards"] == [V3]
    assert "Commit this file" in doc["comment"]
    assert net.requests == [board.image_url]

    rc, out, err, flashed = _flash_image_only(V3, None, capsys)  # from the cache: checked, nothing said
    assert rc == 0 and err == "" and flashed[:len(img)] == img
    assert net.requests == [board.image_url]  # not downloaded again

    (tmp_path / "cache").rename(tmp_path / "cache-old")  # another bench: no cache, the committed lock
    rc, out, err, flashed = _flash_image_only(V3, None, capsys)
    assert rc == 0 and err == "" and flashed[:len(img)] == img
    assert net.requests == [board.image_url] * 2
    assert json.loads(lock.read_text()) == doc  # pinned once, never rewritten


@pytest.mark.parametrize("cached", [False, True], ids=["downloaded", "cached-copy-changed-too"])
def test_a_changed_image_is_refused_and_nothing_is_written_to_the_board(net, tmp_path, capsys, cached):
    board = get_board(V3)
    lock = tmp_path / "bench" / "images.lock"
    net.images[board.image_url] = fake_image(board.chip, 80_000)
    assert _flash_image_only(V3, lock, capsys)[0] == 0
    pinned = lock.read_text()
    changed = bytearray(net.images[board.image_url])
    changed[5000] ^= 0x01  # one bit: a rebuilt, replaced or tampered release under the same name
    net.images[board.image_url] = bytes(changed)
    cache = tmp_path / "cache" / "firmware" / board.image_url.rsplit("/", 1)[-1]
    if cached:
        cache.write_bytes(bytes(changed))
    else:
        cache.unlink()
    rc, out, err, flashed = _flash_image_only(V3, lock, capsys)
    assert rc == 1 and out == ""
    assert flashed == b"\xff" * len(flashed)  # nothing reached the board
    assert err.count("\n") == 1 and err.startswith(f"citynode flash: error: download of {board.image_url} has "
                                                   "SHA-256 ")
    assert (f"but {lock} pinned " in err and "the image changed since it was first flashed, not using it" in err
            and f"delete its entry from {lock} and run again" in err), err
    assert lock.read_text() == pinned
    assert not cache.exists()  # the changed image is not kept either


def test_a_download_that_is_no_image_for_the_boards_chip_is_refused_and_not_pinned(net, tmp_path, capsys):
    board = get_board(V3)
    lock = tmp_path / "images.lock"
    net.images[board.image_url] = b"<html>moved</html>"
    rc, out, err, flashed = _flash_image_only(V3, lock, capsys)
    assert rc == 1 and "is no ESP image (18 bytes starting 3c68746d6c3e6d6f), not an esp32s3 image" in err
    net.images[board.image_url] = fake_image("esp32", 4000)
    rc, out, err, flashed = _flash_image_only(V3, lock, capsys)
    assert rc == 1 and "is an esp32 image, not an esp32s3 image for board heltec-wifi-lora-32-v3" in err
    assert not lock.exists() and flashed == b"\xff" * len(flashed)


def test_a_board_file_that_pins_a_sha256_is_checked_against_it_and_the_lock_is_left_alone(net, tmp_path, capsys,
                                                                                        monkeypatch):
    import hashlib
    import shutil

    from citynode.device import boards

    folder = tmp_path / "boards"
    folder.mkdir()
    for f in boards.BOARDS_DIR.glob("*.json"):
        shutil.copy(f, folder / f.name)
    raw = json.loads((folder / "tbeam.json").read_text())
    img = fake_image("esp32", 50_000)
    raw["micropython"]["sha256"] = hashlib.sha256(img).hexdigest()
    (folder / "tbeam.json").write_text(json.dumps(raw))
    monkeypatch.setattr(boards, "BOARDS_DIR", folder)
    lock = tmp_path / "images.lock"
    net.images[raw["micropython"]["url"]] = img
    rc, out, err, flashed = _flash_image_only("tbeam", lock, capsys)
    assert rc == 0 and err == "" and flashed[0x1000:0x9000] == img[:0x8000]  # (NVS at 0x9000 is erased)
    assert not lock.exists()
    net.images[raw["micropython"]["url"]] = img[:-1] + b"\x00"
    (tmp_path / "cache").rename(tmp_path / "cache-old")
    rc, out, err, flashed = _flash_image_only("tbeam", lock, capsys)
    assert rc == 1 and "expected " + raw["micropython"]["sha256"] + " (board file tbeam); not using it" in err


def test_offline_an_image_cached_before_it_was_pinned_is_pinned_from_the_cache(net, tmp_path, capsys):
    board = get_board(V3)
    img = fake_image(board.chip, 30_000)
    cache = tmp_path / "cache" / "firmware" / board.image_url.rsplit("/", 1)[-1]
    cache.parent.mkdir(parents=True)
    cache.write_bytes(img)  # downloaded by an older citynode, which pinned nothing
    lock = tmp_path / "images.lock"
    rc, out, err, flashed = _flash_image_only(V3, lock, capsys, "--offline")
    assert rc == 0 and "pinned ESP32_GENERIC_S3-20250415-v1.25.0.bin sha256 " in err and net.requests == []
    assert json.loads(lock.read_text())["images"][board.image_url]["size"] == len(img)


def _help_examples() -> list[list[str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    text = sub.choices["flash"].description.split("Example:", 1)[1]
    return [shlex.split(line.strip())[1:] for line in text.strip().splitlines() if line.strip()]


@pytest.mark.mipindex
@pytest.mark.parametrize("example", _help_examples(), ids=lambda a: a[a.index("--board") + 1])
def test_every_help_example_of_flash_works_when_pasted(example, net, capsys):
    """Each example of `citynode flash --help` as printed, with the board in hand: /dev/ttyUSB0 is the
    simulated ROM loader, the REPL comes back on the virtual node's pty (--repl-port, as native USB does) and
    ~/mirror/micropython-lib is a local copy of the index. First use pins the image."""
    from citynode.sim.hwsim.vnode import VirtualNode

    name = example[example.index("--board") + 1]
    board = get_board(name)
    net.images[board.image_url] = fake_image(board.chip, 60_000)
    with Esp32RomSim(chip=board.chip, flash_size=SIZES[board.flash_size]) as sim, \
            VirtualNode(board=board.node_config()) as node:
        argv = [sim.url if a == "/dev/ttyUSB0" else str(MIP_INDEX) if a == "~/mirror/micropython-lib" else a
                for a in example]
        rc = main(argv + ["--repl-port", node.port, "--connect-attempts", "1"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"citynode flash: pinned {board.image_url.rsplit('/', 1)[-1]} sha256 " in out.err
    assert "verified" in out.out and "sensors       ok      firmware self-test: 0 failed" in out.out, out.out
