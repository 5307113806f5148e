"""`visual-search fine-tune` end to end on a few demo images (one epoch at 64x64: seconds)."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from cloud_sync.cli.main import main
from components.featurizer.model import Featurizer, fingerprint
from components.featurizer.preprocess import read_image
from tests.conftest import DEMO_CATALOG, demo_image, write_csv_catalog

CATEGORIES = ("dress", "hat", "shoes")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def fine_tune(data, out, start, *extra):
    return run(
        "fine-tune",
        "--data",
        data,
        "--out",
        out,
        "--from",
        start,
        "--epochs",
        1,
        "--image-size",
        64,
        "--embedding-dim",
        32,
        "--batch-size",
        8,
        "--quiet",
        *extra,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two fine-tunes with the same seed from one exported zoo featurizer, on 6 images x 3 classes."""
    root = tmp_path_factory.mktemp("fine-tune")
    data = root / "catalog"
    for category in CATEGORIES:
        (data / category).mkdir(parents=True)
        for image in sorted((DEMO_CATALOG / "images" / category).glob("*.jpg"))[:6]:
            shutil.copyfile(image, data / category / image.name)
    (data / "hat" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    start = root / "start"
    exported = run("export-featurizer", "--arch", "mobilenet0.25", "--image-size", 64, "--out", start)
    assert exported.exit_code == 0, exported.output
    first, second = (
        fine_tune(data, root / "a", start, "--seed", 3),
        fine_tune(data, root / "b", start, "--seed", 3),
    )
    return {"data": data, "start": start, "a": root / "a", "b": root / "b", "first": first, "second": second}


def test_fine_tune_writes_a_loadable_featurizer_that_differs_from_its_start(runs):
    assert runs["first"].exit_code == 0, runs["first"].output
    assert f"wrote {runs['a']}: mobilenet0.25, 32-d embedding, input 64x64" in runs["first"].output
    model = Featurizer(runs["a"])
    assert model.dim == 32 and model.fingerprint != fingerprint(runs["start"])
    vectors = model.featurize([read_image(demo_image(c)) for c in CATEGORIES])
    assert vectors.shape == (3, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    symbol = (runs["a"] / model.spec.symbol_file).read_text()
    assert "ft1_embedding_" in symbol and "cosine_classifier" not in symbol  # no classifier shipped


def test_provenance_is_recorded_and_the_bad_image_reported(runs):
    extra = json.loads((runs["a"] / "featurizer.json").read_text())["extra"]
    assert extra["command"].startswith("visual-search fine-tune --data")
    assert extra["categories"] == list(CATEGORIES) and extra["epochs_run"] == 1
    assert extra["train_images"] + extra["val_images"] == 18 and extra["skipped_images"] == 1
    assert 0 <= extra["best_val_accuracy"] <= 1 and extra["seconds"] > 0
    assert fingerprint(runs["start"])[:12] in extra["started_from"]
    assert f"skipped {runs['data'] / 'hat' / 'broken.jpg'}: not a decodable image" in runs["first"].output


def test_same_seed_gives_the_same_weights(runs):
    assert runs["second"].exit_code == 0, runs["second"].output
    assert fingerprint(runs["a"]) == fingerprint(runs["b"])


def test_a_fine_tuned_featurizer_can_be_fine_tuned_again(runs, tmp_path):
    result = fine_tune(
        runs["data"], tmp_path / "again", runs["a"], "--embedding-dim", 16, "--val", runs["data"]
    )
    assert result.exit_code == 0, result.output
    model = Featurizer(tmp_path / "again")  # new layers are ft2_*, clear of the ft1_* ones
    assert model.dim == 16 and "ft2_embedding_" in (tmp_path / "again" / model.spec.symbol_file).read_text()


def test_missing_folder_is_one_clear_line(tmp_path):
    result = run("fine-tune", "--data", tmp_path / "nope", "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {tmp_path / 'nope'}: catalog folder not found"


def test_a_single_category_is_refused(tmp_path):
    (tmp_path / "cat" / "dress").mkdir(parents=True)
    shutil.copyfile(demo_image("dress"), tmp_path / "cat" / "dress" / "a.jpg")
    result = run("fine-tune", "--data", tmp_path / "cat", "--out", tmp_path / "out")
    assert result.exit_code == 1 and "only one category (dress)" in result.output
    assert "Traceback" not in result.output


def test_a_catalog_without_categories_is_refused(tmp_path):
    root = write_csv_catalog(
        tmp_path / "cat", [{"id": "a", "image": "a.jpg", "title": "A"}], {"a.jpg": demo_image("dress")}
    )
    result = run("fine-tune", "--data", root, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert f"error: {root / 'catalog.csv'}: no categories" in result.output


def test_out_must_not_be_a_users_folder(runs, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = fine_tune(runs["data"], tmp_path / "mine", runs["start"])
    assert result.exit_code == 1 and "is not a featurizer directory" in result.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_from_and_pretrained_exclude_each_other(runs, tmp_path):
    result = fine_tune(runs["data"], tmp_path / "out", runs["start"], "--pretrained")
    assert result.exit_code == 2 and "exclude each other" in result.output
