"""Build, tune and score faiss indexes from the factory strings stored in bundle manifests.

A factory string may start with a PCA ("PCA384,IVF4096,SQ8"): faiss keeps the projection in
the index file (an IndexPreTransform), so whoever loads index.faiss applies it to queries
without knowing about it. The PCA is trained on the vectors and their negatives, which makes
it uncentred: a centred projection shifts every vector by the mean and would change inner
products (cosine), an uncentred one keeps the largest share of each vector, mean included.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import faiss
import numpy as np

# search parameter -> values tried, cheapest first, when tuning to a recall target
SEARCH_LADDERS = {
    "nprobe": (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256),
    "efSearch": (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512),
}
TUNING_K = 10
TUNING_RECALL = 0.96  # the product's target is 0.95; 200 tuning queries measure recall to about +-0.005
PLATEAU_GAIN = 0.005  # recall short of the best that the cheapest setting may be, below the target
TRAIN_POINTS_PER_LIST = 40  # k-means wants 39 or more a centroid (faiss warns below)
MIN_TRAINING_POINTS = 20_000
ADD_CHUNK = 50_000  # vectors added (or read from disk) at once

Search = Callable[[np.ndarray, int], np.ndarray]  # (queries, k) -> ids, as the device searches


def faiss_metric(metric: str) -> int:
    """cosine = inner product on L2-normalised vectors; l2 = squared Euclidean distance."""
    return {"cosine": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}[metric]


def new_index(dim: int, factory: str, metric: str) -> faiss.Index:
    try:
        return faiss.index_factory(dim, factory, faiss_metric(metric))
    except RuntimeError as exc:
        raise ValueError(f"faiss cannot build {factory!r}: {str(exc).strip().splitlines()[-1]}") from None


def train_index(index: faiss.Index, sample: np.ndarray) -> None:
    """Train `index` on `sample` (a PCA in front on the sample and its negatives, see above)."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    if index.is_trained:
        return
    outer = faiss.downcast_index(index)
    if not isinstance(outer, faiss.IndexPreTransform):
        index.train(sample)
        return
    for i in range(outer.chain.size()):
        transform = faiss.downcast_VectorTransform(outer.chain.at(i))
        if not transform.is_trained and isinstance(transform, faiss.PCAMatrix):
            transform.train(np.concatenate([sample, -sample]))
            transform.PCAMat.resize(0)  # every eigenvector (dim x dim floats), needed only to train
        elif not transform.is_trained:
            transform.train(sample)
        sample = transform.apply_py(sample)
    outer.index.train(sample)
    outer.is_trained = True


def add_vectors(index: faiss.Index, vectors: np.ndarray) -> None:
    """Add vectors; they get the next ids (0..n-1 in the order added)."""
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))


def training_size(index: faiss.Index, count: int) -> int:
    """Vectors to train on: TRAIN_POINTS_PER_LIST per IVF list, at least MIN_TRAINING_POINTS
    (a PCA or PQ wants a few thousand whatever the lists), never more than there are."""
    ivf = faiss.try_extract_index_ivf(index)
    return min(count, max(TRAIN_POINTS_PER_LIST * (ivf.nlist if ivf is not None else 1), MIN_TRAINING_POINTS))


def chunks_of(vectors: np.ndarray, size: int = ADD_CHUNK) -> Iterator[np.ndarray]:
    for start in range(0, len(vectors), size):
        yield np.ascontiguousarray(vectors[start : start + size], dtype=np.float32)


def build_index(vectors: np.ndarray, factory: str, metric: str) -> faiss.Index:
    """Create the index named by `factory`, train it if needed on a sample of `vectors`
    (evenly drawn, the same every time), add them as ids 0..n-1 chunk by chunk: `vectors`
    may be memory-mapped from disk and larger than memory."""
    index = new_index(vectors.shape[1], factory, metric)
    if not index.is_trained:
        size = training_size(index, len(vectors))
        picked = np.sort(np.random.default_rng(0).choice(len(vectors), size, replace=False))
        train_index(index, vectors[picked])
    for chunk in chunks_of(vectors):
        add_vectors(index, chunk)
    return index


