"""A featurizer directory: an MXNet symbol + params + `featurizer.json`, loaded for inference.

Directory layout (the seeds' naming is the default)::

    featurizer.json                 preprocessing, output layer, dimension, file names, runtimes
    featurizer-v1-symbol.json       MXNet symbol graph
    featurizer-v1-0000.params       weights
    featurizer-v1.onnx              the same network exported to ONNX (optional; sha256 in the spec)

The fingerprint (sha256 over symbol, params and preprocessing) identifies the model
everywhere downstream: a bundle built with one featurizer refuses vectors of another. The
ONNX file is derived from the MXNet files and gives the same vectors, so it shares their
fingerprint; `featurizer.json` records its sha256 and the fingerprint it was exported from,
both checked when it is loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from components.common.errors import ModelError
from components.featurizer.preprocess import Preprocessing, preprocess
from components.featurizer.runtimes import MXNET, open_runner

SPEC_FILE = "featurizer.json"
SPEC_FORMAT_VERSION = 1
DEFAULT_SYMBOL_FILE = "featurizer-v1-symbol.json"
DEFAULT_PARAMS_FILE = "featurizer-v1-0000.params"


@dataclass(frozen=True)
class FeaturizerSpec:
    """What `featurizer.json` states."""

    preprocessing: Preprocessing
    output_layer: str
    dim: int
    symbol_file: str = DEFAULT_SYMBOL_FILE
    params_file: str = DEFAULT_PARAMS_FILE
    name: str = "featurizer-v1"
    arch: str = ""
    extra: dict = field(default_factory=dict)  # provenance (training run, source), not hashed
    # runtimes carried besides MXNet:
    # {"onnxruntime": {"file": "featurizer-v1.onnx", "sha256": ..., "exported_from": <fingerprint>}}
    runtimes: dict = field(default_factory=dict)
    preferred_runtime: str = MXNET

    def to_json(self) -> dict:
        return {
            "format_version": SPEC_FORMAT_VERSION,
            "name": self.name,
            "arch": self.arch,
            "symbol_file": self.symbol_file,
            "params_file": self.params_file,
            **self.preprocessing.as_dict(),
            "output_layer": self.output_layer,
            "dim": self.dim,
            "preferred_runtime": self.preferred_runtime,
            "runtimes": self.runtimes,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, data: dict, source: str) -> "FeaturizerSpec":
        try:
            version = data.get("format_version", SPEC_FORMAT_VERSION)
            if version != SPEC_FORMAT_VERSION:
                raise ModelError(
                    f"{source}: format_version {version} is not supported "
                    f"(this build reads {SPEC_FORMAT_VERSION})"
                )
            height, width = _input_size(data["input_size"])
            runtimes = _runtimes(data.get("runtimes", {}))
            preferred = str(data.get("preferred_runtime", MXNET))
            if preferred != MXNET and preferred not in runtimes:
                raise ValueError(f"preferred_runtime {preferred!r} is not among its runtimes")
            prep = Preprocessing(
                height=height,
                width=width,
                color_order=data.get("color_order", "RGB"),
                mean=tuple(float(v) for v in data.get("mean", Preprocessing.mean)),
                std=tuple(float(v) for v in data.get("std", Preprocessing.std)),
                resize=data.get("resize", "center_crop"),
            )
            return cls(
                preprocessing=prep,
                output_layer=str(data["output_layer"]),
                dim=int(data["dim"]),
                symbol_file=str(data.get("symbol_file", DEFAULT_SYMBOL_FILE)),
                params_file=str(data.get("params_file", DEFAULT_PARAMS_FILE)),
                name=str(data.get("name", "featurizer-v1")),
                arch=str(data.get("arch", "")),
                extra=dict(data.get("extra", {})),
                runtimes=runtimes,
                preferred_runtime=preferred,
            )
        except KeyError as exc:
            raise ModelError(f"{source}: missing key {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: {exc}") from None


def _input_size(value) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise ValueError(f"input_size must be N or [height, width], not {value!r}")


def _runtimes(value) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"runtimes must be an object, not {value!r}")
    for name, entry in value.items():
        if not isinstance(entry, dict) or not {"file", "sha256"} <= set(entry):
            raise ValueError(f"runtimes.{name} must name a file and its sha256")
    return {name: dict(entry) for name, entry in value.items()}


def read_spec(model_dir: str | Path) -> FeaturizerSpec:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: model directory not found")
    spec_path = model_dir / SPEC_FILE
    if not spec_path.is_file():
        raise ModelError(f"{spec_path}: missing (a featurizer directory needs {SPEC_FILE})")
    try:
        data = json.loads(spec_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{spec_path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{spec_path}: expected a JSON object")
    spec = FeaturizerSpec.from_json(data, str(spec_path))
    for name in (spec.symbol_file, spec.params_file):
        if not (model_dir / name).is_file():
            raise ModelError(f"{model_dir / name}: missing (named by {SPEC_FILE})")
    return spec


def fingerprint(model_dir: str | Path, spec: FeaturizerSpec | None = None) -> str:
    """sha256 over symbol, params and preprocessing: equal only for identical featurizers."""
    model_dir = Path(model_dir)
    spec = spec or read_spec(model_dir)
    digest = hashlib.sha256()
    for label, path in (("symbol", spec.symbol_file), ("params", spec.params_file)):
        digest.update(label.encode() + b"\0")
        with open(model_dir / path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    recipe = {**spec.preprocessing.as_dict(), "output_layer": spec.output_layer, "dim": spec.dim}
    digest.update(b"preprocessing\0" + json.dumps(recipe, sort_keys=True).encode())
    return digest.hexdigest()


def write_spec(model_dir: str | Path, spec: FeaturizerSpec) -> None:
    path = Path(model_dir) / SPEC_FILE
    path.write_text(json.dumps(spec.to_json(), indent=2) + "\n")


class Featurizer:
    """A network cut at `output_layer`, producing L2-normalised float32 vectors.

    It runs on the directory's preferred runtime (`runtime=None`), falling back to MXNet
    when that runtime is not installed, or on the runtime named.
    """

    def __init__(self, model_dir: str | Path, batch_size: int = 8, runtime: str | None = None):
        self.model_dir = Path(model_dir)
        self.spec = read_spec(self.model_dir)
        self.fingerprint = fingerprint(self.model_dir, self.spec)
        self.batch_size = batch_size
        self._runner = open_runner(self.model_dir, self.spec, self.fingerprint, runtime)
        probe = self._run(
            np.zeros((1, 3, self.spec.preprocessing.height, self.spec.preprocessing.width), np.float32)
        )
        if probe.shape[1] != self.spec.dim:
            raise ModelError(
                f"{self.model_dir / SPEC_FILE}: dim is {self.spec.dim} but layer "
                f"{self.spec.output_layer} gives {probe.shape[1]} values"
            )

    @property
    def runtime(self) -> str:
        """The runtime the vectors come from: `mxnet` or `onnxruntime`."""
        return self._runner.name

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def preprocessing(self) -> Preprocessing:
        return self.spec.preprocessing

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self._runner.run(batch)
        return out.reshape(out.shape[0], -1).astype(np.float32)

    def featurize_tensors(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed NCHW float32 -> (N, dim) L2-normalised float32."""
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(self._run(batch))

    def featurize(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 images (any size) -> (N, dim) L2-normalised float32, in batches."""
        out = [
            self.featurize_tensors(np.stack([preprocess(img, self.preprocessing) for img in chunk]))
            for chunk in batched(images, self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def batched(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
