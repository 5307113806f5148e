"""The durable, bounded telemetry queue: usage records waiting on disk to go to IoT Core.

SQLite in WAL mode. Each record is written in one transaction together with its place in
the bound: when the queue already holds `max_records`, the oldest records are deleted and
the number deleted is added to a lifetime counter kept in the `meta` table, so it survives
restarts and goes into the `dropped_records` field of the record being written (and of
every later one). Records leave the queue only through `delete`, which the sender calls
after the nucleus accepted the publish. Thread-safe: one connection behind a lock.
A file that is not a readable SQLite database is moved aside (and logged) rather than
stopping the component: search goes on, and telemetry starts a new queue.
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
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # locked, no permission: not the file's fault
                raise
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error("telemetry queue %s unreadable (%s: %s); moved to %s, starting a new one",
                      self.path, type(exc).__name__, exc, aside.name)
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.replace(Path(f"{aside}{suffix}"))
            self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are opened explicitly with BEGIN IMMEDIATE.
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a written record survives a power cut too
            db.executescript(_SCHEMA)
            db.execute("SELECT COUNT(*) FROM records").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    def put(self, record: UsageRecord, lost: int = 0) -> UsageRecord:
        """Queue `record`, dropping the oldest to stay within the bound; returns what was stored
        (the record with `dropped_records` set to the lifetime count, this drop included).
        `lost`: records that could not be queued before this one, added to that count."""
        with self._lock:
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            try:
                held = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
                dropped = self._dropped(db)
                excess = max(0, held - self.max_records + 1)
                if excess > 0:
                    db.execute("DELETE FROM records WHERE seq IN "
                               "(SELECT seq FROM records ORDER BY seq LIMIT ?)", (excess,))
                if excess or lost:
                    dropped += excess + lost
                    db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                               "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (DROPPED, dropped))
                stored = dataclasses.replace(record, dropped_records=dropped)
                db.execute("INSERT INTO records (record_id, payload) VALUES (?, ?)",
                           (stored.record_id, stored.to_json()))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return stored

    def oldest(self, limit: int = 1) -> list[QueuedRecord]:
        with self._lock:
            rows = self._open().execute("SELECT seq, record_id, payload FROM records ORDER BY seq LIMIT ?",
                                        (limit,)).fetchall()
        return [QueuedRecord(seq, record_id, bytes(payload)) for seq, record_id, payload in rows]

    def delete(self, seq: int) -> None:
        """Remove a sent record (a no-op if an overflow already dropped it)."""
        with self._lock:
            self._open().execute("DELETE FROM records WHERE seq = ?", (seq,))

    def __len__(self) -> int:
        with self._lock:
            return self._open().execute("SELECT COUNT(*) FROM records").fetchone()[0]

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
