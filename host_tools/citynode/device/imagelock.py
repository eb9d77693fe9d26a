"""MicroPython images pinned on first use: the lock file `citynode flash` keeps (citynode-images.lock).

A board file may pin the SHA-256 of its MicroPython image (boards/*.json, "micropython": {"sha256": ...}); then
that pin is the one checked. None of ours does, so the hash is taken when a bench first downloads an image, recorded
here and shown once (trust on first use: the first download is trusted as it is). Every later flash of that image
(from the download cache or downloaded again) must have the same hash, or it is refused. The file is meant to be
committed with the bench's scripts, so that every bench and CI run flashes the image that was first seen.

The file is JSON: {"comment": "...", "images": {URL: {"sha256": hex, "size": bytes, "pinned": UTC time,
"boards": [names]}}}. Where it lives: --images-lock FILE, else $CITYNODE_IMAGES_LOCK, else citynode-images.lock in
the current directory.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from citynode.errors import CitynodeError

DEFAULT_NAME = "citynode-images.lock"
COMMENT = ("SHA-256 of the MicroPython images `citynode flash` downloaded, pinned on first use. Commit this file: "
           "citynode flash refuses an image whose SHA-256 differs from its entry here. To move to a changed image on "
           "purpose, delete its entry and flash again (the new hash is then pinned and shown).")


class ImageLockError(CitynodeError):
    pass


def lock_path(path: str | os.PathLike | None = None) -> Path:
    """--images-lock FILE, else $CITYNODE_IMAGES_LOCK, else ./citynode-images.lock."""
    if path is not None:
        return Path(path)
    env = os.environ.get("CITYNODE_IMAGES_LOCK")
    return Path(env) if env else Path(DEFAULT_NAME)


def _read(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"comment": COMMENT, "images": {}}
    except OSError as e:
        raise ImageLockError(f"cannot read the image lock {path} ({e.strerror})") from None
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ImageLockError(f"the image lock {path} is not valid JSON ({e}); fix it or restore it from version "
                             "control") from None
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) and len(v["sha256"]) == 64
            for v in images.values()):
        raise ImageLockError(f"the image lock {path} is malformed (expected {{\"images\": {{URL: {{\"sha256\": "
                             "...}}}}}); fix it or restore it from version control")
    return doc


def pinned(url: str, path: str | os.PathLike | None = None) -> dict | None:
    """The lock's entry for the image at `url` ({"sha256", "size", "pinned", "boards"}), or None."""
    return _read(lock_path(path))["images"].get(url)


@contextlib.contextmanager
def _exclusive(path: Path):
    """Serialise writers (two benches flashing at once): an advisory lock on a side file, where there is fcntl."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic replace below still keeps the file whole
        yield
        return
    side = path.with_name(path.name + ".lck")
    with open(side, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def pin(url: str, sha256: str, size: int, board: str, path: str | os.PathLike | None = None) -> tuple[dict, bool]:
    """Record `sha256` for the image at `url`, unless the lock has an entry for it already. Returns (the entry,
    whether it is new). An existing entry is never changed here: a different hash is the caller's error to raise."""
    p = lock_path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(p):
            doc = _read(p)
            entry = doc["images"].get(url)
            if entry is not None:
                if board not in entry.setdefault("boards", []) and entry["sha256"] == sha256:
                    entry["boards"] = sorted(entry["boards"] + [board])
                    _write(p, doc)
                return entry, False
            entry = {"sha256": sha256, "size": size, "pinned": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "boards": [board]}
            doc["images"][url] = entry
            _write(p, doc)
            return entry, True
    except OSError as e:
        raise ImageLockError(f"cannot write the image lock {p} ({e.strerror}); give --images-lock FILE in a "
                             "writable place") from None


def _write(path: Path, doc: dict) -> None:
    doc = {"comment": doc.get("comment", COMMENT), "images": dict(sorted(doc["images"].items())),
           **{k: v for k, v in doc.items() if k not in ("comment", "images")}}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
