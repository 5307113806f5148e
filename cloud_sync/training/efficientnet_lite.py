"""EfficientNet-Lite0/1/2 (Tan & Le 2019, Lite variants) in MXNet Gluon, and loading of their weights.

The Lite variants differ from EfficientNet-B*: no squeeze-and-excitation, ReLU6 instead of
swish, and the stem (32 channels), the head (1280 channels) and the repeats of the first
and last stages are not scaled. Convolutions use TensorFlow "SAME" padding, which for a
stride-2 convolution on an even input pads more at the bottom/right; the network is
therefore built for one input size and pads explicitly where padding is asymmetric.
Input normalisation, (x - 127) / 128 on RGB, belongs to the featurizer's preprocessing.

Weights come as a state dict named like `_conv_stem.weight`, `_bn0.running_mean`,
`_blocks.3._depthwise_conv.weight`, `_conv_head.weight`, `_fc.bias`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from mxnet import gluon, nd
from mxnet.gluon import nn

from components.common.errors import ModelError

BN_EPSILON = 1e-3  # TensorFlow's EfficientNet value; the state dict does not record it
BN_MOMENTUM = 0.99
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
FEATURE_DIM = HEAD_CHANNELS
NUM_CLASSES = 1000


@dataclass(frozen=True)
class Stage:
    kernel: int
    stride: int
    expand: int
    channels: int
    repeats: int


STAGES = (  # the seven MBConv stages of EfficientNet-B0 (Table 1 of the paper)
    Stage(3, 1, 1, 16, 1),
    Stage(3, 2, 6, 24, 2),
    Stage(5, 2, 6, 40, 2),
    Stage(3, 2, 6, 80, 3),
    Stage(5, 1, 6, 112, 3),
    Stage(5, 2, 6, 192, 4),
    Stage(3, 1, 6, 320, 1),
)


@dataclass(frozen=True)
class Variant:
    width: float
    depth: float
    image_size: int


VARIANTS = {
    "efficientnet-lite0": Variant(1.0, 1.0, 224),
    "efficientnet-lite1": Variant(1.0, 1.1, 240),
    "efficientnet-lite2": Variant(1.1, 1.2, 260),
}


def scaled_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Width-scaled channel count rounded to a multiple of 8, never more than 10% below."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def scaled_repeats(stage_index: int, repeats: int, depth: float) -> int:
    if stage_index in (0, len(STAGES) - 1):  # Lite: first and last stage keep their depth
        return repeats
    return int(math.ceil(repeats * depth))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME": (before, after) padding, the odd pixel going after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.HybridBlock):
    """Conv (no bias) with TF "SAME" padding for a known input size; a separate pad op only when
    asymmetric."""

    def __init__(self, in_channels, channels, kernel, stride, in_size, groups=1, **kwargs):
        super().__init__(**kwargs)
        (top, bottom), (left, right) = (same_padding(s, kernel, stride) for s in in_size)
        self.out_size = tuple(-(-s // stride) for s in in_size)
        symmetric = top == bottom and left == right
        self._pad_width = None if symmetric else (0, 0, 0, 0, top, bottom, left, right)
        with self.name_scope():
            self.conv = nn.Conv2D(
                channels,
                kernel,
                strides=stride,
                padding=(top, left) if symmetric else 0,
                groups=groups,
                use_bias=False,
                in_channels=in_channels,
                prefix="",
            )

    def hybrid_forward(self, F, x):
        if self._pad_width is not None:
            x = F.pad(x, mode="constant", pad_width=self._pad_width, constant_value=0)
        return self.conv(x)


def _batch_norm(channels: int, prefix: str) -> nn.BatchNorm:
    return nn.BatchNorm(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, in_channels=channels, prefix=prefix)


class ReLU6(nn.HybridBlock):
    def hybrid_forward(self, F, x):
        return F.clip(x, 0.0, 6.0)


class MBConv(nn.HybridBlock):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes allow."""

    def __init__(self, in_channels, out_channels, stage: Stage, stride, in_size, **kwargs):
        super().__init__(**kwargs)
        hidden = in_channels * stage.expand
        self.residual = stride == 1 and in_channels == out_channels
        self.torch_params = {}
        with self.name_scope():
            self.expand = None
            if stage.expand != 1:
                self.expand = nn.HybridSequential(prefix="")
                conv = nn.Conv2D(hidden, 1, use_bias=False, in_channels=in_channels, prefix="expand_conv_")
                bn = _batch_norm(hidden, "bn0_")
                self.expand.add(conv, bn, ReLU6(prefix="expand_relu6_"))
                self.torch_params.update({**_torch_params("_expand_conv", conv), **_torch_params("_bn0", bn)})
            self.depthwise = SameConv(
                hidden, hidden, stage.kernel, stride, in_size, groups=hidden, prefix="depthwise_"
            )
            dw_bn = _batch_norm(hidden, "bn1_")
            project = nn.Conv2D(out_channels, 1, use_bias=False, in_channels=hidden, prefix="project_conv_")
            project_bn = _batch_norm(out_channels, "bn2_")
            self.rest = nn.HybridSequential(prefix="")
            self.rest.add(dw_bn, ReLU6(prefix="depthwise_relu6_"), project, project_bn)
        self.out_size = self.depthwise.out_size
        for name, module in (
            ("_depthwise_conv", self.depthwise.conv),
            ("_bn1", dw_bn),
            ("_project_conv", project),
            ("_bn2", project_bn),
        ):
            self.torch_params.update(_torch_params(name, module))

    def hybrid_forward(self, F, x):
        out = self.expand(x) if self.expand is not None else x
        out = self.rest(self.depthwise(out))
        return out + x if self.residual else out


