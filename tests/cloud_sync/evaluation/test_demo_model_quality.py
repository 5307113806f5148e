"""The shipped demo model (EfficientNet-Lite0, ImageNet + fine-tuned head) on the demo data: 20 train
photos per class (class folders) as catalog, 5 test photos per class as queries: build-index,
then evaluate --json."""

import json

from click.testing import CliRunner

from cloud_sync.cli.main import main
from devkit.demo import DEMO_MODEL
from tests.conftest import DEMO_CATALOG, DEMO_QUERIES


def numbers(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from numbers(value)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield node


def test_demo_model_retrieves_the_right_category_well_above_random(tmp_path):
    catalog = DEMO_CATALOG / "images"  # the same 200 photos as class folders
    bundle, report = tmp_path / "bundle", tmp_path / "eval.json"
    built = CliRunner().invoke(
        main, ["build-index", str(catalog), "--model", str(DEMO_MODEL), "--out", str(bundle)]
    )
    assert built.exit_code == 0, built.output
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--catalog",
            str(catalog),
            "--queries",
            str(DEMO_QUERIES),
            "--model",
            str(DEMO_MODEL),
            "--bundle",
            str(bundle),
            "--json",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(report.read_text())
    assert set(figures) - {"warnings"} == {"cosine", "l2", "l1", "hamming", "random", "threshold"}
    for name in ("cosine", "l2", "l1", "hamming", "random"):
        metric = figures[name]
        assert set(metric) >= {"precision_at_1", "precision_at_k", "recall_at_k", "map_at_k"}
        assert set(metric["precision_at_k"]) == {"1", "5", "10"}
        shares = {
            key: value
            for key, value in metric.items()
            if key not in ("median_query_latency_s", "index_factory")
        }
        assert all(0.0 <= value <= 1.0 for value in numbers(shares))
    assert figures["cosine"]["precision_at_1"] > figures["random"]["precision_at_1"] + 0.5
    assert figures["cosine"]["index_recall_at_k"]["10"] == 1.0  # Flat index: exact
    # the model's calibrated min_score keeps most genuine matches and turns away black, noise, text
    # and empty-counter frames (the calibration itself was made on the validation split)
    assert figures["threshold"]["genuine_kept"] >= 0.8
    assert figures["threshold"]["nothing_rejected"] >= 0.9
