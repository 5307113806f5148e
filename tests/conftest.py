"""Fixtures shared by all test folders: committed demo data and a tiny featurizer."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_CATALOG = REPO / "demo" / "catalog"
DEMO_QUERIES = REPO / "demo" / "queries"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An initialised mobilenet0.5 featurizer at 64x64: fast, and deterministic per seed."""
    import mxnet as mx

    from components.featurizer.export import export_zoo_featurizer

    out = tmp_path_factory.mktemp("models") / "tiny"
    mx.random.seed(0)
    export_zoo_featurizer("mobilenet0.5", out, image_size=64)
    return out


@pytest.fixture
def class_folders(tmp_path) -> Path:
    """A class-folder catalog: 4 demo catalog images for each of 3 categories."""
    root = tmp_path / "class-catalog"
    for category in ("dress", "shoes", "hat"):
        (root / category).mkdir(parents=True)
        for image in sorted((DEMO_CATALOG / "images" / category).glob("*.jpg"))[:4]:
            shutil.copyfile(image, root / category / image.name)
    return root


def write_csv_catalog(root: Path, rows: list[dict], images: dict[str, Path] | None = None) -> Path:
    """A catalog.csv folder; `images` maps relative names to files to copy beside it."""
    import csv

    root.mkdir(parents=True, exist_ok=True)
    for rel, source in (images or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / rel)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(root / "catalog.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return root


def demo_image(category: str, n: int = 0) -> Path:
    return sorted((DEMO_CATALOG / "images" / category).glob("*.jpg"))[n]
