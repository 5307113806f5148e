"""Re-ranking from full vectors: a compressed index finds candidates, the full vectors order them.

What fits a device's memory at a million 1280-d items is a compressed index (a PCA to 256
dimensions and 8-bit codes: 256 bytes a vector). Its top 10 are only 0.8 of the exact top 10,
but its top 50 hold nearly all of them. So such a bundle also carries every vector at half
precision (`rerank-vectors.npy`, row i = faiss id i), which stays on disk: it is memory-mapped
and a query reads only its candidates' rows (50 x 2.5 KB at 1280-d), which the OS may evict
again whenever it needs the memory. Re-ranked scores are exact cosines (to float16), so
`min_score` and folding mean what they mean with a Flat index.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Iterable

import numpy as np

from components.common.bundle import RERANK_FILE
from components.common.errors import BundleError

RERANK_DTYPE = np.float16
NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def rerank_candidates(manifest: dict, where: str) -> int:
    """How many candidates the bundle's index proposes for re-ranking (0: it ranks alone).
    Only the bundle's own, checksummed re-rank file is ever read."""
    rerank = manifest["index"].get("rerank")
    if rerank is None:
        return 0
    spec = rerank if isinstance(rerank, dict) else {}
    candidates = spec.get("candidates")
    if (
        spec.get("file") != RERANK_FILE
        or RERANK_FILE not in manifest["files"]
        or spec.get("dtype") != np.dtype(RERANK_DTYPE).name
        or not isinstance(candidates, int)
        or isinstance(candidates, bool)
        or candidates < 1
    ):
        raise BundleError(
            f"{where}: index.rerank must name the listed {RERANK_FILE} as float16 with candidates >= 1, "
            f"got {rerank!r}"
        )
    return candidates


def write_rerank_vectors(path: Path, chunks: Iterable[np.ndarray], count: int, dim: int) -> None:
    """Write `count` x `dim` vectors (given in chunks, in faiss id order) as a float16 .npy."""
    rows = np.lib.format.open_memmap(path, mode="w+", dtype=RERANK_DTYPE, shape=(count, dim))
    start = 0
    for chunk in chunks:
        rows[start : start + len(chunk)] = chunk
        start += len(chunk)
    if start != count:
        raise ValueError(f"{path}: got {start} vectors, expected {count}")
    rows.flush()
    del rows


class RerankVectors:
    """The full vectors of a bundle at float16, memory-mapped read-only from its
    rerank-vectors.npy (`open`), or held in memory (a catalog evaluated without a bundle).

    The mapping is advised as random access: the kernel's default read-ahead would fetch
    neighbouring rows no query asked for (4x the bytes read from disk). Instead, before a
    query's rows are read, each is announced (MADV_WILLNEED), so rows not in the page cache
    are read from disk together rather than one page fault after another (9 ms a query)."""

    def __init__(self, rows: np.ndarray, mapped: mmap.mmap | None = None, offset: int = 0):
        self.rows = rows
        self._mapped, self._offset, self._row_bytes = mapped, offset, rows.shape[1] * rows.itemsize

    @classmethod
    def open(cls, path: Path, count: int, dim: int) -> "RerankVectors":
        try:
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                if version not in NPY_HEADERS:
                    raise ValueError(f".npy format version {version} is not supported")
                shape, fortran, dtype = NPY_HEADERS[version](handle)
                offset = handle.tell()
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path}: not a readable .npy file ({exc})") from None
        if dtype != RERANK_DTYPE or shape != (count, dim) or fortran:
            mapped.close()
            raise BundleError(
                f"{path}: holds {dtype} {shape}, expected {np.dtype(RERANK_DTYPE)} ({count}, {dim})"
            )
        if hasattr(mapped, "madvise"):
            mapped.madvise(mmap.MADV_RANDOM)
        try:
            rows = np.frombuffer(mapped, dtype=RERANK_DTYPE, count=count * dim, offset=offset)
        except ValueError:
            raise BundleError(f"{path}: shorter than its header's {shape} vectors") from None
        return cls(rows.reshape(count, dim), mapped, offset)

    def _prefetch(self, ids: np.ndarray) -> None:
        if not hasattr(self._mapped, "madvise"):  # in memory, or an OS without madvise
            return
        for row in ids.tolist():
            start = self._offset + row * self._row_bytes
            page = start - start % mmap.PAGESIZE
            self._mapped.madvise(mmap.MADV_WILLNEED, page, start + self._row_bytes - page)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """float32 rows of these faiss ids (read from disk if not in the page cache)."""
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")  # ascending reads: neighbouring rows share pages
        self._prefetch(ids[order])
        rows = np.empty((len(ids), self.rows.shape[1]), dtype=np.float32)
        rows[order] = self.rows[ids[order]]
        return rows

    def rerank(
        self, queries: np.ndarray, candidates: np.ndarray, k: int, metric: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best `k` of each query's candidate ids (-1 = none), scored on the full vectors:
        (distances, ids) as faiss gives them (inner product for cosine, squared L2 for l2),
        padded with -1 ids where fewer candidates exist."""
        worst = -np.inf if metric == "cosine" else np.inf
        distances = np.full((len(queries), k), worst, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, found) in enumerate(zip(queries, candidates)):
            found = found[found >= 0]
            if not len(found):
                continue
            stored = self.vectors(found)
            if metric == "cosine":
                scores = stored @ query
                order = np.argsort(-scores, kind="stable")[:k]
            else:
                scores = ((stored - query) ** 2).sum(axis=1)
                order = np.argsort(scores, kind="stable")[:k]
            distances[row, : len(order)] = scores[order]
            ids[row, : len(order)] = found[order]
        return distances, ids


def reranked_search(index, reranker: RerankVectors, candidates: int, metric: str):
    """(queries, k) -> ids: the index's top `candidates` re-ranked, as IndexBundle searches."""

    def search(queries: np.ndarray, k: int) -> np.ndarray:
        _, found = index.search(queries, max(k, candidates))
        return reranker.rerank(queries, found, k, metric)[1]

    return search
