"""Catalog rows -> vectors and thumbnails, taking over what a previous bundle already has.

An engine (this module's `local_engine`, or `ray_engine.RayEngine`) reads each row's image,
hashes its bytes, and either marks the row reused (a previous row had the same bytes, and the
model is the same) or featurizes it and makes its thumbnail. Reused rows then get the previous
vector and the previous thumbnail's exact bytes, and the usable rows become faiss ids in
catalog order, whatever order the engine finished them in.

Vectors go to disk as they arrive (a memory-mapped file per catalog row, then
reuse/vectors.npy in faiss id order), so a catalog of millions of rows is built with the
memory of a few chunks, and the index is filled chunk by chunk from that file.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from cloud_sync.indexing.catalog import Catalog, CatalogItem, CatalogProblem, read_image_bytes
from cloud_sync.indexing.embed import featurize_catalog
from cloud_sync.indexing.reuse import VECTORS_FILE, PreviousBuild, RowRecord, disk_array, write_reuse_rows
from cloud_sync.indexing.thumbnails import PendingThumbnails, encode_thumbnail
from components.common.bundle import REUSE_DIR
from components.common.errors import ImageError
from components.featurizer.model import Featurizer

THUMBNAIL_READERS = 8  # reused thumbnails are small files, often S3 objects: read in parallel
BY_ROW_FILE = f"{REUSE_DIR}/.vectors-by-row.npy"  # while rows arrive; gone before the manifest
COPY_CHUNK = 50_000  # rows copied at once between vector files


@dataclass
class ReuseCounts:
    reused: int = 0
    featurized: int = 0
    removed: int = 0
    other_model: bool = False  # the previous bundle was built by another model: nothing reused

    def __str__(self) -> str:
        return f"reused {self.reused}, featurized {self.featurized}, removed {self.removed}"


@dataclass
class FeaturizedRows:
    items: list[CatalogItem]  # the usable rows, in catalog order: row i is faiss id i
    vectors: np.ndarray  # (len(items), dim) float32, memory-mapped from reuse/vectors.npy
    problems: list[CatalogProblem]
    thumbnails: list[str]  # relative path of items[i]'s thumbnail
    counts: ReuseCounts = field(default_factory=ReuseCounts)


class RowResults:
    """What an engine found for each row of the catalog (row = position in catalog.items)."""

    def __init__(self, catalog: Catalog, bundle_dir: Path, reusable: dict[str, int], dim: int):
        self.catalog = catalog
        self.reusable = reusable  # image sha256 -> row of the previous bundle
        self.sha256 = [""] * len(catalog.items)
        self.vectors = disk_array(bundle_dir / BY_ROW_FILE, len(catalog.items), dim)
        self.has_vector = np.zeros(len(catalog.items), dtype=bool)
        self.reused: dict[int, int] = {}  # row -> previous row
        self.problems = list(catalog.problems)
        self.thumbnails = PendingThumbnails(bundle_dir)

    def fail(self, row: int, reason: str) -> None:
        self.problems.append(CatalogProblem(self.catalog.items[row].where, reason))

    def hashed(self, row: int, sha256: str) -> bool:
        """Record the row's image digest; True when the row is reused (nothing more to do)."""
        self.sha256[row] = sha256
        if sha256 in self.reusable:
            self.reused[row] = self.reusable[sha256]
            return True
        return False

    def featurized(self, row: int, vector: np.ndarray, thumbnail_jpeg: bytes) -> None:
        self.vectors[row] = vector
        self.has_vector[row] = True
        self.thumbnails.put(row, thumbnail_jpeg)


class Engine(Protocol):
    """Reads, hashes and featurizes the rows, reporting each to `rows`."""

    def __call__(
        self, catalog: Catalog, featurizer: Featurizer, rows: RowResults, progress: bool
    ) -> None: ...


