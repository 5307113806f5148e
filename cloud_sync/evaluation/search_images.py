"""`search-image`: what local_search would answer for a few photos (its min_score applied)."""

from __future__ import annotations

from pathlib import Path

from components.common.bundle import bundle_min_score
from components.featurizer.model import Featurizer
from components.featurizer.preprocess import read_image
from components.local_search.search import IndexBundle

SHOWN_FIELDS = ("item_id", "title", "category", "price", "location")


def search_images(
    images: list[Path], bundle_dir: Path, model_dir: Path, k: int = 5, min_score: float | None = None
) -> tuple[list[dict], float]:
    """One result per image: {image, no_match, matches: [{id, score, title, category, ...}]},
    and the min_score applied (the bundle's calibrated one unless `min_score` is given)."""
    featurizer = Featurizer(model_dir)
    bundle = IndexBundle.open(bundle_dir, expected_fingerprint=featurizer.fingerprint)
    try:
        threshold = bundle_min_score(bundle.manifest, min_score)
        pictures = [read_image(path) for path in images]
        vectors = featurizer.featurize(pictures)
        answers = bundle.search(vectors, k=k, min_score=threshold)
    finally:
        bundle.close()
    results = []
    for path, matches in zip(images, answers):
        shown = [
            {
                "id": m.item["item_id"],
                "score": round(m.score, 4),
                **{key: m.item.get(key, "") for key in SHOWN_FIELDS if key != "item_id"},
            }
            for m in matches
        ]
        results.append({"image": str(path), "no_match": not shown, "matches": shown})
    return results, threshold
