"""The items table of an index bundle (items.sqlite): its schema, its writer and its reader.

build-index writes it (`write_items`); local_search and the display read it (`ItemStore`),
so the table written in the cloud and the one read on the device cannot drift apart.
Row `faiss_id` = i describes row i of the faiss index: one picture. Rows that share an
`item_id` are one product with several pictures (each row repeats the product's fields).
The display reads only this and the thumbnails, so it does not load a second copy of the
index; local_search's `IndexBundle` adds the index on top.

Bundles stay format 1 both ways: the table is the same, only `item_id` is no longer unique.
An older device shows each picture of a product as its own result; this code reads older
bundles (one picture per product) as they are.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.common.bundle import INDEX_FILE, ITEMS_FILE, RERANK_FILE, verify_bundle
from components.common.catalog_filter import (
    KeywordIndex,
    LabelError,
    label_columns,
    parse_labels,
    product_text,
)
from components.common.messages import ITEM_FIELDS

# What a match shows (messages.Match), plus what stays in the bundle: the catalog image it
# was made from and the catalog's other columns (a JSON object).
ITEM_COLUMNS = (*ITEM_FIELDS, "image", "extra")

# Bundles already on devices were written with this table: change it only with the bundle
# FORMAT_VERSION (components/common/bundle.py).
ITEMS_TABLE = """CREATE TABLE items (
    faiss_id INTEGER PRIMARY KEY, item_id TEXT NOT NULL, title TEXT NOT NULL,
    category TEXT, price TEXT, location TEXT, url TEXT, image TEXT, thumbnail TEXT,
    extra TEXT NOT NULL DEFAULT '{}')"""
# Written for devices that still search keywords with it; this code searches products in
# memory (components/common/catalog_filter.py), so hidden columns are never matched.
ITEMS_SEARCH_TABLE = """CREATE VIRTUAL TABLE items_fts USING fts5(
    item_id, title, category, location, extra, content='items', content_rowid='faiss_id',
    tokenize='unicode61 remove_diacritics 2')"""


@dataclass(frozen=True)
class Products:
    """The products of a bundle: pictures grouped by item_id, in faiss id order."""

    rows: list[dict]  # one per product: its first picture's row (ITEM_COLUMNS + faiss_id)
    product_of: np.ndarray  # faiss id -> position in `rows`
    pictures: list[list[int]]  # position -> faiss ids of its pictures
    keywords: KeywordIndex
    columns: list[dict[str, str]]  # position -> label_columns(row)

    @property
    def most_pictures(self) -> int:
        return max((len(p) for p in self.pictures), default=1)

    def faiss_ids(self, positions) -> np.ndarray:
        """Every picture of the products at `positions`, ascending."""
        ids = [fid for position in positions for fid in self.pictures[position]]
        return np.array(sorted(ids), dtype=np.int64)


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
        self._products: Products | None = None
        self._products_lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, expected_fingerprint: str | None = None) -> "ItemStore":
        """Verify every file but the faiss index and its re-rank vectors, then open the item table
        read-only."""
        path = Path(path).resolve()
        manifest = verify_bundle(path, expected_fingerprint, skip=(INDEX_FILE, RERANK_FILE))
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

    def products(self) -> Products:
        """Pictures grouped into products, read once (on a connection of its own, so it never
        makes other reads of the store wait)."""
        with self._products_lock:
            if self._products is None:
                self._products = _read_products(self.path)
            return self._products

    def keyword_search(self, text: str, limit: int = 50) -> list[int]:
        """faiss ids of the products whose shown text (catalog_filter.KEYWORD_COLUMNS) holds
        every word of `text`, most relevant first, one (its first picture) per product.

        KeywordError for text without words or over the caps."""
        products = self.products()
        return [products.pictures[p][0] for p in products.keywords.search(text)[: int(limit)]]

    def filter_ids(self, keywords: str = "", labels: str = "") -> np.ndarray:
        """faiss ids of every picture of the products that pass both hard filters (an empty
        one passes everything), ascending. KeywordError or LabelError for a filter that
        cannot be applied, e.g. a label on a column no product has."""
        products = self.products()
        passing = range(len(products.rows))
        if keywords.strip():
            passing = sorted(products.keywords.search(keywords))
        if labels.strip():
            expression = parse_labels(labels)
            known = set().union(*products.columns) if products.columns else set()
            unknown = sorted(expression.keys() - known)
            if unknown:
                raise LabelError(
                    f"label filter {labels!r}: no product has a column {', '.join(map(repr, unknown))} "
                    f"(columns: {', '.join(sorted(known))})"
                )
            passing = [p for p in passing if expression.matches(products.columns[p])]
        return products.faiss_ids(passing)

    def thumbnail_path(self, item: dict) -> Path | None:
        return self.path / item["thumbnail"] if item.get("thumbnail") else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _read_products(path: Path) -> Products:
    db = connect_items(path)
    try:
        fetched = db.execute(
            f"SELECT faiss_id, {', '.join(ITEM_COLUMNS)} FROM items ORDER BY faiss_id"
        ).fetchall()
    finally:
        db.close()
    position: dict[str, int] = {}
    rows, pictures = [], []
    product_of = np.zeros(len(fetched) and fetched[-1][0] + 1, dtype=np.int64)
    for faiss_id, *values in fetched:
        item = dict(zip(ITEM_COLUMNS, values))
        if item["item_id"] not in position:
            position[item["item_id"]] = len(rows)
            item["extra"] = json.loads(item["extra"] or "{}")
            rows.append({"faiss_id": faiss_id, **item})
            pictures.append([])
        product_of[faiss_id] = position[item["item_id"]]
        pictures[position[item["item_id"]]].append(faiss_id)
    return Products(
        rows,
        product_of,
        pictures,
        KeywordIndex([product_text(row) for row in rows]),
        [label_columns(row) for row in rows],
    )


def connect_items(path: Path) -> sqlite3.Connection:
    """items.sqlite of the bundle at `path`, read-only, usable from several threads (under a lock)."""
    return sqlite3.connect(f"file:{path / ITEMS_FILE}?mode=ro", uri=True, check_same_thread=False)
