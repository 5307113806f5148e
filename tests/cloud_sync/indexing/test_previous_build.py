"""build-index --previous: unchanged rows keep their vectors and thumbnails, only changed or
new rows are featurized, and the bundle equals a full rebuild."""

import json
import re
import shutil
import sqlite3

import numpy as np
import pytest
from click.testing import CliRunner

from cloud_sync.cli.main import main
from components.common.bundle import verify_bundle
from tests.conftest import demo_image, write_csv_catalog


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def bundle_vectors(bundle) -> dict[str, np.ndarray]:
    rows = [json.loads(line) for line in (bundle / "reuse" / "rows.jsonl").read_text().splitlines()]
    vectors = np.load(bundle / "reuse" / "vectors.npy")
    return {row["item_id"]: vector for row, vector in zip(rows, vectors, strict=True)}


def item_ids(bundle) -> list[str]:
    with sqlite3.connect(bundle / "items.sqlite") as db:
        return [row[0] for row in db.execute("SELECT item_id FROM items ORDER BY faiss_id")]


@pytest.fixture
def catalog(tmp_path):
    images = {f"img/{c}{n}.jpg": demo_image(c, n) for c in ("dress", "hat", "shoes") for n in range(3)}
    rows = [{"id": rel[4:-4], "image": rel, "title": rel, "category": rel[4:-5]} for rel in images]
    return write_csv_catalog(tmp_path / "catalog", rows, images)


def drop_row(root, item_id: str) -> None:
    lines = (root / "catalog.csv").read_text().splitlines(keepends=True)
    (root / "catalog.csv").write_text("".join(line for line in lines if not line.startswith(item_id + ",")))


def test_a_changed_image_and_a_removed_row_are_all_that_is_featurized(catalog, tiny_model, tmp_path):
    first = tmp_path / "v1"
    assert run("build-index", catalog, "--model", tiny_model, "--out", first).exit_code == 0
    shutil.copyfile(demo_image("shoes", 5), catalog / "img" / "hat1.jpg")
    drop_row(catalog, "dress2")

    second = tmp_path / "v2"
    result = run("build-index", catalog, "--model", tiny_model, "--out", second, "--previous", first)
    assert result.exit_code == 0, result.output
    assert "reused 7, featurized 1, removed 1" in result.output
    full = tmp_path / "full"
    assert run("build-index", catalog, "--model", tiny_model, "--out", full).exit_code == 0

    assert item_ids(second) == item_ids(full) and "dress2" not in item_ids(second)
    incremental, rebuilt = bundle_vectors(second), bundle_vectors(full)
    for item_id, vector in rebuilt.items():
        assert float(vector @ incremental[item_id]) >= 0.9999, item_id
    manifest = verify_bundle(second)
    assert manifest["files"] == json.loads((full / "manifest.json").read_text())["files"]
    assert not any(rel.startswith("reuse/") for rel in manifest["files"])
    assert set(manifest["reuse"]) == {"reuse/rows.jsonl", "reuse/vectors.npy"}


def test_a_previous_bundle_of_another_model_reuses_nothing(catalog, tiny_model, tmp_path):
    first = tmp_path / "v1"
    assert run("build-index", catalog, "--model", tiny_model, "--out", first).exit_code == 0
    manifest = json.loads((first / "manifest.json").read_text())
    manifest["model"]["fingerprint"] = "0" * 64
    (first / "manifest.json").write_text(json.dumps(manifest))
    result = run("build-index", catalog, "--model", tiny_model, "--out", tmp_path / "v2", "--previous", first)
    assert result.exit_code == 0, result.output
    assert "built with another model; every row featurized" in result.output
    assert "reused 0, featurized 9, removed 0" in result.output


def test_a_previous_bundle_whose_reuse_files_were_altered_is_refused(catalog, tiny_model, tmp_path):
    first = tmp_path / "v1"
    assert run("build-index", catalog, "--model", tiny_model, "--out", first).exit_code == 0
    vectors = first / "reuse" / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-1] ^= 0xFF
    vectors.write_bytes(bytes(data))
    result = run("build-index", catalog, "--model", tiny_model, "--out", tmp_path / "v2", "--previous", first)
    assert result.exit_code == 1
    assert re.search(r"error: .*vectors\.npy: does not match its manifest", result.output), result.output
    assert "Traceback" not in result.output


def test_a_previous_that_is_not_a_bundle_is_one_line(catalog, tiny_model, tmp_path):
    out = tmp_path / "v2"
    result = run("build-index", catalog, "--model", tiny_model, "--out", out, "--previous", tmp_path)
    assert result.exit_code == 1 and result.output.startswith("error: ") and "manifest.json" in result.output


def test_a_published_version_in_s3_is_reused_downloading_only_what_reuse_needs(
    catalog, tiny_model, tmp_path, s3_bucket
):
    from cloud_sync.aws import client
    from cloud_sync.publishing.publish_index import publish_bundle

    first = tmp_path / "v1"
    assert (
        run("build-index", catalog, "--model", tiny_model, "--out", first, "--index-version", 4).exit_code
        == 0
    )
    publish_bundle(first, s3_bucket, "shop", s3=client("s3"))
    shutil.copyfile(demo_image("shoes", 5), catalog / "img" / "hat1.jpg")

    previous = f"s3://{s3_bucket}/shop/indexes/4"
    second = tmp_path / "v2"
    result = run("build-index", catalog, "--model", tiny_model, "--out", second, "--previous", previous)
    assert result.exit_code == 0, result.output
    assert "reused 8, featurized 1, removed 0" in result.output
    assert (
        verify_bundle(second)["files"]["thumbnails/0.jpg"]
        == verify_bundle(first)["files"]["thumbnails/0.jpg"]
    )

    missing = run("build-index", catalog, "--model", tiny_model, "--out", tmp_path / "v3", "--previous",
                  f"s3://{s3_bucket}/shop/indexes/5")  # fmt: skip
    assert (
        missing.exit_code == 1
        and missing.output.startswith("error: s3://")
        and "Traceback" not in missing.output
    )