def plain_search(index: faiss.Index) -> Search:
    """(queries, k) -> ids, straight from the index."""

    def search(queries: np.ndarray, k: int) -> np.ndarray:
        return index.search(queries, k)[1]

    return search


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


def exact_neighbours(queries: np.ndarray, chunks: Iterable[np.ndarray], k: int, metric: str) -> np.ndarray:
    """Ids of the exact top `k` of each query over vectors given in chunks (ids count on
    across chunks), so the whole catalog never has to be in memory at once."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)
    offset = 0
    for chunk in chunks:
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        if metric == "cosine":
            scores = queries @ chunk.T
        else:
            scores = -((queries**2).sum(1)[:, None] - 2 * queries @ chunk.T + (chunk**2).sum(1)[None, :])
        scores = np.concatenate([best_scores, scores], axis=1)
        ids = np.concatenate(
            [best_ids, np.broadcast_to(np.arange(offset, offset + len(chunk)), scores[:, k:].shape)], axis=1
        )
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_ids = np.take_along_axis(ids, top, axis=1)
        offset += len(chunk)
    return best_ids


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true top-k that the index returned in its top-k."""
    k = truth.shape[1]
    hits = sum(len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


def tune_search_params(
    index: faiss.Index,
    factory: str,
    queries: np.ndarray,
    truth: np.ndarray,
    target: float = TUNING_RECALL,
    search: Search | None = None,
) -> tuple[str, float]:
    """The cheapest search parameter value whose recall@k (k = truth's width) reaches
    `target`: (params string, its recall). When no value reaches it (the codes, not the
    search, limit recall: a PCA or quantisation), the cheapest within PLATEAU_GAIN of the
    best recall any value reached, since searching wider would only cost time. `search`: how
    results are found (default index.search; a re-ranked search measures what it returns)."""
    name = "nprobe" if "IVF" in factory else "efSearch" if "HNSW" in factory else None
    k = truth.shape[1]
    search = search or plain_search(index)
    if name is None:
        return "", recall_at_k(search(queries, k), truth)
    nlist = faiss.extract_index_ivf(index).nlist if name == "nprobe" else None
    measured: list[tuple[str, float]] = []
    for value in SEARCH_LADDERS[name]:
        if nlist is not None and value > nlist:
            break
        params = f"{name}={value}"
        set_search_params(index, params)
        measured.append((params, recall_at_k(search(queries, k), truth)))
        if measured[-1][1] >= target:
            return measured[-1]
    best = max(recall for _, recall in measured)
    chosen = next(m for m in measured if m[1] >= best - PLATEAU_GAIN)
    set_search_params(index, chosen[0])
    return chosen


def tuning_queries(vectors: np.ndarray, count: int, metric: str, seed: int = 0) -> np.ndarray:
    """Queries near the data, as camera features are: stored vectors with noise of half
    their spread (measured on up to MIN_TRAINING_POINTS of them) added in each dimension
    (normalised again for cosine)."""
    rng = np.random.default_rng(seed)
    picked = vectors[np.sort(rng.integers(0, len(vectors), count))]
    spread = vectors[:: max(1, len(vectors) // MIN_TRAINING_POINTS)].std(axis=0)
    noisy = picked + 0.5 * spread * rng.standard_normal(picked.shape).astype(np.float32)
    if metric == "cosine":
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    return noisy.astype(np.float32)


def tune_on_catalog(
    index: faiss.Index,
    factory: str,
    vectors: np.ndarray,
    metric: str,
    queries: int = 200,
    search: Search | None = None,
) -> tuple[str, str]:
    """Tune `index`'s search parameter on queries near the catalog's own vectors:
    (params string, a note for the manifest's reason)."""
    if "IVF" not in factory and "HNSW" not in factory:
        return "", ""
    k = min(TUNING_K, len(vectors))
    probe = tuning_queries(vectors, queries, metric)
    truth = exact_neighbours(probe, chunks_of(vectors), k, metric)
    params, recall = tune_search_params(index, factory, probe, truth, search=search)
    return params, f"; {params} measured recall@{k} {recall:.3f} on {queries} queries near the catalog"
