"""`search-image`: what local_search would answer for a few photos (its min_score, product
grouping, near-duplicate folding and hard filters applied)."""

from __future__ import annotations

from pathlib import Path

from components.common.bundle import bundle_min_score
from components.featurizer.model import Featurizer
from components.featurizer.preprocess import read_image
from components.local_search.search import IndexBundle
from components.local_search.settings import LocalSearchSettings

SHOWN_FIELDS = ("item_id", "title", "category", "price", "location")


def search_images(
    images: list[Path],
    bundle_dir: Path,
    model_dir: Path,
    k: int = 5,
    min_score: float | None = None,
    *,
    keywords: str = "",
    labels: str = "",
    fold: bool = True,
) -> tuple[list[dict], float]:
    """One result per image: {image, no_match, matches: [{id, score, title, category, ...,
    variants}]}, and the min_score applied (the bundle's calibrated one unless `min_score` is
    given). `keywords` and `labels` are hard filters (KeywordError, LabelError)."""
    featurizer = Featurizer(model_dir)
    bundle = IndexBundle.open(bundle_dir, expected_fingerprint=featurizer.fingerprint)
    try:
        threshold = bundle_min_score(bundle.manifest, min_score)
        allowed = bundle.filter_ids(keywords, labels) if keywords or labels else None
        pictures = [read_image(path) for path in images]
        vectors = featurizer.featurize(pictures)
        fold_similarity = LocalSearchSettings().fold_similarity if fold else None
        answers = bundle.search(
            vectors, k=k, min_score=threshold, allowed=allowed, fold_similarity=fold_similarity
        )
    finally:
        bundle.close()
    results = []
    for path, matches in zip(images, answers):
        shown = [
            {
                "id": m.item["item_id"],
                "score": round(m.score, 4),
                **{key: m.item.get(key, "") for key in SHOWN_FIELDS if key != "item_id"},
                "variants": [{"id": v.item["item_id"], "title": v.item["title"]} for v in m.variants],
            }
            for m in matches
        ]
        results.append({"image": str(path), "no_match": not shown, "matches": shown})
    return results, threshold
