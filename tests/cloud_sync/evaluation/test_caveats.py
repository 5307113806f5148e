"""Figures that cannot mean anything come with a warning (issue 14, item 14): evaluate on a
single-category catalog reported 1.000 for everything; fine-tune on 3 images reported "best
val accuracy 1.0000" while its loss rose from 2.1 to 11.7."""

import json
import shutil

from click.testing import CliRunner

from cloud_sync.cli.main import main
from cloud_sync.evaluation.caveats import training_caveats
from tests.conftest import DEMO_CATALOG


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_category(root, category="hat", count=4, start=0):
    (root / category).mkdir(parents=True)
    for image in sorted((DEMO_CATALOG / "images" / category).glob("*.jpg"))[start : start + count]:
        shutil.copyfile(image, root / category / image.name)
    return root


def test_evaluate_on_a_single_category_says_the_figures_mean_nothing(tiny_model, tmp_path):
    catalog, queries = (
        one_category(tmp_path / "catalog"),
        one_category(tmp_path / "queries", count=2, start=4),
    )
    result = run(
        "evaluate",
        "--catalog",
        catalog,
        "--queries",
        queries,
        "--model",
        tiny_model,
        "--k",
        "1,5",
        "--json",
        tmp_path / "eval.json",
    )
    assert result.exit_code == 0, result.output
    assert (
        "warning: every catalog item is in one category ('hat'): every item is relevant to every query, "
        "so each figure (the random baseline's too) is 1.000 by construction" in result.output
    )
    assert "warning: only 2 queries" in result.output
    figures = json.loads((tmp_path / "eval.json").read_text())
    assert figures["cosine"]["precision_at_1"] == 1.0 and len(figures["warnings"]) >= 2


def test_a_loss_that_rose_and_a_tiny_validation_set_are_warned_about():
    warnings = training_caveats(val_count=1, classes=2, epoch_losses=[2.1, 5.0, 11.7])
    assert "validation accuracy is measured on 1 image(s) of 2 categories" in warnings[0]
    assert "the training loss rose from 2.100 (epoch 1) to 11.700 (epoch 3)" in warnings[1]
    assert training_caveats(val_count=200, classes=10, epoch_losses=[2.1, 1.2, 0.7]) == []


def test_fine_tune_on_three_images_warns(tmp_path):
    data = one_category(tmp_path / "data", "hat", 2)
    one_category(data, "dress", 1)
    start = tmp_path / "start"
    assert (
        run("export-featurizer", "--arch", "mobilenet0.25", "--image-size", 64, "--out", start).exit_code == 0
    )
    result = run(
        "fine-tune",
        "--data",
        data,
        "--out",
        tmp_path / "tuned",
        "--from",
        start,
        "--epochs",
        2,
        "--image-size",
        64,
        "--embedding-dim",
        16,
        "--batch-size",
        2,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert "warning: validation accuracy is measured on" in result.output
