"""build-index --engine ray on a real local Ray cluster (a head and a worker node on 127.0.0.1),
with the catalog's images and the vector shards in a moto S3 server: the same bundle as
--engine local, and the same reuse with --previous."""

import json
import os
import secrets
import sqlite3
import subprocess
import sys

import boto3
import numpy as np
import pytest
from click.testing import CliRunner

from cloud_sync.cli.main import main
from tests.conftest import demo_image, write_csv_catalog
from tests.support.ray_cluster import ray_cluster

CATEGORIES = ("dress", "hat", "shoes", "pants", "skirt", "t-shirt")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def s3_catalog(s3_bucket, tmp_path):
    """18 demo images in S3 and one object that is not an image, named by a catalog.csv."""
    s3 = boto3.client("s3")
    rows = []
    for category in CATEGORIES:
        for n in range(3):
            key = f"images/{category}{n}.jpg"
            s3.put_object(Bucket=s3_bucket, Key=key, Body=demo_image(category, n).read_bytes())
            rows.append({"id": f"{category}{n}", "image": f"s3://{s3_bucket}/{key}", "category": category})
    s3.put_object(Bucket=s3_bucket, Key="images/broken.jpg", Body=b"not an image")
    rows.insert(4, {"id": "broken", "image": f"s3://{s3_bucket}/images/broken.jpg", "category": "hat"})
    return write_csv_catalog(tmp_path / "catalog", rows)


@pytest.fixture
def cluster(aws_env, monkeypatch):
    # token authentication, with a token of this cluster's own (inherited by its nodes)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    with ray_cluster() as address:  # started after aws_env: nodes read moto
        yield address


def vectors_by_id(bundle) -> dict[str, np.ndarray]:
    rows = [json.loads(line) for line in (bundle / "reuse" / "rows.jsonl").read_text().splitlines()]
    return dict(zip((row["item_id"] for row in rows), np.load(bundle / "reuse" / "vectors.npy"), strict=True))


def item_ids(bundle) -> list[str]:
    with sqlite3.connect(bundle / "items.sqlite") as db:
        return [row[0] for row in db.execute("SELECT item_id FROM items ORDER BY faiss_id")]


def test_a_ray_build_sends_no_usage_statistics_unless_asked():
    # in a child process: Ray reads its authentication settings once, at import, and the
    # cluster fixture sets them for this process
    check = (
        "from cloud_sync.indexing.ray_engine import quiet_ray_environment; quiet_ray_environment(); "
        "from ray._common.usage.usage_lib import usage_stats_enabled; print(usage_stats_enabled())"
    )

    def enabled(**env):
        environment = {k: v for k, v in os.environ.items() if k != "RAY_USAGE_STATS_ENABLED"} | env
        done = subprocess.run(
            [sys.executable, "-c", check], env=environment, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert enabled() == "False"
    assert enabled(RAY_USAGE_STATS_ENABLED="1") == "True"  # an operator who opts in keeps it


@pytest.mark.timeout(600)
def test_ray_builds_the_bundle_the_local_engine_builds(cluster, s3_catalog, s3_bucket, tiny_model, tmp_path):
    common = ("--model", tiny_model, "--skip-bad-rows", "--index-version", 3)
    local = run("build-index", s3_catalog, "--out", tmp_path / "local", *common)
    assert local.exit_code == 0, local.output
    shards = f"s3://{s3_bucket}/shards/run-1"
    on_ray = run(
        "build-index", s3_catalog, "--out", tmp_path / "ray", *common,
        "--engine", "ray", "--ray-address", cluster, "--shards", shards,
    )  # fmt: skip
    assert on_ray.exit_code == 0, on_ray.output
    assert "bad row: catalog.csv:6: image s3://" in on_ray.output and "not a decodable image" in on_ray.output
    assert "18 items" in on_ray.output

    assert (
        item_ids(tmp_path / "ray") == item_ids(tmp_path / "local") and len(item_ids(tmp_path / "ray")) == 18
    )
    on_ray_vectors, local_vectors = vectors_by_id(tmp_path / "ray"), vectors_by_id(tmp_path / "local")
    for item_id, vector in local_vectors.items():
        assert float(vector @ on_ray_vectors[item_id]) >= 0.9999, item_id
    listed = boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="shards/run-1/")
    assert any(obj["Key"].endswith(".parquet") for obj in listed.get("Contents", []))

    boto3.client("s3").put_object(
        Bucket=s3_bucket, Key="images/hat1.jpg", Body=demo_image("shoes", 7).read_bytes()
    )
    again = run(
        "build-index", s3_catalog, "--out", tmp_path / "ray-2", *common, "--previous", tmp_path / "ray",
        "--engine", "ray", "--ray-address", cluster, "--shards", f"s3://{s3_bucket}/shards/run-2",
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "reused 17, featurized 1, removed 0" in again.output
