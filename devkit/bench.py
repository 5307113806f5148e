"""Speed figures printed by `visual-search bench` (never asserted in tests)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from components.common.errors import ImageError
from components.featurizer.model import Featurizer, read_spec
from components.featurizer.preprocess import read_image
from components.featurizer.runtimes import MXNET, ONNXRUNTIME, RUNTIMES, onnxruntime_installed, thread_count
from devkit.latency import one_at_a_time, percentiles


def _synthetic_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    """Camera-sized (640x480) frames, so resizing cost is part of the figure."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(count)]


BATCH_SIZES = (1, 8)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def featurizer_speeds(
    model_dir: str | Path, runtimes: Sequence[str], seconds: float = 5.0
) -> tuple[dict[str, dict[str, float]], dict[str, Featurizer]]:
    """Images per second (preprocessing of camera-sized frames included) of the same model on
    each runtime, at each batch size: `{runtime: {"1": ips, "8": ips}}`.

    The runtimes take turns in short rounds, so a neighbour's load on a shared machine falls on
    all of them alike rather than on whichever ran at the time."""
    featurizers = {runtime: Featurizer(model_dir, runtime=runtime) for runtime in runtimes}
    frames = _synthetic_frames(max(BATCH_SIZES))
    speeds = {runtime: {} for runtime in runtimes}
    rounds = 3
    for batch_size in BATCH_SIZES:
        batch = frames[:batch_size]
        done = dict.fromkeys(runtimes, 0)
        spent = dict.fromkeys(runtimes, 0.0)
        for featurizer in featurizers.values():
            featurizer.batch_size = batch_size
            featurizer.featurize(batch)  # warm-up: first call allocates
        for _ in range(rounds):
            for runtime, featurizer in featurizers.items():
                start = time.perf_counter()
                while time.perf_counter() - start < seconds / rounds:
                    featurizer.featurize(batch)
                    done[runtime] += batch_size
                spent[runtime] += time.perf_counter() - start
        for runtime in runtimes:
            speeds[runtime][str(batch_size)] = done[runtime] / spent[runtime]
    return speeds, featurizers


def available_runtimes(model_dir: str | Path) -> tuple[list[str], list[str]]:
    """(runtimes this model can run on here, notes on the ones it cannot)."""
    spec = read_spec(model_dir)
    usable, notes = [MXNET], []
    for runtime in spec.runtimes:
        if runtime == ONNXRUNTIME and not onnxruntime_installed():
            notes.append(f"{runtime}: not installed, left out")
        elif runtime in RUNTIMES:
            usable.append(runtime)
    return usable, notes


def bench_featurizer(model_dir: str | Path, runtimes: Sequence[str], seconds: float = 5.0) -> Iterator[str]:
    speeds, featurizers = featurizer_speeds(model_dir, runtimes, seconds)
    featurizer = next(iter(featurizers.values()))
    prep = featurizer.preprocessing
    yield (
        f"featurizer {featurizer.spec.arch or featurizer.spec.name}, input {prep.height}x{prep.width}, "
        f"{featurizer.dim}-d, fingerprint {featurizer.fingerprint[:12]}, {thread_count()} threads"
    )
    for runtime, by_batch in speeds.items():
        figures = []
        for batch, ips in by_batch.items():
            ratio = f" ({ips / speeds[MXNET][batch]:.2f}x mxnet)" if MXNET in speeds else ""
            figures.append(f"batch {batch}: {ips:7.1f} images/s{ratio}")
        yield f"{runtime:<12} " + "   ".join(figures)


def runtime_agreement(model_dir: str | Path, runtimes: Sequence[str], folder: str | Path) -> Iterator[str]:
    """For every image under `folder`: the cosine between each runtime's vector and MXNet's."""
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ImageError(f"{folder}: no images (.jpg, .jpeg, .png) under it")
    reference = Featurizer(model_dir, runtime=MXNET)
    others = [Featurizer(model_dir, runtime=r) for r in runtimes if r != MXNET]
    lowest = {f.runtime: (2.0, "") for f in others}
    for start in range(0, len(paths), 32):
        chunk = paths[start : start + 32]
        images = [read_image(p) for p in chunk]
        expected = reference.featurize(images)
        for featurizer in others:
            cosines = np.sum(featurizer.featurize(images) * expected, axis=1)
            worst = int(np.argmin(cosines))
            if cosines[worst] < lowest[featurizer.runtime][0]:
                lowest[featurizer.runtime] = (float(cosines[worst]), str(chunk[worst]))
    for runtime, (cosine, path) in lowest.items():
        yield (
            f"{runtime}: lowest cosine to MXNet's vector over {len(paths)} images of {folder}: "
            f"{cosine:.7f} ({path})"
        )


def bench_search(bundle_dir: str | Path, queries: int = 2000, k: int = 5) -> Iterator[str]:
    from components.local_search.search import IndexBundle

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
    ms = one_at_a_time(lambda query: bundle.search(query, k), vectors)
    yield f"{queries} queries, k={k}, one at a time with metadata: {percentiles(ms)}, max {ms.max():.3f} ms"
    bundle.close()


def _can_reconstruct(bundle) -> bool:
    try:
        bundle.index.reconstruct(0)
        return True
    except RuntimeError:
        return False
