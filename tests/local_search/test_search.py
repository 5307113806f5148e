import json
import shutil

import numpy as np
import pytest

from cloud_sync.indexing.build_index import build_bundle
from components.common.errors import BundleError
from components.featurizer.model import Featurizer
from components.featurizer.preprocess import read_image
from components.local_search.search import IndexBundle
from tests.conftest import DEMO_CATALOG, demo_image


@pytest.fixture(scope="module")
def bundle_dir(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "demo"
    build_bundle(DEMO_CATALOG, tiny_model, out, progress=False)
    return out


def test_a_catalog_photo_finds_itself_first_with_its_metadata(bundle_dir, tiny_model):
    featurizer = Featurizer(tiny_model)
    bundle = IndexBundle.open(bundle_dir, expected_fingerprint=featurizer.fingerprint)
    vector = featurizer.featurize([read_image(demo_image("shoes", 3))])
    [matches] = bundle.search(vector, k=5)
    assert [m.rank for m in matches] == [1, 2, 3, 4, 5]
    top = matches[0]
    assert top.item["item_id"] == "shoes-004" and top.item["category"] == "shoes"
    assert top.score == pytest.approx(1.0, abs=1e-4)
    assert top.item["title"].endswith("shoes") and top.item["price"] and top.item["location"]
    assert top.item["extra"]["colour"]  # extra CSV columns are kept as metadata
    assert bundle.thumbnail_path(top.item).is_file()
    assert all(a.score >= b.score for a, b in zip(matches, matches[1:]))


def test_min_score_can_leave_no_good_match(bundle_dir):
    bundle = IndexBundle.open(bundle_dir)
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((3, bundle.index.d)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    everything = bundle.search(queries, k=len(bundle))
    assert all(len(r) == len(bundle) for r in everything)
    assert bundle.search(queries, k=5, min_score=1.01) == [[], [], []]
    threshold = everything[0][2].score
    assert [m.score >= threshold for m in bundle.search(queries[:1], k=10, min_score=threshold)[0]] == [
        True
    ] * 3


def test_wrong_dimension_query_is_refused(bundle_dir):
    with pytest.raises(ValueError, match="index expects 512"):
        IndexBundle.open(bundle_dir).search(np.zeros((1, 3), np.float32))


def test_another_models_fingerprint_is_refused(bundle_dir):
    with pytest.raises(BundleError, match="rebuild the index with this model"):
        IndexBundle.open(bundle_dir, expected_fingerprint="0" * 64)


def test_a_flipped_byte_is_refused_naming_the_file(bundle_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    target = copy / "thumbnails" / "7.jpg"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"thumbnails/7.jpg: sha256 does not match"):
        IndexBundle.open(copy)


def test_missing_files_and_unknown_format_are_refused(bundle_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    (copy / "index.faiss").unlink()
    with pytest.raises(BundleError, match="index.faiss: missing"):
        IndexBundle.open(copy)
    shutil.copyfile(bundle_dir / "index.faiss", copy / "index.faiss")
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(BundleError, match="format_version 99 is not supported"):
        IndexBundle.open(copy)
    with pytest.raises(BundleError, match="bundle directory not found"):
        IndexBundle.open(tmp_path / "nowhere")


def test_search_is_safe_from_several_threads(bundle_dir):
    from concurrent.futures import ThreadPoolExecutor

    bundle = IndexBundle.open(bundle_dir)
    vectors = bundle.index.reconstruct_n(0, 40)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda i: bundle.search(vectors[i : i + 1], k=1)[0][0].item["item_id"], range(40))
        )
    expected = [bundle.search(vectors[i : i + 1], k=1)[0][0].item["item_id"] for i in range(40)]
    assert results == expected
