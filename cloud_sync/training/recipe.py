"""A committed model's recipe (`head.json`): the files it names, and whether its directory is
assembled from it (assemble.py does the assembling).

No MXNet here: every CLI command that takes `--model` checks the default model through this
module, and imports assemble.py only when there is something to assemble: importing MXNet
costs about 2.7 s, more than the rest of a `build-index --previous` of 3,068 unchanged rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from components.common.bundle import sha256_file
from components.common.errors import ModelError
from components.featurizer.model import SPEC_FILE, fingerprint, read_spec
from components.featurizer.runtimes import ONNXRUNTIME

RECIPE = "head.json"
HEAD_FILE = "residual-head.params"
# moved into place in this order: featurizer.json, which names the others, last
ASSEMBLED = ("featurizer-v1-symbol.json", "featurizer-v1-0000.params", SPEC_FILE)


def is_assembled(model_dir: Path) -> bool:
    """True when `model_dir` holds a featurizer built from its current head.json."""
    model_dir = Path(model_dir)
    recipe_path = model_dir / RECIPE
    if not recipe_path.is_file():
        return True  # an ordinary featurizer directory: nothing to assemble
    if not all((model_dir / name).is_file() for name in ASSEMBLED):
        return False
    recipe = json.loads(recipe_path.read_text())
    try:
        spec = read_spec(model_dir)
        if fingerprint(model_dir, spec) != recipe["fingerprint"]:
            return False
    except ModelError:
        return False
    onnx = spec.runtimes.get(ONNXRUNTIME)  # assembled before the ONNX export was part of it: again
    return (
        onnx is not None
        and onnx.get("exported_from") == recipe["fingerprint"]
        and _matches(model_dir / onnx["file"], onnx["sha256"])
    )


def _matches(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256