def local_engine(catalog: Catalog, featurizer: Featurizer, rows: RowResults, progress: bool) -> None:
    """Hash every image, then featurize the rows not reused in batches (embed.py)."""
    todo: list[int] = []
    hashing = tqdm(catalog.items, desc="hashing", unit="img", disable=not progress, leave=False)
    for row, item in enumerate(hashing):
        try:
            digest = hashlib.sha256(read_image_bytes(catalog.root, item.image)).hexdigest()
        except ImageError as exc:
            rows.fail(row, f"image {exc}")
            continue
        if not rows.hashed(row, digest):
            todo.append(row)
    position = {id(catalog.items[row]): row for row in todo}
    thumbnails: dict[int, bytes] = {}
    result = featurize_catalog(
        Catalog(catalog.root, [catalog.items[row] for row in todo], [], catalog.source),
        featurizer,
        progress=progress,
        on_image=lambda item, image: thumbnails.__setitem__(position[id(item)], encode_thumbnail(image)),
    )
    rows.problems.extend(result.problems)
    for item, vector in zip(result.items, result.vectors, strict=True):
        row = position[id(item)]
        rows.featurized(row, vector, thumbnails.pop(row))


def featurize_rows(
    catalog: Catalog,
    featurizer: Featurizer,
    bundle_dir: Path,
    *,
    previous: PreviousBuild | None = None,
    engine: Engine = local_engine,
    progress: bool = True,
) -> FeaturizedRows:
    """Vectors and thumbnails of every usable row, written with the reuse/ files into
    `bundle_dir`; rows whose image a previous build featurized with this model are reused."""
    counts = ReuseCounts()
    reusable: dict[str, int] = {}
    if previous is not None:
        counts.other_model = previous.fingerprint != featurizer.fingerprint
        reusable = {} if counts.other_model else previous.rows_by_sha256()
    rows = RowResults(catalog, bundle_dir, reusable, featurizer.dim)
    engine(catalog, featurizer, rows, progress)
    if rows.reused:
        _take_over(previous, rows)
    kept = np.flatnonzero(rows.has_vector)
    items = [catalog.items[row] for row in kept]
    vectors = _in_faiss_id_order(rows, kept, bundle_dir)
    thumbnails = rows.thumbnails.finish(kept.tolist())
    records = [
        RowRecord(item.id, item.image, rows.sha256[row], thumbnail)
        for item, row, thumbnail in zip(items, kept, thumbnails, strict=True)
    ]
    write_reuse_rows(bundle_dir, records)
    counts.reused = len(rows.reused)
    counts.featurized = len(kept) - counts.reused
    if previous is not None:
        counts.removed = len(previous.row_keys() - {(item.id, item.image) for item in catalog.items})
    return FeaturizedRows(items, vectors, rows.problems, thumbnails, counts)


def _in_faiss_id_order(rows: RowResults, kept: np.ndarray, bundle_dir: Path) -> np.ndarray:
    """reuse/vectors.npy, the rows `kept` in order, memory-mapped read-only: the per-row file
    itself when every row was kept (the usual case), else those rows copied a chunk at a time."""
    by_row, rows.vectors = rows.vectors, None
    if isinstance(by_row, np.memmap):
        by_row.flush()
    if len(kept) == len(by_row):
        del by_row
        (bundle_dir / BY_ROW_FILE).replace(bundle_dir / VECTORS_FILE)
    else:
        vectors = disk_array(bundle_dir / VECTORS_FILE, len(kept), by_row.shape[1])
        for start in range(0, len(kept), COPY_CHUNK):
            vectors[start : start + COPY_CHUNK] = by_row[kept[start : start + COPY_CHUNK]]
        if isinstance(vectors, np.memmap):
            vectors.flush()
        del vectors, by_row
        (bundle_dir / BY_ROW_FILE).unlink()
    return np.load(bundle_dir / VECTORS_FILE, mmap_mode="r")


def _take_over(previous: PreviousBuild, rows: RowResults) -> None:
    """Reused rows get the previous vector and the previous thumbnail's exact bytes (the
    file itself, hard-linked, from a bundle on this disk)."""

    def copy_thumbnail(item: tuple[int, int]) -> None:
        row, previous_row = item
        rel = previous.records[previous_row].thumbnail
        local = previous.local_file(rel)
        if local is not None:
            rows.thumbnails.link(row, local)
        else:
            rows.thumbnails.put(row, previous.read_file(rel))

    with ThreadPoolExecutor(THUMBNAIL_READERS) as pool:
        list(pool.map(copy_thumbnail, rows.reused.items()))
    reused = np.array(list(rows.reused.items()), dtype=np.int64).reshape(-1, 2)  # (row, previous row)
    for start in range(0, len(reused), COPY_CHUNK):
        part = reused[start : start + COPY_CHUNK]
        rows.vectors[part[:, 0]] = previous.vectors[part[:, 1]]
    rows.has_vector[reused[:, 0]] = True
