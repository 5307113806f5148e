"""Per-query latency, as the benchmarks print it: one query at a time, after a warm-up."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np


def one_at_a_time(search: Callable[[np.ndarray], object], queries: Sequence[np.ndarray]) -> np.ndarray:
    """Milliseconds each `search(query[None, :])` took, the first ten run once before as warm-up."""
    for query in queries[:10]:
        search(query[None, :])
    latencies = []
    for query in queries:
        start = time.perf_counter()
        search(query[None, :])
        latencies.append(time.perf_counter() - start)
    return 1000 * np.asarray(latencies)


def percentiles(ms: np.ndarray) -> str:
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return f"p50 {p50:.3f} ms, p95 {p95:.3f} ms, p99 {p99:.3f} ms"
