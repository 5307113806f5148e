"""How near are near-duplicates? Measures what local_search's `fold_similarity` is chosen from.

Featurizes photos of a class-folder catalog (default: the clothing train split) with a
featurizer, then prints the distribution of cosine similarity
  * between genuinely different photos (every pair of the photos taken), and
  * between a photo and copies of it as catalogs hold them: re-encoded as JPEG at lower
    quality, resized smaller, and both.
A fold threshold must sit above nearly all different pairs and below nearly all copies.

    .venv/bin/python scripts/measure_folding.py /work/shared/data/clothing-dataset-small/train \\
        --model models/demo-featurizer --limit 600
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.featurizer.model import Featurizer  # noqa: E402
from components.featurizer.preprocess import read_image  # noqa: E402

COPIES = {
    "jpeg q40": lambda image: _jpeg(image, 40),
    "half size": lambda image: _resize(image, 0.5),
    "320 px + jpeg q60": lambda image: _jpeg(_resize(image, 320 / max(image.shape[:2])), 60),
}
PERCENTILES = (50, 90, 99, 99.9, 99.99)
THRESHOLDS = (0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.resize(image, (max(1, int(width * factor)), max(1, int(height * factor))), cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("catalog", type=Path, help="class-folder catalog (<category>/<image>)")
    parser.add_argument("--model", type=Path, default=Path("models/demo-featurizer"))
    parser.add_argument("--limit", type=int, default=600, help="photos taken, spread over the classes")
    args = parser.parse_args()
    paths = sorted(p for p in args.catalog.rglob("*.jpg"))
    paths = [paths[i] for i in np.linspace(0, len(paths) - 1, min(args.limit, len(paths))).astype(int)]
    featurizer = Featurizer(args.model)
    images = [read_image(path) for path in paths]
    originals = featurizer.featurize(images)
    cosine = originals @ originals.T
    different = cosine[np.triu_indices(len(paths), k=1)]
    print(f"{len(paths)} photos of {args.catalog}, model {args.model} ({featurizer.fingerprint[:12]})")
    _print("different photos", different, high=True)
    copied = []
    for name, copy in COPIES.items():
        copies = featurizer.featurize([copy(image) for image in images])
        copied.append((originals * copies).sum(1))
        _print(f"copy: {name}", copied[-1], high=False)
    copied = np.concatenate(copied)
    for threshold in THRESHOLDS:
        print(
            f"  at {threshold:.2f}: {int((different >= threshold).sum())} of {len(different)} pairs of "
            f"different photos would fold, {(copied >= threshold).mean():.1%} of the copies fold"
        )


def _print(name: str, values: np.ndarray, high: bool) -> None:
    shown = PERCENTILES if high else tuple(100 - p for p in PERCENTILES)
    figures = ", ".join(f"p{p:g} {np.percentile(values, p):.4f}" for p in shown)
    extreme = f"max {values.max():.4f}" if high else f"min {values.min():.4f}"
    print(f"{name:>24} ({len(values)}): {figures}, {extreme}")


if __name__ == "__main__":
    main()
