"""The device registry: a SQLite file of LoRaWAN identities (DevEUI, JoinEUI, AppKey) made with `secrets`.

The file holds root keys, so it is created with mode 0600 whatever the umask (SQLite gives its -wal and -shm
files the same mode) and a registry that others may read is refused. Several provisioning processes may use one
registry at once: the file is in WAL mode with a busy timeout, every write runs in a `BEGIN IMMEDIATE`
transaction, and DevEUIs are unique by a UNIQUE constraint (a random collision is retried with a new EUI), so
no write is lost and no DevEUI is ever handed out twice.

EUIs and keys are kept as upper-case hex, most significant byte first (the order people and network servers
print; the LoRaWAN MAC reverses EUIs on air). `Device.app_key` is left out of repr() so that a device in a
traceback or a log line never shows its key.
"""
from __future__ import annotations

import dataclasses
import os
import re
import secrets
import sqlite3
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

from citynode.errors import CitynodeError, InputError

# 2: the events table (an enclosure found open, ...). A registry of schema 1 gets it when this citynode opens it
# for writing; an older citynode refuses a registry of schema 2, so it cannot export a flagged device unawares.
SCHEMA_VERSION = 2
# what happened to a device, recorded with the time (Registry.record_event): opened: its enclosure was found open
# (its AppKey may be copied; flagged until cleared); cleared: that flag cleared; replaced: its node was given
# another identity (provision --replace; the note names it)
EVENTS = ("opened", "cleared", "replaced")
# new: created, not on a node yet; provisioned: written to a node and read back; failed: a node write failed
# (the node may hold part of it); retired: its node was given another identity (--replace)
STATUSES = ("new", "provisioned", "failed", "retired")
DEFAULT_JOIN_EUI = "0000000000000000"
BATCH = 500  # identities per write transaction: long enough to be fast, short enough not to starve others
_RETRIES = 64  # fresh random DevEUIs tried after a collision before giving up
_MAX_PREFIX_NIBBLES = 10  # a DevEUI prefix leaves at least 24 random bits
_HEX = re.compile(r"^[0-9A-F]*$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    seq INTEGER PRIMARY KEY,
    dev_eui TEXT NOT NULL UNIQUE CHECK (length(dev_eui) = 16),
    join_eui TEXT NOT NULL CHECK (length(join_eui) = 16),
    app_key TEXT NOT NULL CHECK (length(app_key) = 32),
    device_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    board TEXT,
    created TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('new', 'provisioned', 'failed', 'retired')),
    provisioned TEXT
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    dev_eui TEXT NOT NULL REFERENCES devices(dev_eui),
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    note TEXT
);
CREATE TABLE IF NOT EXISTS locations (
    dev_eui TEXT PRIMARY KEY REFERENCES devices(dev_eui),
    lat REAL NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon REAL NOT NULL CHECK (lon BETWEEN -180 AND 180),
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS command_counters (
    dev_eui TEXT PRIMARY KEY REFERENCES devices(dev_eui),
    sent INTEGER NOT NULL CHECK (sent BETWEEN 0 AND 4294967295),
    node INTEGER CHECK (node BETWEEN 0 AND 4294967295),
    challenge INTEGER CHECK (challenge BETWEEN 1 AND 4294967295),
    updated TEXT NOT NULL
);
"""


@dataclasses.dataclass(frozen=True)
class Device:
    """One identity of the registry (hex strings upper case, MSB first)."""

    dev_eui: str
    join_eui: str
    app_key: str = dataclasses.field(repr=False)
    device_id: str = ""
    name: str = ""
    board: str | None = None
    created: str = ""
    status: str = "new"
    provisioned: str | None = None


@dataclasses.dataclass(frozen=True)
class Event:
    """Something that happened to a device (EVENTS), with its UTC time and a note."""

    dev_eui: str
    kind: str
    at: str
    note: str | None = None


def norm_hex(text: str, nbytes: int | None, what: str) -> str:
    """`text` as upper-case hex without separators (`-`, `:`, spaces); InputError if it is not that long."""
    h = re.sub(r"[\s:\-]", "", text or "").upper()
    want = 2 * nbytes if nbytes is not None else None
    if not _HEX.match(h) or (want is not None and len(h) != want):
        size = f"{want} hex digits" if want is not None else "hex digits"
        raise InputError(f"{what} must be {size}, got {text!r}")
    return h


def new_dev_eui(prefix: str = "") -> str:
    """A random DevEUI: `prefix` (hex nibbles, e.g. an IEEE OUI you own) + random nibbles; with no prefix a
    random locally administered unicast EUI-64 (first octet: U/L bit 0x02 set, I/G bit 0x01 clear)."""
    if not prefix:
        b = bytearray(secrets.token_bytes(8))
        b[0] = (b[0] & 0xFC) | 0x02
        return b.hex().upper()
    free = 16 - len(prefix)
    return prefix + format(secrets.randbits(4 * free), f"0{free}X")


def new_app_key() -> str:
    return secrets.token_bytes(16).hex().upper()


def device_id_for(dev_eui: str) -> str:
    """The network-server device id: The Things Stack's own convention `eui-<dev_eui lower case>`."""
    return "eui-" + dev_eui.lower()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _open_private(path: Path) -> None:
    """Create `path` with mode 0600 (umask-proof) or check that an existing file is not open to others."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError as e:
            raise CitynodeError(f"cannot open registry {path}: {e.strerror}") from None
        if mode & 0o077:
            raise CitynodeError(f"registry {path} is readable by others (mode {mode:04o}); it holds root keys: "
                                f"chmod 600 {path}") from None
        return
    except FileNotFoundError:
        raise CitynodeError(f"cannot create registry {path}: folder {path.parent} does not exist") from None
    except PermissionError:
        raise CitynodeError(f"cannot create registry {path}: permission denied") from None
    try:
        os.fchmod(fd, 0o600)  # os.open's mode is filtered by the umask, which can only remove bits; be exact
    finally:
        os.close(fd)


class Registry:
    """A registry file. Use as a context manager or call close()."""

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0, create: bool = True, readonly: bool = False,
                 on_wait=None):
        """`readonly`: open for reading only (list, export, label), which works on a file or folder we may not
        write. `on_wait`: called once when another process holds the write lock and we start waiting for it."""
        self.path = Path(path)
        if (not create or readonly) and not self.path.exists():
            raise CitynodeError(f"registry {self.path} does not exist")
        self.timeout = timeout
        self.readonly = readonly
        self.on_wait = on_wait
        _open_private(self.path)  # (only checks the mode of an existing file: a registry open to others is refused)
        if readonly:
            self._db = self._connect_readonly()
        else:
            try:
                self._db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
            except sqlite3.Error as e:
                raise CitynodeError(f"cannot open registry {self.path}: {e}") from None
        self._db.row_factory = sqlite3.Row
        try:
            self._setup() if not readonly else self._check_schema()
        except sqlite3.DatabaseError as e:
            self._db.close()
            if "readonly" in str(e) or "read-only" in str(e):
                raise CitynodeError(f"registry {self.path} is read-only for this user: list, export and label "
                                    "work; changing it needs write access to the file and its folder") from None
            raise CitynodeError(f"registry {self.path} is not a citynode registry ({e})") from None

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri()
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=self.timeout, isolation_level=None)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError as e:
            if "unable to open" not in str(e) and "readonly" not in str(e):
                raise CitynodeError(f"registry {self.path} is not a citynode registry ({e})") from None
            # a WAL database whose shared-memory file we cannot make or write (a folder or file of another
            # user): read the file as it is on disk
            try:
                return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
            except sqlite3.Error as e:
                raise CitynodeError(f"cannot open registry {self.path}: {e}") from None
        except sqlite3.DatabaseError as e:
            raise CitynodeError(f"registry {self.path} is not a citynode registry ({e})") from None

    def _check_schema(self) -> None:
        ver = int(self._meta("schema") or 0)
        if ver == 0 or ver > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema {ver or 'missing'}")

    # -- set-up -----------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        deadline = time.monotonic() + self.timeout
        while True:  # switching a new file to WAL needs a moment alone with it; the busy handler does not wait
            try:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005 + secrets.randbelow(20) / 1000)
        if str(mode).lower() != "wal":
            raise CitynodeError(f"registry {self.path}: cannot use WAL mode (journal mode is {mode})")
        with self.transaction():
            for stmt in _SCHEMA.split(";"):  # not executescript(): it would COMMIT the open transaction
                if stmt.strip():
                    self._db.execute(stmt)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            ver = int(self._meta("schema") or 0)
            if ver < SCHEMA_VERSION:  # an older registry: the tables made above were its migration
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
        if ver > SCHEMA_VERSION:
            raise CitynodeError(f"registry {self.path} has schema {ver}; this citynode knows up to {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------------------------------------
    class _Txn:
        def __init__(self, reg: "Registry"):
            self.reg = reg
            self.db = reg._db

        def __enter__(self):
            reg = self.reg
            if reg.readonly:
                raise CitynodeError(f"registry {reg.path} was opened read-only")
            try:  # takes the write lock now; if another process has it, say so before waiting for it
                reg._db.execute("PRAGMA busy_timeout = 250")
                reg._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if reg.on_wait:
                    reg.on_wait()
                reg._db.execute(f"PRAGMA busy_timeout = {int(reg.timeout * 1000)}")
                try:
                    reg._db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as e2:
                    raise CitynodeError(f"registry {reg.path}: still locked by another process after "
                                        f"{reg.timeout:.0f} s ({e2})") from None
            finally:
                reg._db.execute(f"PRAGMA busy_timeout = {int(reg.timeout * 1000)}")
            return self.db

        def __exit__(self, exc_type, exc, tb):
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            return False

    def transaction(self) -> _Txn:
        return Registry._Txn(self)

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # -- settings ---------------------------------------------------------------------------------------------
    def settings(self) -> dict:
        """Defaults for new identities: join_eui (16 hex) and eui_prefix (0..10 hex nibbles)."""
        return {"join_eui": self._meta("join_eui") or DEFAULT_JOIN_EUI, "eui_prefix": self._meta("eui_prefix") or ""}

    def set_settings(self, join_eui: str | None = None, eui_prefix: str | None = None) -> dict:
        with self.transaction() as db:
            if join_eui is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('join_eui', ?)", (check_join_eui(join_eui),))
            if eui_prefix is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('eui_prefix', ?)", (check_prefix(eui_prefix),))
        return self.settings()

    # -- identities -------------------------------------------------------------------------------------------
    def create(self, count: int, board: str | None = None, join_eui: str | None = None,
               eui_prefix: str | None = None) -> list[Device]:
        """Create `count` new identities (status `new`) and return them. Each batch of up to BATCH identities is
        one transaction: if this raises, the identities already returned by earlier batches stay recorded."""
        if count < 1:
            raise InputError("the number of identities must be at least 1")
        cfg = self.settings()
        join = check_join_eui(join_eui) if join_eui is not None else cfg["join_eui"]
        prefix = check_prefix(eui_prefix) if eui_prefix is not None else cfg["eui_prefix"]
        made: list[Device] = []
        while len(made) < count:
            n = min(BATCH, count - len(made))
            with self.transaction() as db:
                batch = [self._insert(db, join, prefix, board) for _ in range(n)]
            made += batch
        return made

    def _insert(self, db: sqlite3.Connection, join_eui: str, prefix: str, board: str | None) -> Device:
        for _ in range(_RETRIES):
            dev_eui = new_dev_eui(prefix)
            dev = Device(dev_eui, join_eui, new_app_key(), device_id_for(dev_eui), device_id_for(dev_eui), board,
                         _now(), "new")
            try:
                db.execute("INSERT INTO devices (dev_eui, join_eui, app_key, device_id, name, board, created, status)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (dev.dev_eui, dev.join_eui, dev.app_key,
                                                                dev.device_id, dev.name, dev.board, dev.created,
                                                                dev.status))
                return dev
            except sqlite3.IntegrityError as e:  # a statement-level abort: the transaction goes on
                if "UNIQUE" not in str(e):
                    raise
        raise CitynodeError(f"no free DevEUI found under prefix {prefix!r} after {_RETRIES} tries; "
                            "use a shorter prefix")

    def get(self, dev_eui: str) -> Device:
        eui = norm_hex(dev_eui, 8, "DevEUI")
        row = self._db.execute("SELECT * FROM devices WHERE dev_eui = ?", (eui,)).fetchone()
        if row is None:
            raise CitynodeError(f"DevEUI {eui} is not in registry {self.path}")
        return _device(row)

    def devices(self, statuses=None) -> list[Device]:
        """All devices in creation order, optionally only those whose status is in `statuses`."""
        rows = self._db.execute("SELECT * FROM devices ORDER BY seq").fetchall()
        devs = [_device(r) for r in rows]
        return [d for d in devs if statuses is None or d.status in statuses]

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM devices").fetchone()[0]

    def set_status(self, dev_eui: str, status: str) -> Device:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        eui = norm_hex(dev_eui, 8, "DevEUI")
        with self.transaction() as db:
            cur = db.execute("UPDATE devices SET status = ?, provisioned = ? WHERE dev_eui = ?",
                             (status, _now() if status == "provisioned" else None, eui))
            if cur.rowcount != 1:
                raise CitynodeError(f"DevEUI {eui} is not in registry {self.path}")
        return self.get(eui)

    def set_location(self, dev_eui: str, lat: float, lon: float) -> None:
        """Where the node is mounted (WGS 84 degrees), e.g. for its SensorThings Location."""
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InputError(f"latitude {lat} / longitude {lon} is not a place on Earth (-90..90, -180..180)")
        eui = self.get(dev_eui).dev_eui
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO locations VALUES (?, ?, ?, ?)", (eui, lat, lon, _now()))

    def location(self, dev_eui: str) -> tuple[float, float] | None:
        """(lat, lon) set with set_location, or None."""
        row = self._db.execute("SELECT lat, lon FROM locations WHERE dev_eui = ?",
                               (norm_hex(dev_eui, 8, "DevEUI"),)).fetchone()
        return (row[0], row[1]) if row else None

    # -- downlink command counters (docs/downlink.md) ---------------------------------------------------------
    def command_counter(self, dev_eui: str) -> dict:
        """{"sent": the last counter given out, "node": the last the node reported (None: never), "challenge":
        from its last refusal (None: none, or used)} of a device."""
        eui = self.get(dev_eui).dev_eui
        try:
            sent, node, challenge = _counters(self._db, eui)
        except sqlite3.OperationalError:  # a read-only registry made before the table existed
            sent, node, challenge = 0, None, None
        return {"sent": sent, "node": node, "challenge": challenge}

    def take_command_counter(self, dev_eui: str, resync: bool = False) -> tuple[int, int | None]:
        """The counter for the next command to a device, recorded as given out: one above both the last given
        out and the last the node reported. resync=True: (0, the node's challenge) for a resync, which sets the
        node's counter to 0; raises CitynodeError when no challenge is known or the counters are used up."""
        eui = self.get(dev_eui).dev_eui
        with self.transaction() as db:
            sent, node, challenge = _counters(db, eui)
            if resync:
                if challenge is None:
                    raise CitynodeError(f"no challenge from {eui} yet: send it any command (status will do); it "
                                        "answers one it refuses with its counter and challenge; record that answer "
                                        "with `citynode command --status`, then resync")
                db.execute("INSERT OR REPLACE INTO command_counters VALUES (?, 0, NULL, NULL, ?)", (eui, _now()))
                return 0, challenge
            nxt = max(sent, node or 0) + 1
            if nxt > 0xFFFFFFFF:
                raise CitynodeError(f"the command counter of {eui} is used up (2^32-1): resync it first "
                                    "(`citynode command DEVICE resync`)")
            db.execute("INSERT OR REPLACE INTO command_counters VALUES (?, ?, ?, ?, ?)",
                       (eui, nxt, node, challenge, _now()))
            return nxt, None

    def record_command_status(self, dev_eui: str, status: dict) -> None:
        """What a status frame (decoded by citynode.payload.downlink.decode_status) says of the node's counter: an "ok"
        moves it to the command's counter; a refusal tells it (node_counter) and the challenge a resync needs,
        and the next command goes one above the node's counter."""
        eui = self.get(dev_eui).dev_eui
        with self.transaction() as db:
            sent, node, challenge = _counters(db, eui)
            if status.get("result") == "ok" and isinstance(status.get("counter"), int):
                node = status["counter"]
                if status.get("command") == "resync":
                    sent, challenge = node, None
            elif isinstance(status.get("node_counter"), int):
                node = sent = status["node_counter"]
                challenge = status.get("challenge") or challenge
            else:
                return
            db.execute("INSERT OR REPLACE INTO command_counters VALUES (?, ?, ?, ?, ?)",
                       (eui, sent, node, challenge, _now()))

    # -- events: an enclosure found open, its flag cleared, an identity replaced (docs/security.md) --------------
    def record_event(self, dev_eui: str, kind: str, note: str | None = None) -> Event:
        """Record that `kind` (EVENTS) happened to a device now; `note` is kept as one line."""
        if kind not in EVENTS:
            raise ValueError(f"event must be one of {EVENTS}")
        eui = self.get(dev_eui).dev_eui
        if note is not None:
            note = " ".join(note.split())[:500] or None
        ev = Event(eui, kind, _now(), note)
        with self.transaction() as db:
            db.execute("INSERT INTO events (dev_eui, kind, at, note) VALUES (?, ?, ?, ?)", (eui, kind, ev.at, note))
        return ev

    def events(self, dev_eui: str | None = None) -> list[Event]:
        """Every event (of one device), oldest first."""
        sql, args = "SELECT dev_eui, kind, at, note FROM events", ()
        if dev_eui is not None:
            sql, args = sql + " WHERE dev_eui = ?", (norm_hex(dev_eui, 8, "DevEUI"),)
        try:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        except sqlite3.OperationalError:  # a read-only registry made before the table existed: no events
            return []
        return [Event(r[0], r[1], r[2], r[3]) for r in rows]

    def flags(self) -> dict[str, Event]:
        """The devices flagged now: DevEUI -> its last `opened` event that no `cleared` event followed."""
        out: dict[str, Event] = {}
        for ev in self.events():
            if ev.kind == "opened":
                out[ev.dev_eui] = ev
            elif ev.kind == "cleared":
                out.pop(ev.dev_eui, None)
        return out

    def flag_opened(self, dev_eui: str, note: str | None = None) -> Event:
        """The device's enclosure was found open: its AppKey may be copied. `registry export` leaves it out and
        `provision --dev-eui` refuses it until its node gets a new identity (--replace) or the flag is cleared."""
        return self.record_event(dev_eui, "opened", note)

    def clear_flag(self, dev_eui: str, note: str | None = None) -> Event:
        eui = self.get(dev_eui).dev_eui
        if eui not in self.flags():
            raise CitynodeError(f"DevEUI {eui} is not flagged")
        return self.record_event(eui, "cleared", note)

    def set_board(self, dev_eui: str, board: str | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE devices SET board = ? WHERE dev_eui = ?", (board, norm_hex(dev_eui, 8, "DevEUI")))


def _counters(db: sqlite3.Connection, eui: str) -> tuple:
    """(sent, node, challenge) of a device's command counters; (0, None, None) before its first command."""
    row = db.execute("SELECT sent, node, challenge FROM command_counters WHERE dev_eui = ?", (eui,)).fetchone()
    return tuple(row) if row else (0, None, None)


def _device(row: sqlite3.Row) -> Device:
    return Device(row["dev_eui"], row["join_eui"], row["app_key"], row["device_id"], row["name"], row["board"],
                  row["created"], row["status"], row["provisioned"])


def check_join_eui(text: str) -> str:
    return norm_hex(text, 8, "JoinEUI")


def check_prefix(text: str) -> str:
    h = norm_hex(text, None, "DevEUI prefix")
    if len(h) > _MAX_PREFIX_NIBBLES:
        raise InputError(f"DevEUI prefix must be at most {_MAX_PREFIX_NIBBLES} hex digits (an OUI is 6), got {text!r}")
    return h
