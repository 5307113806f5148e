"""Choosing a faiss index is a pure function of catalog size, dimension and a memory budget.

Returns a ranked list of candidates (best first); building is a separate step. Factory
strings and search parameters are plain faiss strings ("HNSW32", "efSearch=64"), stored
in the bundle manifest as they are; the search parameter is then tuned on the built index
to a recall target (faiss_index.tune_search_params).

Ranked by how close to exact search they stay: Flat, HNSW (full vectors), then IVF with
8-bit scalar quantisation (one byte per dimension) on the full dimension or, when that does
not fit, after a PCA, then IVF with product quantisation (a few bytes per vector) as the last
resort. A PCA or product-quantised index loses too much to rank on its own (recall@10 0.89
for PCA512+SQ8 at 1M x 1280-d), so it only proposes RERANK_CANDIDATES candidates, which the
full vectors, kept on disk at float16, re-rank (rerank.py): its codes then need only find the
neighbours, and PCA256 does (a retail catalog of 1M x 1280-d vectors: 256 MB of codes in
memory, 2.4 GiB on disk).
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
RERANK_PCA_DIM = 256  # with re-ranking, more dimensions find no more candidates (docs/formats.md)
RERANK_CANDIDATES = 50  # compressed-index results re-ranked from the full vectors
MIN_TRAIN_POINTS_PER_CENTROID = 39  # faiss warns below this
PQ_MIN_TRAIN_POINTS = 256 * MIN_TRAIN_POINTS_PER_CENTROID  # 8-bit codebooks: 256 centroids each


@dataclass(frozen=True)
class IndexChoice:
    factory: str
    search_params: str
    estimated_bytes: int  # in memory
    reason: str
    rerank: int = 0  # candidates re-ranked from the full vectors on disk (0: none)
    disk_bytes: int = 0  # the re-rank vectors, float16


def rerank_bytes(count: int, dim: int) -> int:
    return count * dim * 2


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
    """The full dimension, else RERANK_PCA_DIM (or the largest PCA dimension below it) whose
    SQ8 index fits."""
    for reduced in (dim, *(r for r in PCA_DIMS if r < dim and r <= RERANK_PCA_DIM)):
        size = ivf_sq8_bytes(count, dim, nlist, reduced)
        if size <= budget:
            if reduced == dim:
                return f"IVF{nlist},SQ8", size, f"{count} items: 8-bit codes, {dim} bytes per vector"
            return (
                f"PCA{reduced},IVF{nlist},SQ8",
                size,
                f"{count} items: PCA {dim}->{reduced} (kept in the index file), 8-bit codes, "
                f"{reduced} bytes per vector, top {RERANK_CANDIDATES} re-ranked from the full vectors",
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

    def offer(factory, params, size, reason, rerank=False):
        if size <= memory_budget:
            extra = (RERANK_CANDIDATES, rerank_bytes(count, dim)) if rerank else ()
            candidates.append(IndexChoice(factory, params, size, reason, *extra))

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
        offer(sq8[0], f"nprobe={nprobe}", sq8[1], sq8[2], rerank=sq8[0].startswith("PCA"))
    if count >= PQ_MIN_TRAIN_POINTS:
        for m in (m for m in PQ_SUBQUANTIZERS if dim % m == 0):
            offer(
                f"IVF{nlist},PQ{m}",
                f"nprobe={nprobe}",
                ivf_pq_bytes(count, dim, nlist, m),
                f"{count} items: compressed to {m} bytes per vector, top {RERANK_CANDIDATES} "
                f"re-ranked from the full vectors",
                rerank=True,
            )
    if not candidates:
        raise ValueError(
            f"no faiss index for {count} x {dim} fits a memory budget of "
            f"{memory_budget} bytes; raise the budget or reduce the dimension"
        )
    return candidates
