"""`search-image`: what local_search would answer, with the bundle's min_score applied."""

from __future__ import annotations

import json

import cv2
import numpy as np
from click.testing import CliRunner

from cloud_sync.cli.main import main
from components.common.bundle import read_manifest, write_manifest
from tests.conftest import DEMO_CATALOG, demo_image


def _bundle(tiny_model, tmp_path):
    bundle = tmp_path / "bundle"
    result = CliRunner().invoke(
        main, ["build-index", str(DEMO_CATALOG), "--model", str(tiny_model), "--out", str(bundle)]
    )
    assert result.exit_code == 0, result.output
    return bundle


def test_json_lists_one_answer_per_image_with_the_fields_engineers_need(tiny_model, tmp_path):
    bundle = _bundle(tiny_model, tmp_path)
    shoe = demo_image("shoes")
    result = CliRunner().invoke(
        main,
        [
            "search-image",
            str(shoe),
            "--bundle",
            str(bundle),
            "--model",
            str(tiny_model),
            "--json",
            "--k",
            "3",
            "--min-score",
            "-1",
        ],
    )
    assert result.exit_code == 0, result.output
    answers = json.loads(result.output)
    assert [a["image"] for a in answers] == [str(shoe)]
    assert answers[0]["no_match"] is False and len(answers[0]["matches"]) == 3
    best = answers[0]["matches"][0]
    assert {"id", "score", "title", "category"} <= set(best)
    assert best["id"] == "shoes-000" or best["score"] >= answers[0]["matches"][1]["score"]


def test_the_bundles_min_score_is_applied_unless_one_is_given(tiny_model, tmp_path):
    bundle = _bundle(tiny_model, tmp_path)
    manifest = read_manifest(bundle)
    manifest.pop("files")
    write_manifest(bundle, {**manifest, "min_score": 0.9999})  # nothing but an exact copy passes
    black = tmp_path / "black.png"
    cv2.imwrite(str(black), np.zeros((200, 200, 3), np.uint8))
    args = ["search-image", str(black), "--bundle", str(bundle), "--model", str(tiny_model), "--json"]
    answers = json.loads(CliRunner().invoke(main, args).output)
    assert answers[0] == {"image": str(black), "no_match": True, "matches": []}
    answers = json.loads(CliRunner().invoke(main, args + ["--min-score", "-1"]).output)
    assert answers[0]["no_match"] is False


def test_an_unreadable_image_is_a_one_line_error(tiny_model, tmp_path):
    bundle = _bundle(tiny_model, tmp_path)
    (tmp_path / "not-an-image.jpg").write_text("hello")
    result = CliRunner().invoke(
        main,
        [
            "search-image",
            str(tmp_path / "not-an-image.jpg"),
            "--bundle",
            str(bundle),
            "--model",
            str(tiny_model),
        ],
    )
    assert result.exit_code == 1
    assert "not-an-image.jpg" in result.output and "Traceback" not in result.output
