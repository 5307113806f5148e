"""Choosing a faiss index is a pure function of catalog size, dimension and a memory budget.

Returns a ranked list of candidates (best first); building is a separate step. Factory
strings and search parameters are plain faiss strings ("HNSW32", "efSearch=64"), stored
in the bundle manifest as they are; the search parameter is then tuned on the built index
to a recall target (faiss_index.tune_search_params).

Ranked by how close to exact search they stay: Flat, HNSW (full vectors), then IVF with
8-bit scalar quantisation (one byte per dimension) on the full dimension or, when that does
not fit, after a PCA to the largest dimension that fits (a retail catalog of 1M x 1280-d
vectors: PCA384, 384 MB of codes), then IVF with product quantisation (a few bytes per
vector, much lower recall) as the last resort.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_MEMORY_BUDGET = 512 * 1024 * 1024  # bytes of RAM the index may take on a device
FLAT_MAX_ITEMS = 50_000  # exact search stays within a few ms up to here on one core
HNSW_MAX_ITEMS = 5_000_000  # beyond this HNSW build time on a laptop gets unreasonable
HNSW_M = 32
PQ_SUBQUANTIZERS = (64, 32, 16, 8)
PCA_DIMS = (1024, 896, 768, 640, 512, 384, 256, 128)  # largest first: more dimensions, better recall
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


def ivf_sq8_bytes(count: int, dim: int, nlist: int, reduced: int) -> int:
    """Codes (one byte a dimension) and ids, the coarse centroids, and the PCA matrix."""
    pca = (dim * reduced + dim) * 4 if reduced < dim else 0
    return count * (reduced + 8) + nlist * reduced * 4 + 2 * reduced * 4 + pca


def _ivf_sq8(count: int, dim: int, nlist: int, budget: int) -> tuple[str, int, str] | None:
    """The full dimension, else the largest PCA dimension whose SQ8 index fits."""
    for reduced in (dim, *(r for r in PCA_DIMS if r < dim)):
        size = ivf_sq8_bytes(count, dim, nlist, reduced)
        if size <= budget:
            if reduced == dim:
                return f"IVF{nlist},SQ8", size, f"{count} items: 8-bit codes, {dim} bytes per vector"
            return (
                f"PCA{reduced},IVF{nlist},SQ8",
                size,
                f"{count} items: PCA {dim}->{reduced} (kept in the index file), 8-bit codes, "
                f"{reduced} bytes per vector",
            )
    return None


def choose_index(count: int, dim: int, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> list[IndexChoice]:
    """Candidate indexes for `count` vectors of `dim` floats within `memory_budget` bytes.

    Flat (exact) for small catalogs, HNSW for medium ones, IVF with 8-bit codes (after a
    PCA if need be), then IVF with product quantisation when vectors no longer fit. Raises
    ValueError when nothing fits the budget.
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
    sq8 = _ivf_sq8(count, dim, nlist, memory_budget) if count > FLAT_MAX_ITEMS else None
    if sq8 is not None:
        offer(sq8[0], f"nprobe={nprobe}", sq8[1], sq8[2])
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
