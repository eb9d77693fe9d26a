"""What the bridge has delivered, on disk: uplinks by (device, FCnt) for dropping redeliveries across restarts,
and per device the highest FCnt and the gaps below it, for counting uplinks lost before they reached us."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uplinks(device TEXT, fcnt INTEGER, digest BLOB, at REAL,
                                   PRIMARY KEY(device, fcnt)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices(device TEXT PRIMARY KEY, top INTEGER, session TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gaps(device TEXT, lo INTEGER, hi INTEGER, since REAL, PRIMARY KEY(device, lo))
                                WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uplinks_at ON uplinks(at);
"""
RESET_BELOW = 1024  # without a session id: an FCnt this far below the highest seen starts a new session


class StateError(Exception):
    pass


class DeliveryState:
    """SQLite at `path` (None: in memory, for one process's life). Several bridges on one host may share a
    file: each batch is one transaction. `keep_s`: how long a delivered uplink is remembered (longer than
    the broker keeps a session, so that anything it can redeliver is recognised)."""

    def __init__(self, path: str | Path | None = None, keep_s: float = 7 * 86400):
        self.path = str(path) if path else ":memory:"
        self.keep_s = keep_s
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a crash of the process
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise StateError(f"bridge state {self.path}: {e}") from None
        self._pruned = 0.0

    def close(self) -> None:
        self.db.close()

    def delivered(self, device: str, fcnt: int, digest: bytes) -> bool:
        """True if this very uplink (same device, FCnt and payload) was delivered before. The same FCnt with
        another payload is a device that re-joined and counts from 0 again: not a duplicate."""
        row = self.db.execute("SELECT digest FROM uplinks WHERE device=? AND fcnt=?", (device, fcnt)).fetchone()
        return row is not None and row[0] == digest

    def record(self, uplinks: list[tuple[str, int, bytes, str | None]], now: float | None = None) -> int:
        """Remember delivered uplinks (device, fcnt, digest, session id or None) in one transaction, tracking
        each device's FCnt; returns the number of uplinks that turned out late (below the highest FCnt, in no
        open gap: delivered, but after their gap had been reported)."""
        now = time.time() if now is None else now
        late = 0
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for device, fcnt, digest, session in sorted(uplinks, key=lambda u: (u[0], u[1])):
                db.execute("INSERT OR REPLACE INTO uplinks VALUES (?,?,?,?)", (device, fcnt, digest, now))
                late += self._track(device, fcnt, session, now)
            if now - self._pruned > 600:
                db.execute("DELETE FROM uplinks WHERE at < ?", (now - self.keep_s,))
                self._pruned = now
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return late

    def _track(self, device: str, fcnt: int, session: str | None, now: float) -> int:
        db = self.db
        row = db.execute("SELECT top, session FROM devices WHERE device=?", (device,)).fetchone()
        if row is None:
            db.execute("INSERT INTO devices VALUES (?,?,?)", (device, fcnt, session))
            return 0
        top, old_session = row
        if (session and old_session and session != old_session) or (not session and fcnt + RESET_BELOW < top):
            # a new session (re-join): FCnt starts again; what was still missing from the old one stays open
            db.execute("UPDATE devices SET top=?, session=? WHERE device=?", (fcnt, session, device))
            return 0
        if session and not old_session:
            db.execute("UPDATE devices SET session=? WHERE device=?", (session, device))
        if fcnt > top:
            if fcnt > top + 1:
                db.execute("INSERT OR REPLACE INTO gaps VALUES (?,?,?,?)", (device, top + 1, fcnt - 1, now))
            db.execute("UPDATE devices SET top=? WHERE device=?", (fcnt, device))
            return 0
        if fcnt == top:
            return 0
        gap = db.execute("SELECT lo, hi, since FROM gaps WHERE device=? AND lo<=? AND hi>=?",
                         (device, fcnt, fcnt)).fetchone()
        if gap is None:
            return 1
        lo, hi, since = gap
        db.execute("DELETE FROM gaps WHERE device=? AND lo=?", (device, lo))
        if lo < fcnt:
            db.execute("INSERT INTO gaps VALUES (?,?,?,?)", (device, lo, fcnt - 1, since))
        if fcnt < hi:
            db.execute("INSERT INTO gaps VALUES (?,?,?,?)", (device, fcnt + 1, hi, since))
        return 0

    def open_gaps(self, older_than: float) -> list[tuple[str, int, int]]:
        """Gaps (device, first FCnt, last FCnt) open since before `older_than` (a time.time())."""
        return self.db.execute("SELECT device, lo, hi FROM gaps WHERE since < ? ORDER BY device, lo",
                               (older_than,)).fetchall()

    def close_gaps(self, gaps: list[tuple[str, int, int]]) -> None:
        """Forget gaps once reported."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("DELETE FROM gaps WHERE device=? AND lo=? AND hi=?", gaps)
        self.db.execute("COMMIT")
