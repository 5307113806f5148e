import json
import shutil

import numpy as np
import pytest

from cloud_sync.indexing.build_index import build_bundle
from components.common.errors import BundleError
from components.featurizer.model import Featurizer
from components.featurizer.preprocess import read_image
from components.local_search.search import IndexBundle
from components.local_search.settings import LocalSearchSettings
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


@pytest.mark.parametrize(
    "factory, params", [("Flat", ""), ("HNSW32", "efSearch=64"), ("IVF8,Flat", "nprobe=8")]
)
@pytest.mark.parametrize("every", [7, 1])  # a small allowed set (HNSW: exact) and all of them (selector)
def test_a_filtered_search_finds_the_best_allowed_vectors_however_far_down(factory, params, every):
    from components.local_search.faiss_index import build_index, set_search_params
    from components.local_search.filtered_search import EXACT_SUBSET_MAX, search_within

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((EXACT_SUBSET_MAX + 500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build_index(vectors, factory, "cosine")
    set_search_params(index, params)
    allowed = np.arange(3, len(vectors), every, dtype=np.int64)
    scores, ids = search_within(index, vectors[:4], 5, allowed)
    exact = vectors[:4] @ vectors[allowed].T
    best = allowed[np.argsort(-exact, axis=1)[:, :5]]
    assert np.isin(ids, allowed).all()
    assert (ids == best).mean() >= 0.9  # graph and inverted-list search may miss a near-tie
    empty_scores, empty_ids = search_within(index, vectors[:1], 5, np.zeros(0, np.int64))
    assert (empty_ids == -1).all()


DEFAULT_MODEL = DEMO_CATALOG.parent.parent / "models" / "demo-featurizer"


def _catalog_bundle(tmp_path, tiny_model, rows, pictures):
    from tests.conftest import write_csv_catalog

    catalog = write_csv_catalog(tmp_path / "catalog", rows, pictures)
    build_bundle(catalog, tiny_model, tmp_path / "bundle", progress=False)
    return IndexBundle.open(tmp_path / "bundle")


def test_a_catalog_with_three_photos_per_product_returns_each_product_at_most_once(tmp_path, tiny_model):
    """Issue 13: a row is an image, not a product."""
    pictures = {
        f"{c}-{n}.jpg": demo_image(c, n) for c in ("hat", "shoes", "dress", "skirt") for n in range(3)
    }
    rows = [{"id": f"{name[:-6]}-product", "image": name, "title": name[:-6]} for name in pictures]
    bundle = _catalog_bundle(tmp_path, tiny_model, rows, pictures)
    assert len(bundle) == 12 and bundle.manifest["product_count"] == 4
    featurizer = Featurizer(tiny_model)
    vector = featurizer.featurize([read_image(demo_image("hat", 1))])
    [matches] = bundle.search(vector, k=5)
    assert [m.item["item_id"] for m in matches][:1] == ["hat-product"]
    assert sorted(m.item["item_id"] for m in matches) == sorted(
        f"{c}-product" for c in ("hat", "shoes", "dress", "skirt")
    )
    assert matches[0].score == pytest.approx(1.0, abs=1e-4) and matches[0].item["image"] == "hat-1.jpg"
    [hats] = bundle.search(vector, k=5, allowed=bundle.filter_ids(keywords="hat"))
    assert [m.item["item_id"] for m in hats] == ["hat-product"]


def test_five_ids_sharing_one_picture_show_it_once_with_the_others_as_variants(tmp_path):
    """Issue 13: one row per size filled all five result slots with the same picture at 100 %."""
    pictures = {
        "tee.jpg": demo_image("t-shirt", 0),
        **{f"other-{n}.jpg": demo_image("shoes", n) for n in range(6)},
    }
    sizes = [
        {"id": f"tee-{size}", "image": "tee.jpg", "title": f"T-shirt {size}", "price": "9.99"}
        for size in "SMLX"
    ]
    rows = [*sizes, {"id": "tee-XXL", "image": "tee.jpg", "title": "T-shirt XXL", "price": "11.99"}]
    rows += [{"id": f"shoe-{n}", "image": f"other-{n}.jpg", "title": f"Shoe {n}"} for n in range(6)]
    bundle = _catalog_bundle(tmp_path, DEFAULT_MODEL, rows, pictures)
    vector = Featurizer(DEFAULT_MODEL).featurize([read_image(demo_image("t-shirt", 0))])
    [folded] = bundle.search(vector, k=5, fold_similarity=LocalSearchSettings().fold_similarity)
    assert len(folded) == 5 and [m.item["image"] for m in folded].count("tee.jpg") == 1
    tee = folded[0]
    assert tee.item["image"] == "tee.jpg" and len(tee.variants) == 4
    assert {v.item["title"] for v in tee.variants} | {tee.item["title"]} == {
        f"T-shirt {s}" for s in ["S", "M", "L", "X", "XXL"]
    }
    [unfolded] = bundle.search(vector, k=5)
    assert [m.item["image"] for m in unfolded] == ["tee.jpg"] * 5
