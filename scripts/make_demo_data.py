"""Make the committed demo data from clothing-dataset-small (CC0): a catalog and query photos.

    python scripts/make_demo_data.py [--source ../shared/data/clothing-dataset-small]

Writes demo/catalog/ (catalog.csv + images from the train split, with a title from the
item's main colour, a price and an aisle) and demo/queries/ (class folders from the test
split). Picks are deterministic (sorted file names), so re-running gives the same files.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PER_CLASS_CATALOG = 20
PER_CLASS_QUERIES = 5
AISLES = {
    "dress": "Aisle 1, women",
    "skirt": "Aisle 1, women",
    "shirt": "Aisle 2, shirts",
    "longsleeve": "Aisle 2, shirts",
    "t-shirt": "Aisle 3, casual",
    "shorts": "Aisle 3, casual",
    "pants": "Aisle 4, trousers",
    "outwear": "Aisle 5, coats",
    "shoes": "Aisle 6, footwear",
    "hat": "Aisle 7, accessories",
}
PRICE_RANGES = {
    "dress": (29, 89),
    "skirt": (19, 59),
    "shirt": (19, 59),
    "longsleeve": (15, 45),
    "t-shirt": (9, 29),
    "shorts": (15, 39),
    "pants": (29, 79),
    "outwear": (49, 199),
    "shoes": (39, 129),
    "hat": (9, 35),
}
NAMES = {"t-shirt": "T-shirt", "longsleeve": "Long-sleeve top", "outwear": "Jacket"}


def colour_name(image: np.ndarray) -> str:
    """Main colour of the picture's centre, in plain words."""
    h, w = image.shape[:2]
    centre = image[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    hsv = cv2.cvtColor(centre, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.float32)
    hue, sat, val = np.median(hsv[:, 0]), np.median(hsv[:, 1]), np.median(hsv[:, 2])
    if val < 60:
        return "Black"
    if sat < 45:
        return "White" if val > 190 else "Grey"
    for limit, name in (
        (8, "Red"),
        (20, "Orange"),
        (33, "Yellow"),
        (85, "Green"),
        (130, "Blue"),
        (160, "Purple"),
        (180, "Red"),
    ):
        if hue <= limit:
            return name
    return "Red"


def price(category: str, key: str) -> str:
    low, high = PRICE_RANGES.get(category, (10, 50))
    step = int(hashlib.sha256(key.encode()).hexdigest(), 16) % (high - low + 1)
    return f"{low + step}.99"


def make_catalog(source: Path, out: Path) -> int:
    rows = []
    for category_dir in sorted(p for p in (source / "train").iterdir() if p.is_dir()):
        category = category_dir.name
        for n, image_path in enumerate(sorted(category_dir.glob("*.jpg"))[:PER_CLASS_CATALOG], start=1):
            rel = Path("images") / category / image_path.name
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image_path, out / rel)
            colour = colour_name(cv2.imread(str(image_path)))
            rows.append(
                {
                    "id": f"{category}-{n:03d}",
                    "image": rel.as_posix(),
                    "title": f"{colour} {NAMES.get(category, category).lower()}".capitalize(),
                    "category": category,
                    "price": price(category, image_path.name),
                    "location": AISLES.get(category, "Ask staff"),
                    "colour": colour.lower(),
                    "source_file": f"train/{category}/{image_path.name}",
                }
            )
    with open(out / "catalog.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def make_queries(source: Path, out: Path) -> int:
    count = 0
    for category_dir in sorted(p for p in (source / "test").iterdir() if p.is_dir()):
        for image_path in sorted(category_dir.glob("*.jpg"))[:PER_CLASS_QUERIES]:
            (out / category_dir.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image_path, out / category_dir.name / image_path.name)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared/data/clothing-dataset-small")
    parser.add_argument("--out", type=Path, default=ROOT / "demo")
    args = parser.parse_args()
    if not (args.source / "train").is_dir():
        parser.error(f"{args.source}: no train/ folder (clothing-dataset-small expected)")
    for sub in ("catalog", "queries"):
        shutil.rmtree(args.out / sub, ignore_errors=True)
    items = make_catalog(args.source, args.out / "catalog")
    queries = make_queries(args.source, args.out / "queries")
    shutil.copyfile(args.source / "LICENSE", args.out / "LICENSE-clothing-dataset.txt")
    print(
        f"wrote {items} catalog items to {args.out / 'catalog'} "
        f"and {queries} queries to {args.out / 'queries'}"
    )


if __name__ == "__main__":
    main()
