"""The featurizer runs on ONNX Runtime where it can, on MXNet where it must, with the same answers."""

from __future__ import annotations

import json
import logging
import shutil
import sys

import numpy as np
import pytest

from cloud_sync.indexing.build_index import build_bundle
from cloud_sync.training.onnx_export import ONNX_FILE, export_onnx
from components.common.bundle import sha256_file
from components.common.errors import ModelError
from components.featurizer.model import Featurizer, fingerprint, read_spec
from components.featurizer.preprocess import read_image
from components.local_search.search import IndexBundle
from tests.conftest import DEMO_QUERIES, REPO

DEMO_MODEL = REPO / "models" / "demo-featurizer"


@pytest.fixture
def without_onnxruntime(monkeypatch):
    """As on a device where no onnxruntime wheel exists: `import onnxruntime` fails."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)  # both L2-normalised


def test_every_written_model_carries_its_onnx_export_and_prefers_it(tiny_model):
    spec = read_spec(tiny_model)
    assert spec.preferred_runtime == "onnxruntime"
    entry = spec.runtimes["onnxruntime"]
    assert entry["file"] == ONNX_FILE and sha256_file(tiny_model / ONNX_FILE) == entry["sha256"]
    assert Featurizer(tiny_model).runtime == "onnxruntime"


def test_the_demo_model_runs_on_onnxruntime_with_mxnet_vectors():
    images = [read_image(path) for path in sorted(DEMO_QUERIES.rglob("*.jpg"))]
    assert len(images) == 50
    fast = Featurizer(DEMO_MODEL)
    reference = Featurizer(DEMO_MODEL, runtime="mxnet")
    assert (fast.runtime, reference.runtime) == ("onnxruntime", "mxnet")
    assert (
        fast.fingerprint
        == reference.fingerprint
        == json.loads((DEMO_MODEL / "head.json").read_text())["fingerprint"]
    )
    assert cosines(fast.featurize(images), reference.featurize(images)).min() >= 0.9999


def test_the_export_is_the_same_bytes_every_time(tiny_model, tmp_path):
    spec = read_spec(tiny_model)
    export_onnx(tiny_model, spec, tmp_path / "again.onnx")
    assert sha256_file(tmp_path / "again.onnx") == spec.runtimes["onnxruntime"]["sha256"]


def test_without_onnxruntime_it_runs_on_mxnet_and_says_so_once(tiny_model, without_onnxruntime, caplog):
    with caplog.at_level(logging.WARNING):
        featurizer = Featurizer(tiny_model)
    assert featurizer.runtime == "mxnet" and featurizer.fingerprint == fingerprint(tiny_model)
    notes = [r.getMessage() for r in caplog.records if "onnxruntime" in r.getMessage()]
    assert len(notes) == 1 and "runs on MXNet" in notes[0]
    with pytest.raises(ModelError, match="onnxruntime: not installed"):
        Featurizer(tiny_model, runtime="onnxruntime")


def test_without_onnxruntime_the_commands_still_work(
    tiny_model, class_folders, tmp_path, without_onnxruntime
):
    from click.testing import CliRunner

    from cloud_sync.cli.main import main

    out = tmp_path / "model"
    result = CliRunner().invoke(main, ["export-featurizer", "--arch", "mobilenet0.5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / ONNX_FILE).is_file() and Featurizer(out).runtime == "mxnet"
    bundle = tmp_path / "bundle"
    for args in (
        ["build-index", class_folders, "--model", tiny_model, "--out", bundle],
        ["search-image", next(class_folders.rglob("*.jpg")), "--bundle", bundle, "--model", tiny_model],
        ["evaluate", "--catalog", class_folders, "--queries", class_folders, "--model", tiny_model],
    ):
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, result.output


def test_a_changed_onnx_file_is_refused(tiny_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    data = bytearray((copy / ONNX_FILE).read_bytes())
    data[-1] ^= 0xFF
    (copy / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 does not match featurizer.json"):
        Featurizer(copy)
    assert Featurizer(copy, runtime="mxnet").runtime == "mxnet"  # the MXNet files are intact
    (copy / ONNX_FILE).unlink()
    with pytest.raises(ModelError, match=f"{ONNX_FILE}: missing"):
        Featurizer(copy)


def test_an_export_of_another_model_is_refused(tiny_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    spec = json.loads((copy / "featurizer.json").read_text())
    (copy / "featurizer.json").write_text(json.dumps({**spec, "mean": [0, 0, 0]}))
    with pytest.raises(ModelError, match="was exported from model .*, not from this one"):
        Featurizer(copy)


def test_a_runtime_the_directory_lacks_is_refused(tiny_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    spec = json.loads((copy / "featurizer.json").read_text())
    (copy / "featurizer.json").write_text(json.dumps({**spec, "runtimes": {}, "preferred_runtime": "mxnet"}))
    with pytest.raises(ModelError, match="carries no onnxruntime model"):
        Featurizer(copy, runtime="onnxruntime")
    (copy / "featurizer.json").write_text(json.dumps({**spec, "runtimes": {}}))
    with pytest.raises(ModelError, match="preferred_runtime 'onnxruntime' is not among its runtimes"):
        Featurizer(copy)


def test_a_bundle_built_on_mxnet_answers_onnxruntime_queries(tiny_model, class_folders, tmp_path):
    """One fingerprint family: the runtimes' vectors are interchangeable, so bundles are too."""
    mxnet = Featurizer(tiny_model, runtime="mxnet")
    build_bundle(class_folders, tiny_model, tmp_path / "bundle", featurizer=mxnet, progress=False)
    onnx = Featurizer(tiny_model, runtime="onnxruntime")
    bundle = IndexBundle.open(tmp_path / "bundle", expected_fingerprint=onnx.fingerprint)
    photos = sorted(class_folders.rglob("*.jpg"))
    vectors = onnx.featurize([read_image(p) for p in photos])
    answers = bundle.search(vectors, k=1)
    assert [hits[0].item["item_id"] for hits in answers] == [
        str(p.relative_to(class_folders)) for p in photos
    ]
    bundle.close()
