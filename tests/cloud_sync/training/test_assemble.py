"""A committed model is its trained head + the installed base weights, assembled bit for bit."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from cloud_sync.cli.main import main
from cloud_sync.training.assemble import assemble, write_recipe
from cloud_sync.training.onnx_export import ONNX_FILE
from cloud_sync.training.recipe import is_assembled
from components.common.errors import ModelError
from components.featurizer.model import fingerprint, read_spec
from tests.conftest import REPO

DEMO_MODEL = REPO / "models" / "demo-featurizer"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("assemble")
    start, data = root / "lite0", root / "catalog"
    assert run("import-featurizer", "efficientnet-lite0", "--out", start, "--image-size", 64).exit_code == 0
    for category in ("hat", "shoes"):
        (data / category).mkdir(parents=True)
        for photo in sorted((REPO / "demo" / "catalog" / "images" / category).glob("*.jpg"))[:4]:
            shutil.copyfile(photo, data / category / photo.name)
    result = run(
        "fine-tune",
        "--data",
        data,
        "--from",
        start,
        "--out",
        root / "tuned",
        "--epochs",
        1,
        "--views",
        2,
        "--batch-size",
        4,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    return root / "tuned"


def test_head_and_recipe_assemble_into_the_same_model(tuned, tmp_path):
    out = tmp_path / "committed"
    recipe = write_recipe(tuned, out)
    assert sorted(p.name for p in out.iterdir()) == ["head.json", "residual-head.params"]
    assert not is_assembled(out)
    assert assemble(out) == fingerprint(tuned) == recipe["fingerprint"]
    assert is_assembled(out)


def test_imported_tuned_and_assembled_models_carry_their_onnx_export(tuned, tmp_path):
    out = tmp_path / "committed"
    write_recipe(tuned, out)
    assemble(out)
    for model in (tuned.parent / "lite0", tuned, out):
        spec = read_spec(model)
        assert spec.preferred_runtime == "onnxruntime" and (model / ONNX_FILE).is_file()
        assert spec.runtimes["onnxruntime"]["exported_from"] == fingerprint(model)
    (out / ONNX_FILE).unlink()
    assert not is_assembled(out)  # assembled again, export included, on next use


def test_a_replaced_head_is_refused(tuned, tmp_path):
    out = tmp_path / "committed"
    write_recipe(tuned, out)
    data = bytearray((out / "residual-head.params").read_bytes())
    data[-1] ^= 1
    (out / "residual-head.params").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 does not match"):
        assemble(out)


def test_other_base_weights_are_refused(tuned, tmp_path):
    out = tmp_path / "committed"
    write_recipe(tuned, out)
    recipe = json.loads((out / "head.json").read_text())
    (out / "head.json").write_text(json.dumps({**recipe, "base_weights_sha256": "0" * 64}))
    result = run("assemble-featurizer", out)
    assert result.exit_code == 1 and "not the weights this model was trained on" in result.output


def test_the_demo_model_is_the_measured_one():
    recipe = json.loads((DEMO_MODEL / "head.json").read_text())
    assert is_assembled(DEMO_MODEL)  # the session fixture (or ./setup.sh) assembled it
    assert fingerprint(DEMO_MODEL) == recipe["fingerprint"]
    assert recipe["extra"]["calibration"]["min_score"] > 0.3
