"""Speed figures printed by `visual-search bench` (never asserted in tests)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np

from components.featurizer.model import Featurizer
from components.local_search.search import IndexBundle


def _synthetic_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    """Camera-sized (640x480) frames, so resizing cost is part of the figure."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(count)]


def bench_featurizer(model_dir: str | Path, seconds: float = 5.0) -> Iterator[str]:
    featurizer = Featurizer(model_dir)
    prep = featurizer.preprocessing
    yield (
        f"featurizer {featurizer.spec.arch or featurizer.spec.name}, input {prep.height}x{prep.width}, "
        f"{featurizer.dim}-d, fingerprint {featurizer.fingerprint[:12]}"
    )
    frames = _synthetic_frames(8)
    for batch_size in (1, 8):
        featurizer.batch_size = batch_size
        batch = frames[:batch_size]
        featurizer.featurize(batch)  # warm-up: first call allocates
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            featurizer.featurize(batch)
            done += batch_size
        elapsed = time.perf_counter() - start
        yield (
            f"batch {batch_size}: {done / elapsed:7.1f} images/s "
            f"({1000 * elapsed / (done / batch_size):.1f} ms per batch, {done} images)"
        )


def bench_search(bundle_dir: str | Path, queries: int = 2000, k: int = 5) -> Iterator[str]:
    bundle = IndexBundle.open(bundle_dir)
    index = bundle.manifest["index"]
    yield (
        f"bundle {bundle.path} version {bundle.version}: {len(bundle)} items, "
        f"{index['factory']} ({index['search_params'] or 'exact'}), metric {bundle.metric}"
    )
    rng = np.random.default_rng(0)
    # queries near catalog vectors, as real camera features are: a stored vector plus noise
    base = bundle.index.reconstruct_n(0, len(bundle)) if _can_reconstruct(bundle) else None
    vectors = rng.standard_normal((queries, bundle.index.d)).astype(np.float32)
    if base is not None:
        vectors = base[rng.integers(0, len(base), queries)] + 0.05 * vectors / np.sqrt(bundle.index.d)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    bundle.search(vectors[:10], k)  # warm-up
    latencies = []
    for vector in vectors:
        start = time.perf_counter()
        bundle.search(vector[None, :], k)
        latencies.append(time.perf_counter() - start)
    ms = 1000 * np.asarray(latencies)
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    yield (
        f"{queries} queries, k={k}, one at a time with metadata: "
        f"p50 {p50:.3f} ms, p95 {p95:.3f} ms, p99 {p99:.3f} ms, max {ms.max():.3f} ms"
    )
    bundle.close()


def _can_reconstruct(bundle: IndexBundle) -> bool:
    try:
        bundle.index.reconstruct(0)
        return True
    except RuntimeError:
        return False
