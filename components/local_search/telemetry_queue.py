"""The durable, bounded telemetry queue: usage records waiting on disk to go to IoT Core.

SQLite in WAL mode. Each record is written in one transaction together with its place in
the bound: when the queue already holds `max_records`, the oldest records are deleted and
the number deleted is added to a lifetime counter kept in the `meta` table, so it survives
restarts and goes into the `dropped_records` field of the record being written (and of
every later one). Records leave the queue only through `delete`, which the sender calls
after the nucleus accepted the publish. Thread-safe: one connection behind a lock.

A damaged file (not a SQLite database, an integrity check that fails at open, or a read
that finds a malformed page later) is moved aside as `<name>.corrupt-<time>` (and logged)
rather than stopping the component: search goes on, and telemetry starts a new queue whose
`dropped_records` carries on from the old lifetime count plus the records stuck in the
damaged file (as far as they can still be counted). A write that fails for want of space
raises (sqlite3.OperationalError) with the queue unchanged; the caller counts that record.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from pathlib import Path

from components.common.telemetry import UsageRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
DROPPED = "dropped_records"
log = logging.getLogger("local_search.telemetry")


@dataclasses.dataclass(frozen=True)
class QueuedRecord:
    seq: int
    record_id: str
    payload: bytes


class TelemetryQueue:
    def __init__(self, db_path: Path, max_records: int):
        if max_records < 1:
            raise ValueError(f"max_records must be at least 1, not {max_records}")
        self.path = Path(db_path)
        self.max_records = int(max_records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):  # locked, no permission, disk full: not the file's fault
                raise
            self._db = self._replace(exc)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are opened explicitly with BEGIN IMMEDIATE.
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a written record survives a power cut too
            db.executescript(_SCHEMA)
            problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError(f"integrity check failed: {'; '.join(problems)}")
            db.execute("SELECT COUNT(*) FROM records").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    def _replace(self, exc: Exception) -> sqlite3.Connection:
        """Move the damaged file aside and start a new queue that carries its counts on."""
        if self._db is not None:
            self._db.close()
            self._db = None
        carried = _countable(self.path)
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        log.error(
            "telemetry queue %s damaged (%s: %s); moved to %s, starting a new one (%d record(s) "
            "counted as dropped)",
            self.path,
            type(exc).__name__,
            exc,
            aside.name,
            carried,
        )
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.replace(Path(f"{aside}{suffix}"))
        db = self._connect()
        if carried:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (DROPPED, carried))
        return db

    def _unless_damaged(self, operation, otherwise):
        """`operation()` (under the lock); if it finds the file damaged, the queue is replaced
        by a new one and `otherwise` is returned."""
        try:
            return operation()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc) or self._db is None:
                raise
            self._db = self._replace(exc)
            return otherwise

    def put(self, record: UsageRecord, lost: int = 0) -> UsageRecord:
        """Queue `record`, dropping the oldest to stay within the bound; returns what was stored
        (the record with `dropped_records` set to the lifetime count, this drop included).
        `lost`: records that could not be queued before this one, added to that count.
        A damaged queue is replaced and the record goes into the new one."""
        with self._lock:
            stored = self._unless_damaged(lambda: self._put(record, lost), None)
            return stored if stored is not None else self._put(record, lost)

    def _put(self, record: UsageRecord, lost: int) -> UsageRecord:
        db = self._open()
        db.execute("BEGIN IMMEDIATE")
        try:
            held = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            dropped = self._dropped(db)
            excess = max(0, held - self.max_records + 1)
            if excess > 0:
                db.execute(
                    "DELETE FROM records WHERE seq IN " "(SELECT seq FROM records ORDER BY seq LIMIT ?)",
                    (excess,),
                )
            if excess or lost:
                dropped += excess + lost
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (DROPPED, dropped),
                )
            stored = dataclasses.replace(record, dropped_records=dropped)
            db.execute(
                "INSERT INTO records (record_id, payload) VALUES (?, ?)", (stored.record_id, stored.to_json())
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                db.execute("ROLLBACK")
            raise
        return stored

    def oldest(self, limit: int = 1) -> list[QueuedRecord]:
        with self._lock:
            rows = self._unless_damaged(lambda: self._read_oldest(limit), [])
        return [QueuedRecord(seq, record_id, bytes(payload)) for seq, record_id, payload in rows]

    def _read_oldest(self, limit: int) -> list[tuple]:
        return (
            self._open()
            .execute("SELECT seq, record_id, payload FROM records ORDER BY seq LIMIT ?", (limit,))
            .fetchall()
        )

    def delete(self, queued: QueuedRecord) -> None:
        """Remove a sent record (a no-op if an overflow already dropped it, or the queue it was
        read from has been replaced since)."""
        with self._lock:
            self._unless_damaged(
                lambda: self._open().execute(
                    "DELETE FROM records WHERE seq = ? AND record_id = ?", (queued.seq, queued.record_id)
                ),
                None,
            )

    def __len__(self) -> int:
        with self._lock:
            return self._unless_damaged(
                lambda: self._open().execute("SELECT COUNT(*) FROM records").fetchone()[0], 0
            )

    @property
    def dropped(self) -> int:
        """Records dropped by overflow over the device's whole life."""
        with self._lock:
            return self._dropped(self._open())

    @property
    def closed(self) -> bool:
        return self._db is None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError(f"telemetry queue {self.path} is closed")
        return self._db

    @staticmethod
    def _dropped(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (DROPPED,)).fetchone()
        return int(row[0]) if row else 0


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """The file itself is bad (not a database, malformed), as opposed to locked, read-only or full."""
    return not isinstance(exc, sqlite3.OperationalError)


def _countable(path: Path) -> int:
    """Best effort: the lifetime dropped count plus the records in a damaged queue file."""
    total = 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return 0
    try:
        for query in ("SELECT value FROM meta WHERE key = 'dropped_records'", "SELECT COUNT(*) FROM records"):
            try:
                row = db.execute(query).fetchone()
                total += int(row[0]) if row else 0
            except (sqlite3.Error, TypeError, ValueError):
                continue
    finally:
        db.close()
    return total
