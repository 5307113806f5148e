"""Choosing a faiss index is a pure function of catalog size, dimension and a memory budget.

Returns a ranked list of candidates (best first); building is a separate step. Factory
strings and search parameters are plain faiss strings ("HNSW32", "efSearch=64"), stored
in the bundle manifest as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_MEMORY_BUDGET = 512 * 1024 * 1024  # bytes of RAM the index may take on a device
FLAT_MAX_ITEMS = 50_000  # exact search stays within a few ms up to here on one core
HNSW_MAX_ITEMS = 5_000_000  # beyond this HNSW build time on a laptop gets unreasonable
HNSW_M = 32
PQ_SUBQUANTIZERS = (64, 32, 16, 8)
MIN_TRAIN_POINTS_PER_CENTROID = 39  # faiss warns below this
PQ_MIN_TRAIN_POINTS = 256 * MIN_TRAIN_POINTS_PER_CENTROID  # 8-bit codebooks: 256 centroids each


@dataclass(frozen=True)
class IndexChoice:
    factory: str
    search_params: str
    estimated_bytes: int
    reason: str


def flat_bytes(count: int, dim: int) -> int:
    return count * dim * 4


def hnsw_bytes(count: int, dim: int, m: int = HNSW_M) -> int:
    # vectors + level-0 links (2M ids) + upper levels (~M ids / (M-1) nodes) + bookkeeping
    return int(count * (dim * 4 + 2 * m * 4 + m * 4 / max(m - 1, 1) + 16))


def ivf_nlist(count: int) -> int:
    """A power of two near 4*sqrt(count), small enough that each centroid gets trained."""
    nlist = 2 ** round(math.log2(max(4 * math.sqrt(max(count, 1)), 1)))
    while nlist > 1 and count < nlist * MIN_TRAIN_POINTS_PER_CENTROID:
        nlist //= 2
    return max(nlist, 1)


def ivf_pq_bytes(count: int, dim: int, nlist: int, m: int) -> int:
    return count * (m + 8) + nlist * dim * 4 + 256 * dim * 4


def choose_index(count: int, dim: int, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> list[IndexChoice]:
    """Candidate indexes for `count` vectors of `dim` floats within `memory_budget` bytes.

    Flat (exact) for small catalogs, HNSW for medium ones, IVF with product quantisation
    when vectors no longer fit. Raises ValueError when nothing fits the budget.
    """
    if count < 1 or dim < 1:
        raise ValueError(f"need at least one vector of dimension >= 1 (got {count} x {dim})")
    if memory_budget <= 0:
        raise ValueError(f"memory budget must be positive, not {memory_budget}")
    nlist = ivf_nlist(count)
    nprobe = min(nlist, max(16, min(128, nlist // 64)))  # lists visited per query
    candidates: list[IndexChoice] = []

    def offer(factory, params, size, reason):
        if size <= memory_budget:
            candidates.append(IndexChoice(factory, params, size, reason))

    if count <= FLAT_MAX_ITEMS:
        offer("Flat", "", flat_bytes(count, dim), f"{count} items: exact search is fast enough")
    if count <= HNSW_MAX_ITEMS:
        offer(
            f"HNSW{HNSW_M}",
            "efSearch=64",
            hnsw_bytes(count, dim),
            f"{count} items: graph search, near-exact recall, vectors fit in memory",
        )
    if count >= PQ_MIN_TRAIN_POINTS:
        for m in (m for m in PQ_SUBQUANTIZERS if dim % m == 0):
            offer(
                f"IVF{nlist},PQ{m}",
                f"nprobe={nprobe}",
                ivf_pq_bytes(count, dim, nlist, m),
                f"{count} items: compressed to {m} bytes per vector",
            )
    if not candidates:
        raise ValueError(
            f"no faiss index for {count} x {dim} fits a memory budget of "
            f"{memory_budget} bytes; raise the budget or reduce the dimension"
        )
    return candidates
