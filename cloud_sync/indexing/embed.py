"""Featurize every image of a catalog in batches, with a progress bar and per-row problems."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

from cloud_sync.indexing.catalog import Catalog, CatalogItem, CatalogProblem, read_image_bytes
from components.common.errors import ImageError
from components.featurizer.model import Featurizer
from components.featurizer.preprocess import decode_image, preprocess


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
    """Read, decode and featurize each item; `on_image(item, bgr)` sees every decoded image."""
    items: list[CatalogItem] = []
    problems = list(catalog.problems)
    chunks: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def flush():
        if pending:
            chunks.append(featurizer.featurize_tensors(np.stack(pending)))
            pending.clear()

    for item in tqdm(catalog.items, desc=desc, unit="img", disable=not progress, leave=False):
        try:
            image = decode_image(read_image_bytes(catalog.root, item.image), item.image)
            tensor = preprocess(image, featurizer.preprocessing)
        except ImageError as exc:
            problems.append(CatalogProblem(item.where, f"image {exc}"))
            continue
        if on_image is not None:
            on_image(item, image)
        pending.append(tensor)
        items.append(item)
        if len(pending) >= featurizer.batch_size:
            flush()
    flush()
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, featurizer.dim), np.float32)
    return FeaturizedCatalog(items, vectors, problems)
