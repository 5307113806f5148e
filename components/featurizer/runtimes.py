"""The engines that run a featurizer's network on preprocessed NCHW float32 batches.

Every featurizer directory carries the MXNet symbol and params (the network as trained);
it may also carry an ONNX export of the same network, run by ONNX Runtime where that is
installed (several times faster on a CPU). Both take the same input and give the same
vectors (cosine >= 0.9999), so they share one model fingerprint.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from components.common.bundle import sha256_file
from components.common.errors import ModelError

log = logging.getLogger(__name__)

MXNET = "mxnet"
ONNXRUNTIME = "onnxruntime"
RUNTIMES = (MXNET, ONNXRUNTIME)


def thread_count() -> int:
    """Threads one inference may use: OMP_NUM_THREADS when set, else every processor.

    MXNet 1.x reads OMP_NUM_THREADS itself (and uses half the processors without it);
    ONNX Runtime's default is the physical cores, one on a 2-vCPU machine, so it is told.
    """
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


def onnxruntime_installed() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class MXNetRunner:
    """The network cut at `output_layer`, run by MXNet (hybridized, static shapes)."""

    name = MXNET

    def __init__(self, model_dir: Path, spec):
        import mxnet as mx  # imported here: `--help` and pure helpers stay fast

        self._mx = mx
        symbol_path = model_dir / spec.symbol_file
        params_path = model_dir / spec.params_file
        output = load_output(symbol_path, spec.output_layer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._net = mx.gluon.SymbolBlock(output, mx.sym.var("data"))
        try:
            self._net.collect_params().load(
                str(params_path), ctx=mx.cpu(), allow_missing=False, ignore_extra=True
            )
        except (mx.base.MXNetError, AssertionError, ValueError) as exc:
            raise ModelError(f"{params_path}: does not fit {symbol_path.name} ({_first_line(exc)})") from None
        self._net.hybridize(static_alloc=True, static_shape=True)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._net(self._mx.nd.array(batch, dtype="float32")).asnumpy()


class OnnxRunner:
    """The ONNX export of the network, run by ONNX Runtime on the CPU."""

    name = ONNXRUNTIME

    def __init__(self, model_dir: Path, entry: dict, model_fingerprint: str | None = None):
        import onnxruntime as ort

        exported_from = entry.get("exported_from")
        if model_fingerprint is not None and exported_from != model_fingerprint:
            raise ModelError(
                f"{model_dir / 'featurizer.json'}: runtimes.{ONNXRUNTIME} was exported from model "
                f"{str(exported_from)[:12]}, not from this one ({model_fingerprint[:12]}); export it again"
            )
        path = model_dir / entry["file"]
        if not path.is_file():
            raise ModelError(f"{path}: missing (named by featurizer.json runtimes.{ONNXRUNTIME})")
        if sha256_file(path) != entry["sha256"]:
            raise ModelError(
                f"{path}: sha256 does not match featurizer.json (not the export of this model's "
                f"MXNet files; export it again)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = thread_count()
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: a kiosk's cores also serve the camera, search and
        # display (on 2 busy cores it was faster this way too: 39 against 27 images/s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: its warnings are about graph internals
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable models
            raise ModelError(f"{path}: not a model ONNX Runtime can run ({_first_line(exc)})") from None
        self._input = self._session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: np.ascontiguousarray(batch, np.float32)})[0]


def open_runner(model_dir: Path, spec, model_fingerprint: str, runtime: str | None = None):
    """The runner for `runtime`, or for the directory's preferred one when None.

    An explicitly asked runtime must be usable (ModelError otherwise); the preferred one
    falls back to MXNet, with one log line, when it is not installed.
    """
    if runtime is not None:
        if runtime != MXNET and runtime not in spec.runtimes:
            carried = ", ".join((MXNET, *spec.runtimes))
            raise ModelError(f"{model_dir}: carries no {runtime} model (it carries {carried})")
        if runtime == ONNXRUNTIME and not onnxruntime_installed():
            raise ModelError(f"{runtime}: not installed (pip install onnxruntime)")
        return _runner(model_dir, spec, model_fingerprint, runtime)
    preferred = spec.preferred_runtime
    if preferred == ONNXRUNTIME and not onnxruntime_installed():
        log.warning("onnxruntime is not installed: %s runs on MXNet (slower, same vectors)", model_dir.name)
        preferred = MXNET
    elif preferred not in RUNTIMES:
        log.warning("%s: preferred runtime %r is unknown here: running on MXNet", model_dir, preferred)
        preferred = MXNET
    return _runner(model_dir, spec, model_fingerprint, preferred)


def _runner(model_dir: Path, spec, model_fingerprint: str, runtime: str):
    if runtime == ONNXRUNTIME:
        return OnnxRunner(model_dir, spec.runtimes[ONNXRUNTIME], model_fingerprint)
    if runtime == MXNET:
        return MXNetRunner(model_dir, spec)
    raise ModelError(f"{runtime}: unknown runtime (choose from {', '.join(RUNTIMES)})")


def load_output(symbol_path: Path, layer: str):
    """The MXNet symbol of `layer` (or `layer`_output) in the graph at `symbol_path`."""
    import mxnet as mx

    try:
        symbol = mx.sym.load(str(symbol_path))
    except mx.base.MXNetError as exc:
        raise ModelError(f"{symbol_path}: not a readable MXNet symbol ({_first_line(exc)})") from None
    internals = symbol.get_internals()
    names = internals.list_outputs()
    for candidate in (layer, layer + "_output"):
        if candidate in names:
            return internals[candidate]
    raise ModelError(f"{symbol_path}: no layer named {layer!r} (last layers: {', '.join(names[-3:])})")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
