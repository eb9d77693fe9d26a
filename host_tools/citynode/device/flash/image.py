"""The MicroPython image: fetched (--firmware FILE, or the board's, cached), checked against its pin, the chip
it is built for."""
from __future__ import annotations

import hashlib
import os
import struct
import sys
import urllib.error
import urllib.request
from pathlib import Path

from citynode.device import imagelock
from citynode.device.boards import Board
from citynode.device.flash.errors import FlashError

IMAGE_CHIP_IDS = {0: "esp32", 9: "esp32s3", 2: "esp32s2", 5: "esp32c3", 13: "esp32c6"}  # ESP image header chip id


def cache_dir() -> Path:
    env = os.environ.get("CITYNODE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "citynode"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_image(board: Board, firmware: str | os.PathLike | None = None, cache: Path | None = None,
                offline: bool = False, allow_unpinned: bool = False,
                images_lock: str | os.PathLike | None = None) -> tuple[bytes, str]:
    """The image bytes and where they came from: --firmware FILE, or the board's image (cached). Its SHA-256 is
    the board file's, or else the one pinned on first use in the image lock (citynode.device.imagelock): the first
    download of an image that has neither is pinned there and said once on stderr. (`allow_unpinned` is kept
    for old callers and changes nothing: every downloaded image is pinned.)"""
    if firmware is not None:
        try:
            data = Path(firmware).read_bytes()
        except OSError as e:
            raise FlashError(f"cannot read firmware {firmware}: {e.strerror}") from None
        if not data:
            raise FlashError(f"firmware {firmware} is empty")
        return data, str(firmware)
    url, want = board.image_url, board.image_sha256
    name = url.rsplit("/", 1)[-1]
    lock = imagelock.lock_path(images_lock)
    entry = imagelock.pinned(url, lock) if want is None else None  # a board file's pin is the one that counts
    if entry is not None:
        want = entry["sha256"]
    cache = cache if cache is not None else cache_dir()
    path = cache / "firmware" / name
    if path.exists() and (want is not None or offline):  # an image pinned nowhere yet is downloaded afresh
        data = path.read_bytes()
        if want is None or sha256_hex(data) == want:
            if want is None:
                _pin(board, url, name, data, lock)
            return data, str(path)
        path.unlink()  # a damaged or stale download: fetch it again
    if offline:
        raise FlashError(f"the MicroPython image for {board.name} is not cached ({path}) and --offline was given; "
                         "download it once with network access or give --firmware FILE")
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            data = r.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise FlashError(f"cannot download {url} ({reason}); without network give --firmware FILE") from None
    got = sha256_hex(data)
    if entry is not None and got != want:
        raise FlashError(f"download of {url} has SHA-256 {got}, but {lock} pinned {want} for it on "
                         f"{entry.get('pinned', '?')}: the image changed since it was first flashed, not using it "
                         f"(if the change is expected, delete its entry from {lock} and run again)")
    if want is not None and got != want:
        raise FlashError(f"download of {url} has SHA-256 {got}, expected {want} (board file {board.name}); "
                         "not using it")
    if want is None:
        found = image_chip(data)
        if found != board.chip:
            what = f"an {found} image" if found else f"no ESP image ({len(data)} bytes starting {data[:8].hex()})"
            raise FlashError(f"download of {url} is {what}, not an {board.chip} image for board {board.name}; "
                             "not using it and not pinning it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    if want is None:
        _pin(board, url, name, data, lock)
    return data, str(path)


def _pin(board: Board, url: str, name: str, data: bytes, lock: Path) -> None:
    """Pin a downloaded image on first use; say so once (the later flashes verify against it silently)."""
    try:
        entry, new = imagelock.pin(url, sha256_hex(data), len(data), board.name, lock)
    except imagelock.ImageLockError as e:
        raise FlashError(str(e)) from None
    if entry["sha256"] != sha256_hex(data):  # another bench pinned it a moment ago, with another hash
        raise FlashError(f"{url} has SHA-256 {sha256_hex(data)}, but {lock} pinned {entry['sha256']} for it on "
                         f"{entry.get('pinned', '?')}: not using it (if the change is expected, delete its entry "
                         f"from {lock} and run again)")
    if new:
        sys.stderr.write(f"citynode flash: pinned {name} sha256 {entry['sha256']} in {lock}; commit this file\n")


def image_chip(data: bytes) -> str | None:
    """The chip an ESP app/bootloader image is built for (extended header chip id), None if not an image."""
    if len(data) < 24 or data[0] != 0xE9:
        return None
    (chip_id,) = struct.unpack_from("<H", data, 12)
    return IMAGE_CHIP_IDS.get(chip_id, f"chip id {chip_id}")
