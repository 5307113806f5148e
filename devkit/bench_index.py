"""`bench search --synthetic N`: the device index `auto` picks for an N-item catalog, built
from synthetic vectors shaped like real ones, with its size, recall@10 and latency.

Real vectors of the featurizer (read from a bundle built from photos) seed the synthetic
catalog: each synthetic item is a real vector moved part of the way towards one of its
nearest real neighbours, plus noise drawn with the real vectors' own covariance (so the
spectrum a PCA sees, and the clusters an IVF sees, are those of real features), normalised
again. Queries are further draws, held out from the catalog. The catalog is generated in
chunks from (seed, chunk number), so N x dim floats never sit in memory at once: the index
is filled chunk by chunk and exact search runs over the regenerated chunks.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Iterator

import faiss
import numpy as np

from components.common.bundle import INDEX_FILE, RERANK_FILE
from components.common.errors import VisualSearchError
from components.local_search import faiss_index
from components.local_search.index_choice import DEFAULT_MEMORY_BUDGET, choose_index
from components.local_search.rerank import RerankVectors, reranked_search, write_rerank_vectors
from components.local_search.search import IndexBundle
from devkit.latency import one_at_a_time, percentiles

CHUNK = 50_000
NEIGHBOURS = 10  # real neighbours an item may be mixed with
NOISE_COMPONENTS = 1280  # covariance directions the noise is drawn in (all of a 1280-d model)
NOISE_SCALE = 0.5  # noise std, relative to the real vectors' spread
K = 10


class SyntheticCatalog:
    """Deterministic synthetic vectors derived from `real` (unit rows), chunk by chunk."""

    def __init__(self, real: np.ndarray, seed: int = 0):
        if len(real) < NEIGHBOURS + 1:
            raise VisualSearchError(f"need at least {NEIGHBOURS + 1} real vectors, got {len(real)}")
        self.real, self.seed = np.ascontiguousarray(real, dtype=np.float32), seed
        self.dim = real.shape[1]
        centred = self.real - self.real.mean(axis=0)
        values, vectors = np.linalg.eigh(centred.T @ centred / len(real))
        top = np.argsort(values)[::-1][: min(NOISE_COMPONENTS, self.dim)]
        self.noise_basis = (vectors[:, top] * np.sqrt(np.clip(values[top], 0, None))).T.astype(np.float32)
        similar = self.real @ self.real.T
        np.fill_diagonal(similar, -np.inf)
        self.neighbours = np.argsort(-similar, axis=1)[:, :NEIGHBOURS]

    def draw(self, count: int, stream: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream])
        base = rng.integers(0, len(self.real), count)
        other = self.neighbours[base, rng.integers(0, NEIGHBOURS, count)]
        mix = rng.uniform(0.0, 0.5, (count, 1)).astype(np.float32)
        noise = rng.standard_normal((count, len(self.noise_basis)), dtype=np.float32) @ self.noise_basis
        vectors = (1 - mix) * self.real[base] + mix * self.real[other] + NOISE_SCALE * noise
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def chunks(self, total: int) -> Iterator[np.ndarray]:
        for number, start in enumerate(range(0, total, CHUNK)):
            yield self.draw(min(CHUNK, total - start), stream=number)

    def queries(self, count: int, stream: int) -> np.ndarray:
        """Held out: streams far above any chunk number the catalog uses."""
        return self.draw(count, stream=10**9 + stream)


DEMO_CATALOG = Path("demo/catalog")


def seed_vectors(bundle_dir: str | Path | None, model_dir: str | Path) -> np.ndarray:
    """The real vectors of `bundle_dir`, or of the demo catalog featurized now."""
    if bundle_dir is not None:
        return real_vectors(bundle_dir)
    from cloud_sync.indexing.build_index import build_bundle

    with tempfile.TemporaryDirectory(prefix="bench-seed-") as work:
        out = Path(work) / "bundle"
        build_bundle(DEMO_CATALOG, model_dir, out, index="Flat", index_version=1, progress=False)
        return real_vectors(out)


def real_vectors(bundle_dir: str | Path) -> np.ndarray:
    bundle = IndexBundle.open(bundle_dir)
    try:
        return bundle.index.reconstruct_n(0, len(bundle))
    except RuntimeError:
        raise VisualSearchError(
            f"{bundle_dir}: its index ({bundle.manifest['index']['factory']}) does not give its vectors "
            f"back; build the seed bundle with --index Flat"
        ) from None
    finally:
        bundle.close()


def bench_synthetic(
    real: np.ndarray,
    count: int,
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    queries: int = 1000,
    factory: str | None = None,
    rerank: int | None = None,
    seed: int = 0,
) -> Iterator[str]:
    """`rerank`: candidates re-ranked from the full vectors (None: as `auto` chose for its own
    factory, else none)."""
    catalog = SyntheticCatalog(real, seed)
    dim = catalog.dim
    choice = choose_index(count, dim, memory_budget)[0]
    if rerank is None:
        rerank = choice.rerank if factory in (None, choice.factory) else 0
    factory = factory or choice.factory
    yield (
        f"synthetic catalog: {count} x {dim}-d from {len(real)} real vectors; index {factory}"
        + (f", top {rerank} re-ranked from the full vectors" if rerank else "")
        + f" (auto: {choice.reason}; estimated {choice.estimated_bytes / 2**20:.0f} MiB of "
        f"{memory_budget / 2**20:.0f} MiB)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-index-") as work:
        index = yield from _build(catalog, count, factory, Path(work) / INDEX_FILE)
        search = faiss_index.plain_search(index)
        if rerank:
            path = Path(work) / RERANK_FILE
            started = time.perf_counter()
            write_rerank_vectors(path, catalog.chunks(count), count, dim)
            yield (
                f"{RERANK_FILE}: {path.stat().st_size / 2**20:.1f} MiB on disk, written in "
                f"{time.perf_counter() - started:.0f} s"
            )
            search = reranked_search(index, RerankVectors.open(path, count, dim), rerank, "cosine")

        tune, test = catalog.queries(200, stream=0), catalog.queries(queries, stream=1)
        started = time.perf_counter()
        truth = faiss_index.exact_neighbours(np.concatenate([tune, test]), catalog.chunks(count), K, "cosine")
        yield f"exact top-{K} of {len(tune) + len(test)} queries: {time.perf_counter() - started:.0f} s"
        params, tuned = faiss_index.tune_search_params(
            index, factory, tune, truth[: len(tune)], search=search
        )
        recall = faiss_index.recall_at_k(search(test, K), truth[len(tune) :])
        yield (
            f"search params {params or '(exact)'} (recall@{K} {tuned:.3f} on {len(tune)} tuning queries); "
            f"recall@{K} {recall:.3f} on {len(test)} held-out queries"
        )
        ms = one_at_a_time(lambda query: search(query, K), test)
        threads = faiss.omp_get_max_threads()
        yield f"single-query latency (k={K}, {threads} threads, {len(ms)} queries): {percentiles(ms)}"
        if rerank:
            del search
            yield from _cold_latency(index, path, count, dim, rerank, catalog.queries(queries, stream=2))


def _build(catalog: SyntheticCatalog, count: int, factory: str, path: Path):
    """Train and fill the index chunk by chunk, write it and read it back as a device does."""
    started = time.perf_counter()
    index = faiss_index.new_index(catalog.dim, factory, "cosine")
    if not index.is_trained:
        train = faiss_index.training_size(index, count)
        faiss_index.train_index(index, np.concatenate(list(catalog.chunks(train))))
        yield f"  trained on {train} vectors: {time.perf_counter() - started:.0f} s"
    for number, chunk in enumerate(catalog.chunks(count)):
        faiss_index.add_vectors(index, chunk)
        if (number + 1) % 4 == 0 or index.ntotal == count:
            yield f"  added {index.ntotal}/{count}: {time.perf_counter() - started:.0f} s"
    built = time.perf_counter() - started
    faiss.write_index(index, str(path))
    size = path.stat().st_size
    del index
    yield f"build: {built:.0f} s; {INDEX_FILE} {size / 2**20:.1f} MiB ({size} bytes), held in memory"
    return faiss.read_index(str(path))


def _cold_latency(index, path: Path, count: int, dim: int, rerank: int, queries: np.ndarray) -> Iterator[str]:
    """Latency with the re-rank vectors not in the page cache (as after a device restart):
    the file's cached pages are dropped, then new queries read their candidates from disk."""
    with open(path, "rb") as handle:
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    search = reranked_search(index, RerankVectors.open(path, count, dim), rerank, "cosine")
    read_before = _bytes_read_from_disk()
    ms = one_at_a_time(lambda query: search(query, K), queries)
    read = _bytes_read_from_disk() - read_before
    yield (
        f"  with {RERANK_FILE} out of the page cache first ({len(ms)} new queries"
        + (f", {read / 2**20:.0f} MiB read from disk" if read >= 0 else "")
        + f"): {percentiles(ms)}"
    )


def _bytes_read_from_disk() -> int:
    """This process's storage reads so far (/proc/self/io), or -1 where the OS does not say."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1
