"""What a bundle keeps for the next build (`build-index --previous`), under `reuse/`:

    reuse/rows.jsonl     one JSON object per faiss id: item_id, image, image_sha256, thumbnail
    reuse/vectors.npy    float32 (item_count, dim): the featurizer's vectors, row i = faiss id i

The manifest lists these under `reuse` (size and sha256), not under `files`, so devices never
download them. A row whose image bytes have the same sha256, featurized by the model with the
same fingerprint, gets the same vector and the same thumbnail, so both are taken over.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from components.common.bundle import REUSE_DIR
from components.common.errors import BundleError

ROWS_FILE = f"{REUSE_DIR}/rows.jsonl"
VECTORS_FILE = f"{REUSE_DIR}/vectors.npy"


@dataclass(frozen=True)
class RowRecord:
    item_id: str
    image: str  # the catalog's image reference, as written in the catalog
    image_sha256: str
    thumbnail: str  # relative path in the bundle


def write_reuse_rows(bundle_dir: Path, records: list[RowRecord]) -> None:
    (bundle_dir / REUSE_DIR).mkdir(exist_ok=True)
    with open(bundle_dir / ROWS_FILE, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")


def disk_array(path: Path, count: int, dim: int) -> np.ndarray:
    """A new float32 (count, dim) .npy at `path`, memory-mapped for writing: a catalog's
    vectors then need not fit in memory (an empty one is an ordinary file and array)."""
    path.parent.mkdir(exist_ok=True)
    if count == 0:
        np.save(path, np.zeros((0, dim), np.float32))
        return np.zeros((0, dim), np.float32)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, dim))


@dataclass
class PreviousBuild:
    """The rows and vectors of an earlier bundle, and a reader of its other files."""

    source: str  # a folder or an s3:// URL, for messages
    fingerprint: str
    records: list[RowRecord]
    vectors: np.ndarray
    read_file: Callable[[str], bytes]  # a file the manifest lists, checked against its sha256
    local_file: Callable[[str], Path | None] = lambda rel: None  # the same, checked, on this disk

    def rows_by_sha256(self) -> dict[str, int]:
        return {record.image_sha256: row for row, record in enumerate(self.records)}

    def row_keys(self) -> set[tuple[str, str]]:
        return {(record.item_id, record.image) for record in self.records}


def parse_reuse_files(
    source: str,
    manifest: dict,
    read_file: Callable[[str], bytes],
    vectors_path: Callable[[str], Path],
    local_file: Callable[[str], Path | None] = lambda rel: None,
) -> PreviousBuild:
    """A PreviousBuild from a bundle's manifest; `read_file(rel)` returns checked bytes,
    `vectors_path(rel)` the path of a checked local copy of a large file (memory-mapped here:
    a million rows' vectors are 5 GB), `local_file(rel)` that of a file of a bundle on this
    disk (None from S3)."""
    reuse = manifest.get("reuse") or {}
    if ROWS_FILE not in reuse or VECTORS_FILE not in reuse:
        raise BundleError(
            f"{source}: has no {REUSE_DIR}/ files to reuse (built before build-index kept them); "
            f"build once without --previous"
        )
    try:
        lines = read_file(ROWS_FILE).decode("utf-8").splitlines()
        records = [RowRecord(**json.loads(line)) for line in lines if line.strip()]
        vectors = np.load(vectors_path(VECTORS_FILE), mmap_mode="r", allow_pickle=False)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{source}: {REUSE_DIR}/ files cannot be read ({exc})") from None
    if vectors.ndim != 2 or len(vectors) != len(records) or vectors.dtype != np.float32:
        raise BundleError(
            f"{source}: {VECTORS_FILE} holds {vectors.dtype} {vectors.shape} vectors for {len(records)} rows"
        )
    fingerprint = str(manifest.get("model", {}).get("fingerprint", ""))
    return PreviousBuild(source, fingerprint, records, vectors, read_file, local_file)
