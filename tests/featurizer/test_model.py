import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from cloud_sync.cli.main import main
from components.common.errors import ModelError
from components.featurizer.model import Featurizer, fingerprint, read_spec
from components.featurizer.preprocess import read_image
from tests.conftest import demo_image


def test_export_writes_the_seed_naming_and_a_spec(tiny_model):
    names = sorted(p.name for p in tiny_model.iterdir())
    assert names == [
        "featurizer-v1-0000.params",
        "featurizer-v1-symbol.json",
        "featurizer-v1.onnx",
        "featurizer.json",
    ]
    spec = json.loads((tiny_model / "featurizer.json").read_text())
    assert spec["input_size"] == [64, 64] and spec["dim"] == 512 and spec["color_order"] == "RGB"
    assert spec["output_layer"] and spec["mean"] and spec["std"]


def test_vectors_are_unit_length_float32_and_batch_independent(tiny_model):
    featurizer = Featurizer(tiny_model, batch_size=3)
    images = [read_image(demo_image(c, n)) for c in ("dress", "hat") for n in range(4)]
    vectors = featurizer.featurize(images)
    assert vectors.shape == (8, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    one_by_one = np.concatenate([featurizer.featurize([img]) for img in images])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[4])  # different images, different vectors


def test_fingerprint_changes_with_weights_and_preprocessing(tiny_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    assert fingerprint(copy) == fingerprint(tiny_model) == Featurizer(tiny_model).fingerprint
    spec = json.loads((copy / "featurizer.json").read_text())
    spec["mean"] = [0, 0, 0]
    (copy / "featurizer.json").write_text(json.dumps(spec))
    assert fingerprint(copy) != fingerprint(tiny_model)
    params = copy / "featurizer-v1-0000.params"
    shutil.copyfile(tiny_model / "featurizer.json", copy / "featurizer.json")
    data = bytearray(params.read_bytes())
    data[-1] ^= 0xFF
    params.write_bytes(bytes(data))
    assert fingerprint(copy) != fingerprint(tiny_model)


@pytest.mark.parametrize(
    "missing", ["featurizer.json", "featurizer-v1-0000.params", "featurizer-v1-symbol.json"]
)
def test_a_missing_file_is_named(tiny_model, tmp_path, missing):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / missing).unlink()
    with pytest.raises(ModelError, match=missing):
        Featurizer(broken)


def test_inconsistent_spec_is_refused(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    spec = json.loads((broken / "featurizer.json").read_text())
    for change, message in (
        ({"dim": 128}, "dim is 128"),
        ({"output_layer": "nope"}, "no layer named 'nope'"),
        ({"input_size": "big"}, "input_size"),
    ):
        (broken / "featurizer.json").write_text(json.dumps({**spec, **change}))
        with pytest.raises(ModelError, match=message):
            Featurizer(broken, runtime="mxnet")
    (broken / "featurizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_spec(broken)


def test_params_of_another_network_are_refused(tiny_model, tmp_path):
    other = tmp_path / "other"
    assert (
        CliRunner()
        .invoke(
            main, ["export-featurizer", "--arch", "resnet18_v1", "--image-size", "64", "--out", str(other)]
        )
        .exit_code
        == 0
    )
    shutil.copyfile(other / "featurizer-v1-0000.params", tmp_path / "mixed.params")
    mixed = tmp_path / "mixed"
    shutil.copytree(tiny_model, mixed)
    shutil.copyfile(other / "featurizer-v1-0000.params", mixed / "featurizer-v1-0000.params")
    with pytest.raises(ModelError, match="does not fit"):
        Featurizer(mixed, runtime="mxnet")
    with pytest.raises(ModelError, match="exported from model"):  # the ONNX file is of the old weights
        Featurizer(mixed)


@pytest.mark.parametrize("arch,dim", [("mobilenetv2_1.0", 1280), ("resnet50_v1", 2048)])
def test_export_cli_cuts_each_zoo_family_before_its_classifier(tmp_path, arch, dim):
    out = tmp_path / arch
    result = CliRunner().invoke(
        main, ["export-featurizer", "--arch", arch, "--image-size", "32", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert Featurizer(out).featurize([read_image(demo_image("shoes"))]).shape == (1, dim)


def test_export_refuses_unknown_arch_and_foreign_out_dir(tmp_path):
    result = CliRunner().invoke(main, ["export-featurizer", "--arch", "vgg99", "--out", str(tmp_path / "m")])
    assert (
        result.exit_code == 1 and "unknown architecture" in result.output and "Traceback" not in result.output
    )
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(
        main, ["export-featurizer", "--arch", "mobilenet0.5", "--out", str(tmp_path / "notes")]
    )
    assert result.exit_code == 1 and "not a featurizer directory" in result.output
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_pretrained_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxnet-home"))
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")  # closed local port: no traffic leaves
    result = CliRunner().invoke(
        main, ["export-featurizer", "--arch", "mobilenet0.5", "--pretrained", "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 1
    assert "could not get ImageNet weights" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()
