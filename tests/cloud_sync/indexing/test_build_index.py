import json
import sqlite3

import pytest
from click.testing import CliRunner

from cloud_sync.cli.main import main
from components.common.bundle import sha256_file
from components.featurizer.model import fingerprint
from components.local_search.search import IndexBundle
from tests.conftest import demo_image, write_csv_catalog
from tests.support.images import png_bomb


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def csv_catalog_with_bad_image(tmp_path):
    images = {f"img/{c}{n}.jpg": demo_image(c, n) for c in ("dress", "hat") for n in range(3)}
    rows = [
        {
            "id": rel.split("/")[1][:-4],
            "image": rel,
            "title": rel,
            "category": rel[4:-5],
            "price": "9.99",
            "location": "Aisle 1",
        }
        for rel in images
    ]
    rows.insert(2, {"id": "broken", "image": "img/broken.jpg", "title": "corrupt", "category": "dress"})
    root = write_csv_catalog(tmp_path / "catalog", rows, images)
    (root / "img" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_build_writes_a_complete_verified_bundle(class_folders, tiny_model, tmp_path):
    out = tmp_path / "bundle"
    result = run("build-index", class_folders, "--model", tiny_model, "--out", out, "--index-version", 7)
    assert result.exit_code == 0, result.output
    assert "12 items, index Flat" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["index_version"] == 7 and manifest["item_count"] == 12 and manifest["metric"] == "cosine"
    assert manifest["index"] == {
        "factory": "Flat",
        "search_params": "",
        "reason": manifest["index"]["reason"],
    }
    assert manifest["model"]["fingerprint"] == fingerprint(tiny_model)
    assert manifest["model"]["dim"] == 512 and manifest["model"]["input_size"] == [64, 64]
    assert len([f for f in manifest["files"] if f.startswith("thumbnails/")]) == 12
    assert set(manifest["reuse"]) == {"reuse/rows.jsonl", "reuse/vectors.npy"}  # nothing left behind
    for rel, entry in manifest["files"].items():
        assert (out / rel).stat().st_size == entry["size"] and sha256_file(out / rel) == entry["sha256"]
    rows = (
        sqlite3.connect(out / "items.sqlite")
        .execute("SELECT faiss_id, item_id, category FROM items")
        .fetchall()
    )
    assert [r[0] for r in rows] == list(range(12)) and rows[0][2] == "dress"


def test_bad_row_fails_the_build_by_default_and_names_its_line(
    csv_catalog_with_bad_image, tiny_model, tmp_path
):
    out = tmp_path / "bundle"
    result = run("build-index", csv_catalog_with_bad_image, "--model", tiny_model, "--out", out)
    assert result.exit_code == 1
    assert "bad row: catalog.csv:4: image img/broken.jpg: not a decodable image" in result.output
    assert "1 bad row(s)" in result.output and "--skip-bad-rows" in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.glob(".bundle*"))


def test_skip_bad_rows_reports_the_row_and_builds_the_rest(csv_catalog_with_bad_image, tiny_model, tmp_path):
    out = tmp_path / "bundle"
    result = run(
        "build-index", csv_catalog_with_bad_image, "--model", tiny_model, "--out", out, "--skip-bad-rows"
    )
    assert result.exit_code == 0, result.output
    assert "bad row: catalog.csv:4" in result.output and "skipped 1 bad row(s)" in result.output
    bundle = IndexBundle.open(out)
    assert len(bundle) == 6 and bundle.manifest["catalog"]["skipped_rows"] == 1
    ids = {row["item_id"] for row in bundle.items(list(range(6))).values()}
    assert "broken" not in ids and "dress0" in ids


def test_a_decompression_bomb_in_the_catalog_is_a_bad_row_named_with_its_size(
    class_folders, tiny_model, tmp_path
):
    """Issue 14, item 3: refused from its header, never decoded (it would take 1.2 GB)."""
    (class_folders / "hat" / "bomb.png").write_bytes(png_bomb(20000, 20000))
    out = tmp_path / "bundle"
    result = run("build-index", class_folders, "--model", tiny_model, "--out", out, "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert (
        "hat/bomb.png: the image is 20000x20000 pixels (400.0 megapixels); the limit is 50 megapixels"
        in result.output
    )
    assert IndexBundle.open(out).manifest["catalog"]["skipped_rows"] == 1


