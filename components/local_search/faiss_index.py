"""Build, tune and score faiss indexes from the factory strings stored in bundle manifests."""

from __future__ import annotations

import faiss
import numpy as np


def faiss_metric(metric: str) -> int:
    """cosine = inner product on L2-normalised vectors; l2 = squared Euclidean distance."""
    return {"cosine": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}[metric]


def build_index(vectors: np.ndarray, factory: str, metric: str) -> faiss.Index:
    """Create the index named by `factory`, train it if needed, add `vectors` as ids 0..n-1."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    try:
        index = faiss.index_factory(vectors.shape[1], factory, faiss_metric(metric))
    except RuntimeError as exc:
        raise ValueError(f"faiss cannot build {factory!r}: {str(exc).strip().splitlines()[-1]}") from None
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    return index


def set_search_params(index: faiss.Index, params: str) -> None:
    """Apply a faiss parameter string such as "efSearch=64" or "nprobe=16"."""
    if params:
        faiss.ParameterSpace().set_index_parameters(index, params)


def similarity(distances: np.ndarray, metric: str) -> np.ndarray:
    """faiss results -> cosine similarity (higher is better) for either metric.

    Vectors are unit length, so squared L2 distance d relates to cosine as 1 - d/2;
    one score scale means one `min_score` setting works for both metrics.
    """
    if metric == "cosine":
        return distances
    return 1.0 - distances / 2.0


# A filtered HNSW search walks the graph but keeps only allowed ids, so a small allowed set
# may come back short: up to this many allowed vectors (10 MiB at 1280-d) are compared exactly.
EXACT_SUBSET_MAX = 2048


def search_within(
    index: faiss.Index, vectors: np.ndarray, k: int, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """index.search restricted to the ids in `allowed` (ascending int64), as (distances, ids):
    faiss's ID selector for Flat and IVF indexes; for HNSW an exact comparison with the
    allowed vectors up to EXACT_SUBSET_MAX, beyond it the selector with a wider search."""
    if not len(allowed):
        shape = (len(vectors), 1)
        return np.full(shape, np.nan, np.float32), np.full(shape, -1, np.int64)
    k = max(1, min(int(k), len(allowed)))
    inner = faiss.downcast_index(index)
    ivf = faiss.try_extract_index_ivf(index)
    selector = faiss.IDSelectorBatch(allowed)
    if isinstance(inner, faiss.IndexHNSW):
        if len(allowed) <= EXACT_SUBSET_MAX:
            return _exact_within(index, vectors, k, allowed)
        widen = int(k * index.ntotal / len(allowed))  # visit about k allowed vectors' worth
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(inner.hnsw.efSearch, min(widen, 4096)))
    elif ivf is not None:
        params = faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
    else:
        params = faiss.SearchParameters(sel=selector)
    return index.search(vectors, k, params=params)


def _exact_within(index: faiss.Index, vectors: np.ndarray, k: int, allowed: np.ndarray):
    stored = index.reconstruct_batch(allowed)
    if index.metric_type == faiss.METRIC_INNER_PRODUCT:
        scores = vectors @ stored.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    else:
        scores = ((vectors[:, None, :] - stored[None, :, :]) ** 2).sum(-1)
        order = np.argsort(scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1).astype(np.float32), allowed[order]
