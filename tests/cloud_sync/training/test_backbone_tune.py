"""`fine-tune --from` an imported EfficientNet-Lite0: the frozen part stays ImageNet's, products
keep apart, same seed gives the same model (96x96 and one block, so it runs in seconds)."""

from __future__ import annotations

import shutil

import mxnet as mx
import numpy as np
import pytest
from click.testing import CliRunner

from cloud_sync.cli.main import main
from components.featurizer.model import Featurizer, fingerprint
from tests.conftest import DEMO_CATALOG, write_csv_catalog

CATEGORIES = ("dress", "hat", "shoes")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbone-tune")
    start = root / "lite0"
    imported = run("import-featurizer", "efficientnet-lite0", "--out", start, "--image-size", 96)
    assert imported.exit_code == 0, imported.output
    rows, images = [], {}
    for category in CATEGORIES:  # 4 products per category, two photos each (rows share an item_id)
        photos = sorted((DEMO_CATALOG / "images" / category).glob("*.jpg"))[:8]
        for n, photo in enumerate(photos):
            images[f"{category}/{photo.name}"] = photo
            rows.append(
                {
                    "id": f"{category}-{n}",
                    "image": f"{category}/{photo.name}",
                    "title": category,
                    "category": category,
                    "item_id": f"{category}-product-{n // 2}",
                }
            )
    data = write_csv_catalog(root / "catalog", rows, images)
    args = (
        "--data",
        data,
        "--from",
        start,
        "--epochs",
        2,
        "--views",
        2,
        "--instance-weight",
        0.5,
        "--batch-size",
        8,
        "--seed",
        5,
        "--quiet",
        "--cache-dir",
        root / "cache",
    )
    first, second = run("fine-tune", "--out", root / "a", *args), run("fine-tune", "--out", root / "b", *args)
    return {"start": start, "a": root / "a", "b": root / "b", "first": first, "second": second}


def _params(model_dir):
    return {
        name.split(":", 1)[1]: value.asnumpy()
        for name, value in mx.nd.load(str(model_dir / "featurizer-v1-0000.params")).items()
    }


def test_writes_a_loadable_1280_d_featurizer(tuned):
    assert tuned["first"].exit_code == 0, tuned["first"].output
    assert "validation same-category P@1" in tuned["first"].output
    featurizer = Featurizer(tuned["a"])
    assert featurizer.dim == 1280 and featurizer.spec.arch == "efficientnet-lite0"
    assert featurizer.spec.extra["trained"].startswith("a residual linear head")
    assert fingerprint(tuned["a"]) != fingerprint(tuned["start"])


def test_only_the_head_changes_and_the_backbone_stays_imagenets(tuned):
    before, after = _params(tuned["start"]), _params(tuned["a"])
    added = after.keys() - before.keys()
    assert added == {"residual_head_dense_weight", "residual_head_dense_bias"}
    assert not np.allclose(after["residual_head_dense_weight"], 0), "nothing trained"
    assert all(np.array_equal(before[name], after[name]) for name in before)


def test_the_same_seed_gives_the_same_model_and_cached_views_are_reused(tuned):
    assert tuned["second"].exit_code == 0, tuned["second"].output
    assert "reusing cached views" not in tuned["first"].output
    assert "reusing cached views" in tuned["second"].output
    assert fingerprint(tuned["a"]) == fingerprint(tuned["b"])


def test_a_start_that_is_not_efficientnet_lite_takes_the_zoo_path(tiny_model, tmp_path):
    data = tmp_path / "catalog"
    for category in CATEGORIES[:2]:
        (data / category).mkdir(parents=True)
        for photo in sorted((DEMO_CATALOG / "images" / category).glob("*.jpg"))[:3]:
            shutil.copyfile(photo, data / category / photo.name)
    result = run(
        "fine-tune",
        "--data",
        data,
        "--out",
        tmp_path / "out",
        "--from",
        tiny_model,
        "--epochs",
        1,
        "--embedding-dim",
        8,
        "--batch-size",
        4,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert Featurizer(tmp_path / "out").dim == 8  # an embedding head: the zoo-network recipe
