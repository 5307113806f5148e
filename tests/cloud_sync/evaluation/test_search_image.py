"""`search-image`: what local_search would answer, with the bundle's min_score applied."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
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
            "--no-fold",  # the tiny test model puts every photo within cosine 0.94-0.99 of every other
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


DEFAULT_MODEL = DEMO_CATALOG.parent.parent / "models" / "demo-featurizer"


@pytest.fixture(scope="module")
def default_bundle(tmp_path_factory):
    """The demo catalog indexed with the default model, as a store's kiosk serves it."""
    return _bundle(DEFAULT_MODEL, tmp_path_factory.mktemp("default-bundle"))


def _search(bundle, image, *options) -> list[dict]:
    args = ["search-image", str(image), "--bundle", str(bundle), "--model", str(DEFAULT_MODEL), "--json"]
    result = CliRunner().invoke(main, [*args, *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)[0]["matches"]


def test_a_dress_photo_with_the_hard_filter_red_returns_the_red_dresses(default_bundle):
    """Issue 13: the filter trimmed only the visual top 5, so this said "no good match"."""
    dress = sorted((DEMO_CATALOG.parent / "queries" / "dress").glob("*.jpg"))[0]
    assert not any(m["title"] == "Red dress" for m in _search(default_bundle, dress))  # far down unfiltered
    found = _search(default_bundle, dress, "--keywords", "red")
    assert found and all(m["title"].startswith("Red ") for m in found)
    red_dresses = [m["id"] for m in found if m["category"] == "dress"]
    assert sorted(red_dresses) == ["dress-004", "dress-019"]  # every red dress of demo/catalog
    assert [m["category"] for m in found[:2]].count("dress") >= 1
    assert _search(default_bundle, dress, "--keywords", "dresses red") == [
        m for m in found if m["category"] == "dress"
    ]


def test_a_label_filter_category_hat_on_a_shoe_photo_returns_only_hats(default_bundle):
    shoe = sorted((DEMO_CATALOG.parent / "queries" / "shoes").glob("*.jpg"))[0]
    assert all(m["category"] == "shoes" for m in _search(default_bundle, shoe)[:1])
    hats = _search(default_bundle, shoe, "--filter", "category=hat", "--k", "10")
    assert len(hats) == 10 and {m["category"] for m in hats} == {"hat"}
    either = _search(default_bundle, shoe, "--filter", "(colour=red OR colour=blue) AND category=hat")
    assert either and all(m["title"].split()[0] in ("Red", "Blue") for m in either)


def test_a_filter_that_cannot_be_applied_is_one_line_naming_it(default_bundle):
    shoe = demo_image("shoes")
    args = ["search-image", str(shoe), "--bundle", str(default_bundle), "--model", str(DEFAULT_MODEL)]
    result = CliRunner().invoke(main, [*args, "--filter", "colour=red OR"])
    assert result.exit_code == 1
    assert (
        result.output.strip().splitlines()[-1].startswith("error: label filter 'colour=red OR': ends where")
    )
