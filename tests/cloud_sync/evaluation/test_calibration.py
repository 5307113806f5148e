"""`evaluate --calibrate` and `--reshots`: the threshold math, the 'nothing' frames, the command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from cloud_sync.cli.main import main
from cloud_sync.evaluation.calibration import (
    DEMO_TIMELINE,
    DEMO_VIDEO,
    calibrate,
    empty_scene_frames,
    synthetic_nothing,
)
from components.common.bundle import read_manifest
from components.featurizer.model import read_spec
from tests.conftest import DEMO_CATALOG, DEMO_QUERIES


def test_the_threshold_keeps_the_asked_share_of_genuine_matches():
    genuine = np.linspace(0.5, 0.9, 100)  # 100 genuine best-match scores
    nothing = np.array([0.3, 0.45, 0.52, 0.6])
    result = calibrate(genuine, nothing, keep=0.95)
    assert result.genuine_kept >= 0.95
    assert np.mean(genuine >= result.min_score + 0.01) < 0.95  # and not a looser threshold than needed
    assert result.nothing_rejected == pytest.approx(np.mean(nothing < result.min_score))
    assert result.nothing_max_score == pytest.approx(0.6)


def test_keeping_everything_puts_the_threshold_at_the_lowest_genuine_score():
    result = calibrate(np.array([0.71, 0.8, 0.9]), np.array([0.2]), keep=1.0)
    assert result.min_score <= 0.71 and result.genuine_kept == 1.0 and result.nothing_rejected == 1.0


def test_no_genuine_match_is_a_clear_error():
    with pytest.raises(ValueError, match="no genuine matches"):
        calibrate(np.array([]), np.array([0.5]), keep=0.9)


def test_the_built_in_nothing_frames_are_black_noise_and_text():
    names = [name for name, _ in synthetic_nothing()]
    assert "black" in names and any("noise" in n for n in names) and any("text" in n for n in names)


def test_empty_scene_frames_come_from_moments_without_an_item():
    timeline = json.loads(DEMO_TIMELINE.read_text())
    frames = empty_scene_frames(DEMO_VIDEO, timeline, count=5)
    assert len(frames) == 5
    for name, frame in frames:
        at = float(name.split("@")[1].rstrip("s"))
        assert not any(item["enter_s"] <= at <= item["leave_s"] for item in timeline["items"]), name
        assert frame.ndim == 3


def test_calibrate_records_min_score_in_model_and_bundle(tiny_model, tmp_path, copy_model):
    model = copy_model(tiny_model, tmp_path / "model")
    bundle = tmp_path / "bundle"
    runner = CliRunner()
    built = runner.invoke(
        main, ["build-index", str(DEMO_CATALOG), "--model", str(model), "--out", str(bundle)]
    )
    assert built.exit_code == 0, built.output
    result = runner.invoke(
        main,
        [
            "evaluate",
            "--catalog",
            str(DEMO_CATALOG),
            "--queries",
            str(DEMO_QUERIES),
            "--model",
            str(model),
            "--bundle",
            str(bundle),
            "--metric",
            "cosine",
            "--calibrate",
            "--keep",
            "0.9",
            "--reshots",
            "20",
            "--json",
            str(tmp_path / "figures.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads((tmp_path / "figures.json").read_text())
    min_score = figures["calibration"]["min_score"]
    assert figures["calibration"]["genuine_kept"] >= 0.9
    assert figures["reshots"]["queries"] == 20
    assert 0 <= figures["reshots"]["recall_at_k"]["1"] <= figures["reshots"]["recall_at_k"]["5"] <= 1
    assert f"calibrated min_score {min_score:.3f}" in result.output
    assert read_manifest(bundle)["min_score"] == min_score
    assert read_spec(model).extra["calibration"]["min_score"] == min_score
    # a bundle built from the calibrated model carries its min_score
    rebuilt = runner.invoke(
        main, ["build-index", str(DEMO_CATALOG), "--model", str(model), "--out", str(tmp_path / "bundle2")]
    )
    assert rebuilt.exit_code == 0, rebuilt.output
    assert math.isclose(read_manifest(tmp_path / "bundle2")["min_score"], min_score)
    # later evaluations report how the recorded threshold does on their queries
    again = runner.invoke(
        main,
        [
            "evaluate",
            "--catalog",
            str(DEMO_CATALOG),
            "--queries",
            str(DEMO_QUERIES),
            "--model",
            str(model),
            "--metric",
            "cosine",
            "--json",
            str(tmp_path / "f2.json"),
        ],
    )
    assert again.exit_code == 0, again.output
    threshold = json.loads((tmp_path / "f2.json").read_text())["threshold"]
    assert threshold["min_score"] == min_score and threshold["keep"] is None
    assert f"at the model's recorded min_score {min_score:.3f}" in again.output
