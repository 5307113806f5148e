"""Search restricted to some faiss ids: how a hard filter (keywords, labels) reaches the index.

faiss's ID selectors (SearchParameters(sel=IDSelectorBatch)) serve Flat and IVF indexes, a
PCA in front (IndexPreTransform) included. A filtered HNSW search walks the graph but keeps
only allowed ids, so a small allowed set may come back short: up to EXACT_SUBSET_MAX allowed
vectors are compared exactly instead, beyond it the selector runs with a wider search.
"""

from __future__ import annotations

import faiss
import numpy as np

EXACT_SUBSET_MAX = 2048  # allowed vectors read back at once: 10 MiB at 1280-d
MAX_EF_SEARCH = 4096


def search_within(
    index: faiss.Index, vectors: np.ndarray, k: int, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """index.search restricted to the ids in `allowed` (ascending int64), as (distances, ids)."""
    if not len(allowed):
        shape = (len(vectors), 1)
        return np.full(shape, np.nan, np.float32), np.full(shape, -1, np.int64)
    k = max(1, min(int(k), len(allowed)))
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexPreTransform):
        inner = faiss.downcast_index(inner.index)
    ivf = faiss.try_extract_index_ivf(index)
    selector = faiss.IDSelectorBatch(allowed)
    if isinstance(inner, faiss.IndexHNSW):
        if len(allowed) <= EXACT_SUBSET_MAX:
            return _exact_within(index, vectors, k, allowed)
        widen = int(k * index.ntotal / len(allowed))  # visit about k allowed vectors' worth
        params = faiss.SearchParametersHNSW(
            sel=selector, efSearch=max(inner.hnsw.efSearch, min(widen, MAX_EF_SEARCH))
        )
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
