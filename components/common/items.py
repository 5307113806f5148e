"""The items table of an index bundle (items.sqlite): its schema, its writer and its reader.

build-index writes it (`write_items`); local_search and the display read it (`ItemStore`),
so the table written in the cloud and the one read on the device cannot drift apart.
Row `faiss_id` = i describes row i of the faiss index. The display reads only this and
the thumbnails, so it does not load a second copy of the index; local_search's
`IndexBundle` adds the index on top.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from pathlib import Path

from components.common.bundle import INDEX_FILE, ITEMS_FILE, verify_bundle
from components.common.messages import ITEM_FIELDS

# What a match shows (messages.Match), plus what stays in the bundle: the catalog image it
# was made from and the catalog's other columns (a JSON object).
ITEM_COLUMNS = (*ITEM_FIELDS, "image", "extra")

# Bundles already on devices were written with this table: change it only with the bundle
# FORMAT_VERSION (components/common/bundle.py).
ITEMS_TABLE = """CREATE TABLE items (
    faiss_id INTEGER PRIMARY KEY, item_id TEXT NOT NULL UNIQUE, title TEXT NOT NULL,
    category TEXT, price TEXT, location TEXT, url TEXT, image TEXT, thumbnail TEXT,
    extra TEXT NOT NULL DEFAULT '{}')"""
# keyword search over what a shopper or staff member would type (title, category, ...)
ITEMS_SEARCH_TABLE = """CREATE VIRTUAL TABLE items_fts USING fts5(
    item_id, title, category, location, extra, content='items', content_rowid='faiss_id',
    tokenize='unicode61 remove_diacritics 2')"""
# A keyword search costs about (distinct words) x (items); more words than a person types
# only make it slower (repeats of one word cost quadratically in FTS5), so the text is capped.
MAX_KEYWORDS = 16  # distinct words searched at once
MAX_KEYWORD_BYTES = 512  # of the text typed (UTF-8)


class KeywordError(ValueError):
    """Keywords that cannot be searched: no words, too many, or too long a text."""


def write_items(path: Path, rows: list[dict]) -> None:
    """Write items.sqlite at `path`: `rows[i]` (a dict with every ITEM_COLUMNS key) gets faiss_id i."""
    for i, row in enumerate(rows):
        missing = [name for name in ITEM_COLUMNS if name not in row]
        if missing:
            raise ValueError(f"item row {i} ({row.get('item_id', '?')}) lacks {', '.join(missing)}")
    db = sqlite3.connect(path)
    try:
        db.execute(ITEMS_TABLE)
        columns = ("faiss_id", *ITEM_COLUMNS)
        db.executemany(
            f"INSERT INTO items ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [_values(i, row) for i, row in enumerate(rows)],
        )
        db.execute(ITEMS_SEARCH_TABLE)
        db.execute("INSERT INTO items_fts(items_fts) VALUES ('rebuild')")
        db.commit()
    finally:
        db.close()


def _values(faiss_id: int, row: dict) -> tuple:
    """One row in ("faiss_id", *ITEM_COLUMNS) order."""
    return (
        faiss_id,
        *(row[name] for name in ITEM_FIELDS),
        row["image"],
        json.dumps(row["extra"], ensure_ascii=False),
    )


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
        """Rows by faiss id, each a dict of ITEM_COLUMNS (`extra` decoded)."""
        if not faiss_ids:
            return {}
        marks = ",".join("?" * len(faiss_ids))
        with self._lock:
            fetched = self._db.execute(
                f"SELECT faiss_id, {', '.join(ITEM_COLUMNS)} FROM items WHERE faiss_id IN ({marks})",
                faiss_ids,
            ).fetchall()
        rows = {}
        for faiss_id, *values in fetched:
            item = dict(zip(ITEM_COLUMNS, values))
            item["extra"] = json.loads(item["extra"] or "{}")
            rows[faiss_id] = item
        return rows

    def keyword_search(self, text: str, limit: int = 50) -> list[int]:
        """faiss ids of items whose title, category, location or metadata contain every word
        of `text` (prefix match: "jack" finds "jacket"), best keyword match first.

        KeywordError for text without words or over the caps. Runs on a connection of its own,
        so a search never makes other reads of the store wait."""
        query = keyword_query(text)
        db = connect_items(self.path)
        try:
            rows = db.execute(
                "SELECT rowid FROM items_fts WHERE items_fts MATCH ? ORDER BY rank LIMIT ?",
                (query, int(limit)),
            ).fetchall()
        finally:
            db.close()
        return [row[0] for row in rows]

    def thumbnail_path(self, item: dict) -> Path | None:
        return self.path / item["thumbnail"] if item.get("thumbnail") else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def keyword_query(text: str) -> str:
    """The FTS5 query for `text`: each distinct word once, as a prefix (KeywordError if none or too many)."""
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_KEYWORD_BYTES:
        raise KeywordError(f"the keywords are {size} bytes long; the limit is {MAX_KEYWORD_BYTES} bytes")
    words = list(dict.fromkeys(re.findall(r"\w+", text.lower())))
    if not words:
        raise KeywordError("the keywords hold no words to search for (at least one word is needed)")
    if len(words) > MAX_KEYWORDS:
        raise KeywordError(f"{len(words)} different words; search with at most {MAX_KEYWORDS}")
    return " ".join(f'"{w}"*' for w in words)


def connect_items(path: Path) -> sqlite3.Connection:
    """items.sqlite of the bundle at `path`, read-only, usable from several threads (under a lock)."""
    return sqlite3.connect(f"file:{path / ITEMS_FILE}?mode=ro", uri=True, check_same_thread=False)