def test_a_failed_rebuild_leaves_the_existing_bundle_untouched(
    class_folders, csv_catalog_with_bad_image, tiny_model, tmp_path
):
    out = tmp_path / "bundle"
    assert run("build-index", class_folders, "--model", tiny_model, "--out", out).exit_code == 0
    before = (out / "manifest.json").read_bytes()
    assert run("build-index", csv_catalog_with_bad_image, "--model", tiny_model, "--out", out).exit_code == 1
    assert (out / "manifest.json").read_bytes() == before
    IndexBundle.open(out)  # still verifies
    assert run("build-index", class_folders, "--model", tiny_model, "--out", out).exit_code == 0
    assert (
        json.loads((out / "manifest.json").read_text())["index_version"] > json.loads(before)["index_version"]
    )


def test_staging_folders_left_by_a_killed_build_are_removed_and_said_so(class_folders, tiny_model, tmp_path):
    """Issue 14, item 10: a build killed mid-way left .bundle.tmp-* beside --out for ever.
    One still in use (its build holds its lock) is left alone."""
    import fcntl
    import os

    killed = tmp_path / ".bundle.tmp-k1ll3d"
    (killed / "thumbnails").mkdir(parents=True)
    (killed / "thumbnails" / "0.jpg").write_bytes(b"half a build")
    os.utime(killed, (1_000_000_000, 1_000_000_000))
    half_swapped = tmp_path / ".bundle.old-s0m3"
    half_swapped.mkdir()
    os.utime(half_swapped, (1_000_000_000, 1_000_000_000))
    running = tmp_path / ".bundle.tmp-runn1ng"
    running.mkdir()
    os.utime(running, (1_000_000_000, 1_000_000_000))
    held = os.open(running, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # another build, still writing there
    try:
        result = run("build-index", class_folders, "--model", tiny_model, "--out", tmp_path / "bundle")
    finally:
        os.close(held)
    assert result.exit_code == 0, result.output
    assert f"removed {killed} (left by an interrupted build)" in result.output
    assert f"removed {half_swapped} (left by an interrupted build)" in result.output
    assert not killed.exists() and not half_swapped.exists() and running.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".bundle.tmp-runn1ng"]


def test_refuses_to_overwrite_a_folder_that_is_not_a_bundle(class_folders, tiny_model, tmp_path):
    result = run("build-index", class_folders, "--model", tiny_model, "--out", class_folders)
    assert result.exit_code == 1 and "is not an index bundle" in result.output
    assert len(list(class_folders.rglob("*.jpg"))) == 12


def test_explicit_factory_l2_metric_and_bad_factory(class_folders, tiny_model, tmp_path):
    out = tmp_path / "hnsw"
    result = run(
        "build-index",
        class_folders,
        "--model",
        tiny_model,
        "--out",
        out,
        "--index",
        "HNSW16",
        "--search-params",
        "efSearch=32",
        "--metric",
        "l2",
    )
    assert result.exit_code == 0, result.output
    bundle = IndexBundle.open(out)
    assert (
        bundle.manifest["index"]["factory"] == "HNSW16"
        and bundle.manifest["index"]["search_params"] == "efSearch=32"
    )
    top = bundle.search(bundle.index.reconstruct(5)[None, :], k=1)[0][0]
    assert top.item["item_id"] == bundle.items([5])[5]["item_id"] and top.score == pytest.approx(
        1.0, abs=1e-4
    )
    result = run(
        "build-index", class_folders, "--model", tiny_model, "--out", tmp_path / "x", "--index", "Bogus12"
    )
    assert result.exit_code == 2 and "faiss cannot build 'Bogus12'" in result.output


def test_missing_model_file_is_one_line_error(class_folders, tiny_model, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "featurizer-v1-symbol.json").unlink()
    result = run("build-index", class_folders, "--model", model, "--out", tmp_path / "b")
    assert result.exit_code == 1 and "featurizer-v1-symbol.json: missing" in result.output
    assert "Traceback" not in result.output


def test_a_build_with_the_assembled_default_model_never_imports_mxnet(class_folders, tmp_path):
    """Importing MXNet takes seconds: more than the rest of an incremental build of thousands of
    unchanged rows. With ONNX Runtime installed and the default model assembled, nothing needs it."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from cloud_sync.cli.main import main\n"
        "try:\n"
        f"    main(['build-index', {str(class_folders)!r}, '--out', {str(tmp_path / 'b')!r}])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print('mxnet imported' if 'mxnet' in sys.modules else 'no mxnet')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "no mxnet"
