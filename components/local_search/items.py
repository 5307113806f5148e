"""The metadata half of an index bundle: items.sqlite and thumbnails, without the faiss index.

The display needs only this (cards, keyword search, pictures), so it does not load a second
copy of the index; `IndexBundle` (search.py) adds the index on top for local_search.
"""
from __future__ import annotations

import json
import re
import sqlite3
import threading
from pathlib import Path

from components.common.bundle import INDEX_FILE, ITEMS_FILE, verify_bundle

ITEM_COLUMNS = ("item_id", "title", "category", "price", "location", "url", "image", "thumbnail", "extra")


class ItemStore:
    """Item metadata of a verified bundle. Thread-safe."""

    def __init__(self, path: Path, manifest: dict, db: sqlite3.Connection):
        self.path = path
        self.manifest = manifest
        self._db = db
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, expected_fingerprint: str | None = None) -> "ItemStore":
        """Verify every file but the faiss index, then open the item table read-only."""
        path = Path(path).resolve()
        manifest = verify_bundle(path, expected_fingerprint, skip=(INDEX_FILE,))
        return cls(path, manifest, connect_items(path))

    @property
    def version(self) -> int:
        return self.manifest["index_version"]

    @property
    def model_fingerprint(self) -> str:
        return self.manifest["model"]["fingerprint"]

    def __len__(self) -> int:
        return self.manifest["item_count"]

    def items(self, faiss_ids: list[int]) -> dict[int, dict]:
        """Metadata rows by faiss id."""
        if not faiss_ids:
            return {}
        marks = ",".join("?" * len(faiss_ids))
        with self._lock:
            fetched = self._db.execute(
                f"SELECT faiss_id, {', '.join(ITEM_COLUMNS)} FROM items WHERE faiss_id IN ({marks})",
                faiss_ids).fetchall()
        rows = {}
        for faiss_id, *values in fetched:
            item = dict(zip(ITEM_COLUMNS, values))
            item["extra"] = json.loads(item["extra"] or "{}")
            rows[faiss_id] = item
        return rows

    def keyword_search(self, text: str, limit: int = 50) -> list[int]:
        """faiss ids of items whose title, category, location or metadata contain every word
        of `text` (prefix match: "jack" finds "jacket"), best keyword match first."""
        words = [w for w in re.findall(r"\w+", text.lower()) if w]
        if not words:
            raise ValueError("keyword search needs at least one word")
        query = " ".join(f'"{w}"*' for w in words)
        with self._lock:
            rows = self._db.execute("SELECT rowid FROM items_fts WHERE items_fts MATCH ? ORDER BY rank LIMIT ?",
                                    (query, int(limit))).fetchall()
        return [row[0] for row in rows]

    def thumbnail_path(self, item: dict) -> Path | None:
        return self.path / item["thumbnail"] if item.get("thumbnail") else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def connect_items(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path / ITEMS_FILE}?mode=ro", uri=True, check_same_thread=False)
