"""Write featurizer directories: from the Gluon model zoo, or from any trained HybridBlock.

Every directory written here carries the MXNet files and, where the network exports, their
ONNX twin for ONNX Runtime (`onnx_export`)."""

from __future__ import annotations

from pathlib import Path

from cloud_sync.training.onnx_export import add_onnx_runtime
from components.common.errors import ModelError
from components.common.files import can_replace, staged_dir
from components.featurizer.model import DEFAULT_SYMBOL_FILE, SPEC_FILE, FeaturizerSpec, write_spec
from components.featurizer.preprocess import Preprocessing

ZOO_ARCHS = (
    "resnet18_v1",
    "resnet34_v1",
    "resnet50_v1",
    "mobilenet0.25",
    "mobilenet0.5",
    "mobilenet1.0",
    "mobilenetv2_0.5",
    "mobilenetv2_1.0",
)


def zoo_base(arch: str, pretrained: bool):
    """The convolutional base of a model-zoo network (everything before its classifier)."""
    import mxnet as mx
    from mxnet.gluon.model_zoo import vision

    if arch not in ZOO_ARCHS:
        raise ModelError(f"--arch {arch}: unknown architecture (choose from {', '.join(ZOO_ARCHS)})")
    try:
        net = vision.get_model(arch, pretrained=pretrained)
    except Exception as exc:  # the zoo raises bare network/IO errors from its downloader
        raise ModelError(
            f"--pretrained {arch}: could not get ImageNet weights "
            f"({type(exc).__name__}: {str(exc)[:160]}); without internet, "
            f"place them in $MXNET_HOME/models or omit --pretrained"
        ) from None
    if not pretrained:
        # He init: keeps activations alive through depthwise layers
        net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2.0))
    return net.features


def save_featurizer(
    block,
    out_dir: str | Path,
    preprocessing: Preprocessing,
    name: str = "featurizer-v1",
    arch: str = "",
    extra: dict | None = None,
) -> FeaturizerSpec:
    """Export a Gluon HybridBlock (images -> vectors, flattened if needed) as a featurizer directory,
    atomically."""
    import mxnet as mx

    out_dir = Path(out_dir)
    if not can_replace(out_dir, lambda path: (path / SPEC_FILE).is_file()):
        raise ModelError(f"{out_dir}: exists and is not a featurizer directory; choose another --out")
    with staged_dir(out_dir) as staging:
        head = mx.gluon.nn.HybridSequential()
        head.add(block)
        sample = mx.nd.zeros((1, 3, preprocessing.height, preprocessing.width))
        if block(sample).ndim != 2:  # e.g. a ResNet base ends with (N, C, 1, 1) pooling
            head.add(mx.gluon.nn.Flatten())
        head.hybridize()
        probe = head(sample)
        head.export(str(staging / DEFAULT_SYMBOL_FILE[: -len("-symbol.json")]), epoch=0)
        output_layer = mx.sym.load(str(staging / DEFAULT_SYMBOL_FILE)).list_outputs()[0]
        spec = FeaturizerSpec(
            preprocessing=preprocessing,
            output_layer=output_layer,
            dim=int(probe.shape[1]),
            name=name,
            arch=arch,
            extra=extra or {},
        )
        spec = add_onnx_runtime(staging, spec)
        write_spec(staging, spec)
    return spec


def export_zoo_featurizer(
    arch: str, out_dir: str | Path, pretrained: bool = False, image_size: int = 224
) -> FeaturizerSpec:
    base = zoo_base(arch, pretrained)
    origin = "imagenet" if pretrained else "initialised (untrained)"
    return save_featurizer(
        base,
        out_dir,
        Preprocessing(height=image_size, width=image_size),
        arch=arch,
        extra={"weights": origin},
    )
