"""Exact-item retrieval of camera-like re-shots: can the kiosk find the very product it is shown?

Each chosen catalog photo is re-shot the way a kiosk camera sees it (cropped or held further
away, rotated, mirrored, shop lighting, blur, sensor noise; `CameraAugment` with its seed),
then searched against the whole catalog. A hit is the photographed item itself, so this
measures appearance, not just category.
"""

from __future__ import annotations

import numpy as np

from cloud_sync.indexing.catalog import read_image_bytes
from cloud_sync.training.augment import CameraAugment
from components.featurizer.preprocess import decode_image

RESHOT_SIZE = 320  # pixels of the re-shot frame, about what the kiosk crops from its camera


def reshoot(items, root, rng: np.random.Generator) -> list[np.ndarray]:
    """Each item's photo as a kiosk camera might see it (one seeded `CameraAugment` draw)."""
    augment = CameraAugment(size=RESHOT_SIZE)
    return [augment(decode_image(read_image_bytes(root, item.image), item.image), rng) for item in items]


def reshot_recall(catalog, catalog_root, featurizer, count: int, ks=(1, 5), seed: int = 0) -> dict:
    """recall@k (k in `ks`) of `count` seeded re-shots; `catalog` is a FeaturizedCatalog."""
    rng = np.random.default_rng(seed)
    n = len(catalog.items)
    chosen = rng.choice(n, size=min(count, n), replace=False)
    vectors = featurizer.featurize(reshoot([catalog.items[row] for row in chosen], catalog_root, rng))
    scores = vectors @ catalog.vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")
    # rows of the same product (same id) all count as the item itself
    ids = np.array([item.id for item in catalog.items])
    hit_rank = [int(np.argmax(ids[order[q]] == ids[row])) for q, row in enumerate(chosen)]
    return {
        "queries": len(chosen),
        "seed": seed,
        "recall_at_k": {str(k): float(np.mean([r < k for r in hit_rank])) for k in ks},
    }