class EfficientNetLite(nn.HybridBlock):
    """`features`: images -> (N, 1280) globally pooled; `output`: the 1000-class ImageNet classifier."""

    def __init__(self, arch: str = "efficientnet-lite0", image_size: int | None = None):
        if arch not in VARIANTS:
            raise ModelError(f"{arch}: unknown architecture (choose from {', '.join(VARIANTS)})")
        super().__init__(prefix=arch.replace("-", "_") + "_")  # fixed names: same params file every time
        variant = VARIANTS[arch]
        self.arch = arch
        self.image_size = image_size or variant.image_size
        size = (self.image_size, self.image_size)
        self.torch_params: dict[str, gluon.Parameter] = {}  # state-dict name -> our parameter
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            stem = SameConv(3, STEM_CHANNELS, 3, 2, size, prefix="stem_")
            stem_bn = _batch_norm(STEM_CHANNELS, "bn0_")
            self.features.add(stem, stem_bn, ReLU6(prefix="stem_relu6_"))
            self.torch_params.update(
                {**_torch_params("_conv_stem", stem.conv), **_torch_params("_bn0", stem_bn)}
            )
            size, channels, index = stem.out_size, STEM_CHANNELS, 0
            for stage_index, stage in enumerate(STAGES):
                out_channels = scaled_channels(stage.channels, variant.width)
                for repeat in range(scaled_repeats(stage_index, stage.repeats, variant.depth)):
                    block = MBConv(
                        channels,
                        out_channels,
                        stage,
                        stage.stride if repeat == 0 else 1,
                        size,
                        prefix=f"blocks{index}_",
                    )
                    self.features.add(block)
                    self.torch_params.update(
                        {f"_blocks.{index}.{k}": p for k, p in block.torch_params.items()}
                    )
                    size, channels, index = block.out_size, out_channels, index + 1
            head = nn.Conv2D(HEAD_CHANNELS, 1, use_bias=False, in_channels=channels, prefix="conv_head_")
            head_bn = _batch_norm(HEAD_CHANNELS, "bn1_")
            self.features.add(
                head,
                head_bn,
                ReLU6(prefix="head_relu6_"),
                nn.GlobalAvgPool2D(prefix="pool_"),
                nn.Flatten(prefix="flatten_"),
            )
            self.output = nn.Dense(NUM_CLASSES, in_units=HEAD_CHANNELS, prefix="fc_")
            for name, module in (("_conv_head", head), ("_bn1", head_bn), ("_fc", self.output)):
                self.torch_params.update(_torch_params(name, module))

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))

    def load_torch_state_dict(self, state: dict, source: str) -> None:
        """Copy weights by name; every shape must match and no key may be missing or left over."""
        expected = self.torch_params
        present = {k for k in state if not k.endswith(".num_batches_tracked")}
        missing, unexpected = sorted(expected.keys() - present), sorted(present - expected.keys())
        if missing or unexpected:
            problems = [
                f"{label} {len(names)} ({_first_few(names)})"
                for label, names in (("missing", missing), ("unexpected", unexpected))
                if names
            ]
            raise ModelError(f"{source}: does not fit {self.arch}: {'; '.join(problems)}")
        values = {name: np.asarray(state[name], dtype=np.float32) for name in expected}
        for name, param in expected.items():
            if values[name].shape != param.shape:
                raise ModelError(
                    f"{source}: {name} has shape {values[name].shape}, {self.arch} needs {param.shape}"
                )
        for name, param in expected.items():
            param.initialize(init="zeros", force_reinit=True)
            param.set_data(nd.array(values[name], dtype="float32"))


def _first_few(names: list[str], count: int = 3) -> str:
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")


def _torch_params(module_name: str, block: gluon.Block) -> dict:
    return {
        f"{module_name}.{_TORCH_SUFFIX[name[len(block.prefix):]]}": param
        for name, param in block.params.items()
    }


_TORCH_SUFFIX = {
    "weight": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "running_mean": "running_mean",
    "running_var": "running_var",
}
