"""Re-ranking a compressed index's candidates from the full vectors on disk (rerank.py)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cloud_sync.cli.main import main
from cloud_sync.indexing.reuse import VECTORS_FILE
from components.common.bundle import RERANK_FILE
from components.common.errors import BundleError
from components.common.items import ItemStore
from components.local_search.rerank import RerankVectors, write_rerank_vectors
from components.local_search.search import IndexBundle

REPO = Path(__file__).resolve().parents[2]
DEMO_CATALOG = REPO / "demo" / "catalog"
DEMO_MODEL = REPO / "models" / "demo-featurizer"
COMPRESSED = "PCA32,IVF8,SQ8"  # 32 of 1280 dimensions: ranks poorly on its own


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def build(out: Path, *extra: str) -> dict:
    args = ["build-index", DEMO_CATALOG, "--model", DEMO_MODEL, "--out", out, "--index", COMPRESSED]
    result = CliRunner().invoke(main, [str(a) for a in (*args, "--search-params", "nprobe=8", *extra)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerank")
    reranked, plain = build(root / "reranked", "--rerank", "40"), build(root / "plain")
    return root / "reranked", reranked, root / "plain", plain


def near_queries(vectors: np.ndarray, count: int = 60) -> np.ndarray:
    rng = np.random.default_rng(1)
    picked = vectors[rng.integers(0, len(vectors), count)]
    return unit(picked + 0.03 * rng.standard_normal(picked.shape))


def test_a_compressed_bundle_with_rerank_ranks_as_exact_search_does(bundles):
    reranked_dir, manifest, plain_dir, plain_manifest = bundles
    assert manifest["index"]["rerank"] == {"file": RERANK_FILE, "candidates": 40, "dtype": "float16"}
    assert RERANK_FILE in manifest["files"] and "rerank" not in plain_manifest["index"]
    vectors = np.load(reranked_dir / VECTORS_FILE)
    queries = near_queries(vectors)
    exact_scores = queries @ vectors.T
    exact = np.argsort(-exact_scores, axis=1)[:, :5]
    reranked, plain = IndexBundle.open(reranked_dir), IndexBundle.open(plain_dir)
    scores, ids = reranked.search_ids(queries, 5)
    _, plain_ids = plain.search_ids(queries, 5)
    reranked.close(), plain.close()
    assert (ids == exact).mean() >= 0.98
    assert (plain_ids == exact).mean() < 0.8  # what the index alone gives: the check can fail
    np.testing.assert_allclose(scores, np.take_along_axis(exact_scores, ids, axis=1), atol=2e-3)


def test_filters_and_folding_use_the_full_vectors(bundles):
    reranked_dir = bundles[0]
    vectors = np.load(reranked_dir / VECTORS_FILE)
    queries = near_queries(vectors, 10)
    allowed = np.arange(0, len(vectors), 7, dtype=np.int64)
    bundle = IndexBundle.open(reranked_dir)
    _, ids = bundle.search_ids(queries, 5, allowed)
    folded_vectors = bundle._vectors([3, 150])
    bundle.close()
    assert np.isin(ids, allowed).all()
    exact = allowed[np.argsort(-(queries @ vectors[allowed].T), axis=1)[:, :5]]
    assert (ids == exact).mean() >= 0.9
    np.testing.assert_allclose(folded_vectors, vectors[[3, 150]], atol=2e-3)


def test_a_damaged_rerank_file_is_refused_and_the_display_never_reads_it(bundles, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundles[0], copy)
    with open(copy / RERANK_FILE, "r+b") as handle:
        handle.seek(-10, 2)
        handle.write(b"\x00" * 10)
    with pytest.raises(BundleError, match="rerank-vectors.npy: sha256 does not match"):
        IndexBundle.open(copy)
    ItemStore.open(copy).close()  # the display's check skips what it does not read


def test_rerank_vectors_refuse_a_file_of_another_shape_or_type(tmp_path):
    path = tmp_path / RERANK_FILE
    write_rerank_vectors(path, [np.ones((3, 4)), np.ones((2, 4))], 5, 4)
    assert RerankVectors.open(path, 5, 4).vectors(np.array([4, 0])).dtype == np.float32
    with pytest.raises(BundleError, match=r"holds float16 \(5, 4\), expected float16 \(6, 4\)"):
        RerankVectors.open(path, 6, 4)
    np.save(path, np.array([{"a": 1}], dtype=object))
    with pytest.raises(BundleError, match="holds object"):
        RerankVectors.open(path, 1, 4)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(BundleError, match=RERANK_FILE):
        RerankVectors.open(path, 1, 4)
    with pytest.raises(ValueError, match="got 5 vectors, expected 6"):
        write_rerank_vectors(tmp_path / "short.npy", [np.ones((5, 4))], 6, 4)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_rerank_orders_candidates_by_the_full_vectors_and_pads_missing_ones(tmp_path, metric):
    rng = np.random.default_rng(0)
    vectors = unit(rng.standard_normal((50, 16)))
    write_rerank_vectors(tmp_path / "v.npy", [vectors], 50, 16)
    stored = RerankVectors.open(tmp_path / "v.npy", 50, 16)
    queries = unit(rng.standard_normal((2, 16)))
    candidates = np.array([[5, 9, 1, 30, -1], [-1, -1, -1, -1, -1]])
    distances, ids = stored.rerank(queries, candidates, 3, metric)
    full = vectors.astype(np.float16).astype(np.float32)
    if metric == "cosine":
        expected = sorted([5, 9, 1, 30], key=lambda i: -(full[i] @ queries[0]))[:3]
    else:
        expected = sorted([5, 9, 1, 30], key=lambda i: ((full[i] - queries[0]) ** 2).sum())[:3]
    assert ids[0].tolist() == expected and ids[1].tolist() == [-1, -1, -1]
    assert np.isinf(distances[1]).all()


def test_evaluate_measures_a_bundle_as_the_device_searches_it_re_ranked(bundles, tmp_path):
    recalls = {}
    for name in ("reranked", "plain"):
        out = tmp_path / f"{name}.json"
        args = ["evaluate", "--catalog", DEMO_CATALOG, "--queries", REPO / "demo" / "queries"]
        args += ["--model", DEMO_MODEL, "--bundle", bundles[0].parent / name, "--json", out]
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        recalls[name] = json.loads(out.read_text())["cosine"]["index_recall_at_k"]["5"]
    assert recalls["reranked"] >= 0.98 and recalls["plain"] <= recalls["reranked"] - 0.1


def test_a_re_ranked_bundle_travels_through_s3_and_serves_on_the_device(bundles, tmp_path, s3_bucket):
    from components.local_search.bundle_store import BundleStore
    from components.local_search.index_sync import IndexSync
    from components.local_search.serving import ServingIndex

    reranked_dir = bundles[0]
    published = CliRunner().invoke(
        main, ["publish-index", str(reranked_dir), "--bucket", s3_bucket, "--prefix", "fleet/rerank"]
    )
    assert published.exit_code == 0, published.output
    serving = ServingIndex()
    sync = IndexSync(
        BundleStore(tmp_path / "device"),
        serving,
        bucket=s3_bucket,
        prefix="fleet/rerank",
        poll_interval_s=3600,
        expected_fingerprint=lambda: None,
        report=lambda state, detail: None,
    )
    assert sync.check_once() and serving.bundle is not None
    device = serving.bundle
    assert device.reranker is not None and (device.path / RERANK_FILE).is_file()
    vectors = np.load(reranked_dir / VECTORS_FILE)
    queries = near_queries(vectors, 10)
    local = IndexBundle.open(reranked_dir)
    np.testing.assert_array_equal(device.search_ids(queries, 5)[1], local.search_ids(queries, 5)[1])
    local.close()


@pytest.mark.parametrize(
    "rerank",
    [
        {"file": "../../outside.npy", "candidates": 40, "dtype": "float16"},
        {"file": RERANK_FILE, "candidates": 0, "dtype": "float16"},
        {"file": RERANK_FILE, "candidates": 40, "dtype": "float32"},
        "yes",
    ],
)
def test_a_manifest_naming_another_rerank_file_or_a_bad_depth_is_refused(bundles, tmp_path, rerank):
    from components.common.bundle import write_manifest

    copy = tmp_path / "copy"
    shutil.copytree(bundles[0], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["index"]["rerank"] = rerank
    write_manifest(copy, {k: v for k, v in manifest.items() if k not in ("files", "reuse")})
    with pytest.raises(BundleError, match="index.rerank must name the listed rerank-vectors.npy"):
        IndexBundle.open(copy)
