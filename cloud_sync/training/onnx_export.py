"""Export a featurizer directory's MXNet network to ONNX, so ONNX Runtime can run it on devices.

The export is derived from the MXNet files alone (same files, same bytes: it is
deterministic), written beside them and recorded in `featurizer.json` with its sha256, and
made the preferred runtime. Before it is recorded, ONNX Runtime (when installed) must give
the same vectors as MXNet on a probe batch; an export that cannot be made or that answers
differently is left out with a warning, and the directory runs on MXNet.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from components.common.bundle import sha256_file
from components.featurizer.model import FeaturizerSpec, fingerprint
from components.featurizer.runtimes import ONNXRUNTIME, load_output, onnxruntime_installed

log = logging.getLogger(__name__)

ONNX_FILE = "featurizer-v1.onnx"
MIN_PROBE_COSINE = 0.9999


def add_onnx_runtime(model_dir: Path, spec: FeaturizerSpec) -> FeaturizerSpec:
    """Write `ONNX_FILE` into `model_dir` and return `spec` naming it (preferred); or `spec`
    unchanged, with a warning, when the network cannot be exported faithfully."""
    model_dir = Path(model_dir)
    path = model_dir / ONNX_FILE
    try:
        export_onnx(model_dir, spec, path)
    except ImportError as exc:
        log.warning("%s: no ONNX export, the model runs on MXNet only (%s)", spec.name, exc)
        return spec
    except AttributeError as exc:  # MXNet's exporter: "No conversion function registered for op type X"
        log.warning("%s: no ONNX export, the model runs on MXNet only (%s)", spec.name, exc)
        path.unlink(missing_ok=True)
        return spec
    cosine = probe_cosine(model_dir, spec, path)
    if cosine is not None and cosine < MIN_PROBE_COSINE:
        log.warning(
            "%s: the ONNX export answers differently from MXNet (cosine %.6f); the model runs on MXNet only",
            spec.name,
            cosine,
        )
        path.unlink()
        return spec
    entry = {"file": ONNX_FILE, "sha256": sha256_file(path), "exported_from": fingerprint(model_dir, spec)}
    return replace(spec, runtimes={**spec.runtimes, ONNXRUNTIME: entry}, preferred_runtime=ONNXRUNTIME)


def export_onnx(model_dir: Path, spec: FeaturizerSpec, path: Path) -> None:
    """The network cut at `spec.output_layer` as an ONNX graph with a free batch dimension."""
    import mxnet as mx
    import onnx  # the exporter's own import error would blame protobuf too

    output = load_output(model_dir / spec.symbol_file, spec.output_layer)
    used = set(output.list_arguments()) | set(output.list_auxiliary_states())
    saved = mx.nd.load(str(model_dir / spec.params_file))
    params = {name.split(":", 1)[1]: value for name, value in saved.items() if name.split(":", 1)[1] in used}
    height, width = spec.preprocessing.height, spec.preprocessing.width
    mx.onnx.export_model(
        output,
        params,
        in_shapes=[(1, 3, height, width)],
        in_types=[np.float32],
        onnx_file_path=str(path),
        dynamic=True,
        dynamic_input_shapes=[(None, 3, height, width)],
    )
    model = onnx.load(str(path))
    _weights_as_constants(model.graph)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _weights_as_constants(graph) -> None:
    """MXNet's exporter lists every weight as a graph input too, which stops ONNX Runtime from
    folding constants (batch norms into convolutions); only the image stays an input."""
    weights = {initializer.name for initializer in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)


def probe_cosine(model_dir: Path, spec: FeaturizerSpec, path: Path) -> float | None:
    """Lowest cosine between MXNet's and ONNX Runtime's outputs on a random batch (None when
    onnxruntime is not installed here)."""
    if not onnxruntime_installed():
        return None
    from components.featurizer.runtimes import MXNetRunner, OnnxRunner

    batch = np.random.default_rng(0).normal(0, 1, (2, 3, spec.preprocessing.height, spec.preprocessing.width))
    batch = batch.astype(np.float32)
    reference = MXNetRunner(model_dir, spec).run(batch).reshape(len(batch), -1)
    exported = OnnxRunner(model_dir, {"file": path.name, "sha256": sha256_file(path)}).run(batch)
    return float(np.min(_cosines(reference, exported.reshape(len(batch), -1))))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)
