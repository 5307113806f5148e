"""Featurize every image of a catalog in batches, with a progress bar and per-row problems."""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from cloud_sync.indexing.catalog import Catalog, CatalogItem, CatalogProblem, read_image_bytes
from components.common.errors import ImageError
from components.featurizer.model import Featurizer
from components.featurizer.preprocess import decode_image, preprocess

MAX_DECODE_THREADS = 8
DECODE_AHEAD_BATCHES = 4  # images decoded ahead of the model, in batches
MAX_BATCHES_QUEUED = 2  # batches waiting for the model


@dataclass
class FeaturizedCatalog:
    items: list[CatalogItem]  # the rows whose image could be featurized, in catalog order
    vectors: np.ndarray  # (len(items), dim) float32, L2-normalised
    problems: list[CatalogProblem]  # the catalog's row problems plus unreadable images


def featurize_catalog(
    catalog: Catalog,
    featurizer: Featurizer,
    *,
    desc: str = "featurizing",
    progress: bool = True,
    on_image: Callable[[CatalogItem, np.ndarray], None] | None = None,
) -> FeaturizedCatalog:
    """Read, decode and featurize each item; `on_image(item, bgr)` sees every decoded image.

    Three stages overlap so that every core works: a pool of threads reads, decodes and
    preprocesses images (and runs `on_image`, so it is called from those threads, in any
    order), the calling thread collects them in catalog order into batches, and one thread
    runs the model on the batches. OpenCV and the runtimes release the GIL while they compute.
    """
    items: list[CatalogItem] = []
    problems = list(catalog.problems)
    batches: deque[Future] = deque()  # model results, in catalog order
    chunks: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def load(item: CatalogItem) -> np.ndarray | ImageError:
        try:
            image = decode_image(read_image_bytes(catalog.root, item.image), item.image)
            tensor = preprocess(image, featurizer.preprocessing)
        except ImageError as exc:
            return exc
        if on_image is not None:
            on_image(item, image)
        return tensor

    with ThreadPoolExecutor(decode_threads(), "decode") as decoders, ThreadPoolExecutor(1, "model") as model:

        def flush():
            if pending:
                batches.append(model.submit(featurizer.featurize_tensors, np.stack(pending)))
                pending.clear()
            while len(batches) > MAX_BATCHES_QUEUED:  # bounds the memory held by waiting batches
                chunks.append(batches.popleft().result())

        loaded = ahead(decoders, load, catalog.items, window=DECODE_AHEAD_BATCHES * featurizer.batch_size)
        for item, outcome in tqdm(
            loaded, total=len(catalog.items), desc=desc, unit="img", disable=not progress, leave=False
        ):
            if isinstance(outcome, ImageError):
                problems.append(CatalogProblem(item.where, f"image {outcome}"))
                continue
            pending.append(outcome)
            items.append(item)
            if len(pending) >= featurizer.batch_size:
                flush()
        flush()
        chunks.extend(batch.result() for batch in batches)
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, featurizer.dim), np.float32)
    return FeaturizedCatalog(items, vectors, problems)


def decode_threads() -> int:
    return max(1, min(MAX_DECODE_THREADS, os.cpu_count() or 1))


def ahead(pool: ThreadPoolExecutor, work: Callable, items: list, window: int) -> Iterator[tuple]:
    """(item, work(item)) in the order of `items`, with at most `window` of them in progress."""
    running: deque[tuple] = deque()
    for item in items:
        running.append((item, pool.submit(work, item)))
        if len(running) >= window:
            done, future = running.popleft()
            yield done, future.result()
    while running:
        done, future = running.popleft()
        yield done, future.result()
