"""`evaluate`: the metric math on hand-made rankings, then the command end to end."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cloud_sync.cli.main import main
from cloud_sync.evaluation.evaluate import (
    distance_matrix,
    exact_rankings,
    ground_truth_kind,
    index_fidelity,
    random_rankings,
    relevance,
    retrieval_metrics,
)
from cloud_sync.indexing.catalog import CatalogItem
from components.common.errors import CatalogError
from components.local_search.faiss_index import build_index, plain_search

DATA = Path("/work/shared/data/clothing-dataset-small")
KS = ["1", "5", "10"]


# --- the metric math ----------------------------------------------------------------------


def test_metrics_on_a_hand_made_ranking():
    # query 1: relevant at ranks 1 and 3, 3 relevant in the catalog; query 2: rank 2, 1 relevant
    rel = np.array([[1, 0, 1, 0], [0, 1, 0, 0]], bool)
    got = retrieval_metrics(rel, np.array([3, 1]), [1, 2, 4])
    assert got["precision_at_1"] == pytest.approx(0.5)
    assert got["precision_at_k"] == pytest.approx({"1": 0.5, "2": 0.5, "4": (2 / 4 + 1 / 4) / 2})
    assert got["recall_at_k"] == pytest.approx({"1": (1 / 3) / 2, "2": (1 / 3 + 1) / 2, "4": (2 / 3 + 1) / 2})
    # AP@4 of query 1: (P@1 + P@3) / min(4, 3) = (1 + 2/3) / 3; of query 2: P@2 / 1 = 1/2
    assert got["map_at_k"] == pytest.approx(
        {"1": 0.5, "2": (1 / 2 + 1 / 2) / 2, "4": ((1 + 2 / 3) / 3 + 1 / 2) / 2}
    )


def test_a_perfect_ranking_scores_one():
    rel = np.array([[1, 1, 1, 0, 0]], bool)
    got = retrieval_metrics(rel, np.array([3]), [1, 3, 5])
    assert got["precision_at_1"] == 1.0
    assert got["precision_at_k"] == pytest.approx({"1": 1.0, "3": 1.0, "5": 0.6})
    assert got["recall_at_k"] == pytest.approx({"1": 1 / 3, "3": 1.0, "5": 1.0})
    assert got["map_at_k"] == pytest.approx({"1": 1.0, "3": 1.0, "5": 1.0})


def test_a_query_without_relevant_items_scores_zero_not_nan():
    got = retrieval_metrics(np.zeros((1, 3), bool), np.array([0]), [1, 10])
    assert got == {
        "precision_at_1": 0.0,
        "precision_at_k": {"1": 0.0, "10": 0.0},
        "recall_at_k": {"1": 0.0, "10": 0.0},
        "map_at_k": {"1": 0.0, "10": 0.0},
    }


def test_relevance_compares_labels_and_counts_relevant_items():
    rel, n_rel = relevance(np.array([[2, 0, 1], [1, 2, 0]]), ["a", "b", "a"], ["a", "zzz"])
    assert rel.tolist() == [[True, True, False], [False, False, False]]
    assert n_rel.tolist() == [2, 0]


def test_a_product_with_several_pictures_is_ranked_once_at_its_best_picture():
    from cloud_sync.evaluation.evaluate import product_rankings

    product_of = np.array([0, 0, 1, 2, 1, 0])  # pictures of products 0, 1, 2
    ranked = product_rankings(np.array([[1, 0, 4, 3, 5, 2], [5, 0, 1, 4, 2, 3]]), product_of, depth=3)
    assert ranked.tolist() == [[0, 1, 2], [0, 1, 2]]
    assert product_rankings(np.array([[0, 1, 5]]), product_of, depth=2).tolist() == [[0, -1]]
    rel, _ = relevance(np.array([[0, -1]]), ["a", "b", "c"], ["a"])
    assert rel.tolist() == [[True, False]]  # padding is never a hit


def test_hamming_uses_sign_bits_and_ties_keep_catalog_order():
    query = np.array([[0.5, -0.1, 0.2]], np.float32)  # bits 1 0 1
    catalog = np.array([[0.1, 0.3, 0.9], [-1, -1, -1], [0.7, -0.2, 0.0]], np.float32)  # 111 000 100
    assert distance_matrix(query, catalog, "hamming").tolist() == [[1, 2, 1]]
    ids, dists = exact_rankings(query, catalog, "hamming", 3)
    assert ids.tolist() == [[0, 2, 1]] and dists.tolist() == [[1, 1, 2]]


def test_l1_l2_and_cosine_rankings():
    query = np.array([[1.0, 0.0]], np.float32)
    catalog = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0]], np.float32)
    assert distance_matrix(query, catalog, "l1")[0] == pytest.approx([2.0, 1.2, 0.0])
    assert distance_matrix(query, catalog, "l2")[0] == pytest.approx([2.0, 0.8, 0.0], abs=1e-6)
    for metric in ("cosine", "l2", "l1"):
        assert exact_rankings(query, catalog, metric, 2)[0].tolist() == [[2, 1]]


def test_random_rankings_are_seeded_permutations():
    first = random_rankings(4, 10, 10, seed=3)
    assert np.array_equal(first, random_rankings(4, 10, 10, seed=3))
    assert not np.array_equal(first, random_rankings(4, 10, 10, seed=4))
    assert all(sorted(row) == list(range(10)) for row in first.tolist())


def test_ground_truth_is_item_id_when_every_query_has_one():
    assert ground_truth_kind([CatalogItem("q", "q.jpg", "q", extra={"item_id": "x"})], "q.csv") == "item_id"
    assert ground_truth_kind([CatalogItem("q", "q.jpg", "q", category="hat")], "q.csv") == "category"
    with pytest.raises(CatalogError, match=r"q.csv: 1 query row\(s\) without a category.*q.csv:3"):
        ground_truth_kind(
            [CatalogItem("q", "q.jpg", "q", category="hat"), CatalogItem("r", "r.jpg", "r", where="q.csv:3")],
            "q.csv",
        )


def test_index_fidelity_against_exact_search():
    rng = np.random.default_rng(0)
    catalog = rng.normal(size=(50, 8)).astype(np.float32)
    catalog /= np.linalg.norm(catalog, axis=1, keepdims=True)
    queries = catalog[:5] + 0.01
    _, exact = exact_rankings(queries, catalog, "cosine", 5)
    recall, latency = index_fidelity(
        plain_search(build_index(catalog, "Flat", "cosine")),
        queries,
        catalog,
        "cosine",
        [1, 5],
        np.arange(50),
        exact,
    )
    assert recall == {"1": 1.0, "5": 1.0} and 0 <= latency < 1

    def wrong(vectors, k):  # returns the farthest items first, then nothing
        far = np.argsort(-distance_matrix(vectors, catalog, "cosine")[0])[:k]
        return np.array([[far[0]] + [-1] * (k - 1)])

    recall, _ = index_fidelity(wrong, queries, catalog, "cosine", [1, 5], np.arange(50), exact)
    assert recall == {"1": 0.0, "5": 0.0}


# --- end to end -------------------------------------------------------------------------------


def copy_classes(source: Path, target: Path, per_class: int) -> Path:
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (target / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:per_class]:
            shutil.copy(image, target / folder.name / image.name)
    return target


@pytest.fixture(scope="session")
def sets(tmp_path_factory):
    """A featurizer, a catalog (6 train images per class), queries (2 test images per class
    plus one file that is not an image), and bundles built from them."""
    import mxnet as mx

    from cloud_sync.indexing.build_index import build_bundle
    from cloud_sync.training.export import export_zoo_featurizer

    root = tmp_path_factory.mktemp("evaluate")
    mx.random.seed(0)
    export_zoo_featurizer("mobilenet0.5", root / "model", image_size=64)
    mx.random.seed(1)
    export_zoo_featurizer("mobilenet0.25", root / "other-model", image_size=32)
    catalog = copy_classes(DATA / "train", root / "catalog", 6)
    queries = copy_classes(DATA / "test", root / "queries", 2)
    (queries / "hat" / "zz-not-an-image.jpg").write_text("this is not a JPEG")
    build_bundle(catalog, root / "model", root / "bundle", progress=False)
    build_bundle(catalog, root / "other-model", root / "other-model-bundle", progress=False)
    build_bundle(queries, root / "model", root / "other-catalog-bundle", progress=False, skip_bad_rows=True)
    return root


def run(root: Path, *args: str):
    return CliRunner().invoke(
        main,
        [
            "evaluate",
            "--catalog",
            str(root / "catalog"),
            "--queries",
            str(root / "queries"),
            "--model",
            str(root / "model"),
            "--k",
            "1,5,10",
            *args,
        ],
    )


def numbers(value):
    if isinstance(value, dict):
        for inner in value.values():
            yield from numbers(inner)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_evaluate_writes_json_and_report(sets):
    result = run(sets, "--json", str(sets / "out" / "eval.json"), "--report", str(sets / "out" / "eval.html"))
    assert result.exit_code == 0, result.output
    figures = json.loads((sets / "out" / "eval.json").read_text())
    assert list(figures) == ["cosine", "l2", "l1", "hamming", "random"]
    for name, entry in figures.items():
        assert isinstance(entry["precision_at_1"], float)
        for key in ("precision_at_k", "recall_at_k", "map_at_k"):
            assert list(entry[key]) == KS, (name, key)
    assert list(figures["cosine"]["index_recall_at_k"]) == KS
    assert figures["cosine"]["index_factory"] == "Flat"
    assert figures["cosine"]["index_recall_at_k"] == {k: 1.0 for k in KS}  # Flat is exact
    assert 0 < figures["cosine"]["median_query_latency_s"] < 1
    assert all(0 <= value <= 1 for value in numbers(figures))

    # the unreadable query is reported and left out; the table is printed
    assert "bad row: query hat/zz-not-an-image.jpg" in result.stderr
    assert "skipped 1 query row(s)" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout.splitlines()[0].split()[:4] == ["metric", "P@1", "P@5", "P@10"]
    assert "catalog: 60 items (0 skipped); queries: 20 (1 skipped)" in result.stdout
    assert "random" in result.stdout and "median query latency" in result.stdout

    html = (sets / "out" / "eval.html").read_text()
    assert "<svg" in html and "</svg>" in html
    assert html.count('<img src="data:image/jpeg;base64,') == 6 * 6  # 6 queries + 5 matches each
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in html


def test_evaluate_with_the_bundle_of_this_catalog(sets):
    result = run(
        sets, "--metric", "l1", "--json", str(sets / "bundle.json"), "--bundle", str(sets / "bundle")
    )
    assert result.exit_code == 0, result.output
    figures = json.loads((sets / "bundle.json").read_text())
    assert list(figures) == ["l1", "cosine", "random"]  # the index's metric is always added
    assert figures["cosine"]["index_recall_at_k"] == {k: 1.0 for k in KS}
    assert figures["cosine"]["index_factory"] == "Flat"
    assert f"Flat (exact, {sets / 'bundle'})" in result.stdout


@pytest.mark.parametrize(
    "bundle, reason",
    [("other-model-bundle", "built for model"), ("other-catalog-bundle", "not the 60 usable pictures")],
)
def test_a_bundle_of_another_model_or_catalog_is_a_one_line_error(sets, bundle, reason):
    result = run(sets, "--bundle", str(sets / bundle), "--json", str(sets / f"{bundle}.json"))
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        line for line in result.stderr.splitlines() if reason in line
    ]
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {sets / bundle}")
    assert not (sets / f"{bundle}.json").exists()


def test_item_id_queries_find_their_own_catalog_item(sets, tmp_path):
    rows = [
        {"id": f"q{i}", "image": str(path), "item_id": path.relative_to(sets / "catalog").as_posix()}
        for i, path in enumerate(sorted((sets / "catalog").glob("*/*"))[::6])
    ]
    with open(tmp_path / "catalog.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["id", "image", "item_id"])
        writer.writeheader()
        writer.writerows(rows)
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--catalog",
            str(sets / "catalog"),
            "--queries",
            str(tmp_path),
            "--model",
            str(sets / "model"),
            "--metric",
            "cosine",
            "--k",
            "1,3",
            "--json",
            str(tmp_path / "out.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    cosine = json.loads((tmp_path / "out.json").read_text())["cosine"]
    assert cosine["precision_at_1"] == 1.0 and cosine["recall_at_k"] == {"1": 1.0, "3": 1.0}
    assert "ground truth: same item" in result.stdout


def test_a_product_hit_counts_once_however_many_pictures_it_has(tiny_model, tmp_path):
    """Issue 13: three pictures of the right product must not make P@3 = 1 for one product."""
    from cloud_sync.evaluation.evaluate import run_evaluation
    from tests.conftest import demo_image, write_csv_catalog

    pictures = {f"{c}-{n}.jpg": demo_image(c, n) for c in ("hat", "shoes", "dress") for n in range(3)}
    rows = [{"id": name.split("-")[0], "image": name, "category": name.split("-")[0]} for name in pictures]
    catalog = write_csv_catalog(tmp_path / "catalog", rows, pictures)
    queries = write_csv_catalog(
        tmp_path / "queries",
        [{"id": "q", "image": "q.jpg", "item_id": "hat"}],
        {"q.jpg": demo_image("hat", 1)},
    )
    evaluation = run_evaluation(catalog, queries, tiny_model, metrics=("cosine",), ks=(1, 3), progress=False)
    cosine = evaluation.results["cosine"]
    assert cosine["precision_at_1"] == 1.0 and cosine["recall_at_k"]["3"] == 1.0
    assert cosine["precision_at_k"]["3"] == pytest.approx(1 / 3)  # one relevant product among three
    shown = [item.id for item, _, _ in evaluation.examples[0].matches]
    assert sorted(shown) == ["dress", "hat", "shoes"]


def test_queries_without_category_are_an_error(sets, tmp_path):
    (tmp_path / "catalog.csv").write_text("id,image\nq1,a.jpg\n")
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--catalog",
            str(sets / "catalog"),
            "--queries",
            str(tmp_path),
            "--model",
            str(sets / "model"),
        ],
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: {tmp_path / 'catalog.csv'}: 1 query row(s) without a category "
        f"(or an item_id on every row): catalog.csv:2"
    )


@pytest.mark.parametrize("option, value", [("--metric", "cosine,manhattan"), ("--k", "0,5"), ("--k", "a")])
def test_bad_options_are_usage_errors(sets, option, value):
    result = run(sets, option, value)
    assert result.exit_code == 2
    assert option in result.stderr
