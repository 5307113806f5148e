"""Fixtures shared by all test folders: committed demo data and a tiny featurizer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_CATALOG = REPO / "demo" / "catalog"
DEMO_QUERIES = REPO / "demo" / "queries"


@pytest.fixture(scope="session", autouse=True)
def demo_model_assembled():
    """./setup.sh assembles the demo model; a checkout tested without it gets it here."""
    from cloud_sync.training.assemble import ensure_assembled

    ensure_assembled(REPO / "models" / "demo-featurizer")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An initialised mobilenet0.5 featurizer at 64x64: fast, and deterministic per seed."""
    import mxnet as mx

    from cloud_sync.training.export import export_zoo_featurizer

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


def demo_class_folders(root: Path, categories: tuple[str, ...], per_category: int) -> Path:
    """A class-folder catalog at `root`: the first `per_category` demo images of each category,
    named 0.jpg, 1.jpg, ..."""
    for category in categories:
        (root / category).mkdir(parents=True, exist_ok=True)
        for n in range(per_category):
            shutil.copyfile(demo_image(category, n), root / category / f"{n}.jpg")
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


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    """A real moto server over HTTP on 127.0.0.1 (free port), stopped after the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_endpoint, monkeypatch) -> str:
    """Point plain boto3 (and subprocesses) at the moto server with dummy credentials."""
    for name in ("AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


@pytest.fixture
def s3_bucket(aws_env, request) -> str:
    """A fresh, empty bucket on the moto server (unique per test)."""
    import re
    import uuid

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:30].strip("-")
    bucket = f"{name}-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket
