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

