"""`visual-search validate-config COMPONENT FILE`: a deployment's configuration checked offline."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cloud_sync.cli.main import main
from components.local_search.settings import LocalSearchSettings
from tests.conftest import REPO


def validate(component: str, path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate-config", component, str(path)])
    return result.exit_code, result.output  # stdout and stderr, in order


def write(tmp_path, content, name="config.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize("component", ["display", "com.visualsearch.Display"])
def test_a_valid_configuration_is_ok_by_short_or_full_name(tmp_path, component):
    code, output = validate(component, write(tmp_path, {"port": 8081, "idle_after_s": 5}))
    assert code == 0 and output.startswith("OK: ") and "com.visualsearch.Display" in output


def test_every_problem_is_printed_and_the_exit_code_is_1(tmp_path):
    code, output = validate(
        "local_search",
        write(tmp_path, {"min_score": "abc", "top_k": 0, "colour": 1, "index_bucket": "store"}),
    )
    assert code == 1 and "OK" not in output
    assert output.splitlines() == [
        "local_search: unknown setting(s) colour (known: bundle_dir, fold_duplicates, fold_similarity, "
        "index_bucket, index_dir, index_prefix, "
        "min_score, poll_interval_s, smoothing_window, status_interval_s, telemetry_interval_s, "
        "telemetry_queue_max, top_k)",
        "local_search.top_k: 0 is not at least 1",
        "local_search.min_score: 'abc' is not a number",
    ]


def test_it_is_checked_on_top_of_the_recipe_defaults_settings_together_included(tmp_path):
    # a fresh device: nothing to serve
    code, output = validate("local_search", write(tmp_path, {"min_score": 0.5}))
    assert code == 1 and "local_search.bundle_dir: not set, and no index_bucket to sync from" in output
    assert validate("local_search", write(tmp_path, {"min_score": 0.5, "bundle_dir": "/b"}))[0] == 0


def test_a_configuration_update_with_merge_text_and_reset(tmp_path):
    update = {"merge": json.dumps({"camera": "/dev/video1", "thumbnail_px": 64}), "reset": ["/model_dir"]}
    assert validate("featurizer", write(tmp_path, update))[0] == 0
    code, output = validate("featurizer", write(tmp_path, {"merge": {"thumbnail_px": 999}, "reset": []}))
    assert code == 1 and output.strip() == "featurizer.thumbnail_px: 999 is not at most 256"
    code, output = validate("featurizer", write(tmp_path, {"merge": "[1, 2]"}))
    assert code == 1 and output.startswith("error: ") and "merge must be a JSON object" in output


def test_a_yaml_file(tmp_path):
    path = write(tmp_path, "merge:\n  max_upload_mb: 50\n  keep_uploads: 0\n", "update.yaml")
    code, output = validate("display", path)
    assert code == 1 and output.strip() == "display.keep_uploads: 0 is not at least 1"


@pytest.mark.parametrize("component", ["featurizer", "local_search", "display"])
def test_the_store_deployment_document_is_valid_for_each_component(component):
    code, output = validate(component, REPO / "deploy" / "deployment.json")
    assert code == 0, output


def test_a_deployment_without_the_component_is_one_error_line(tmp_path):
    code, output = validate("display", write(tmp_path, {"components": {"com.visualsearch.Featurizer": {}}}))
    assert code == 1 and output.strip() == (
        f"error: {tmp_path / 'config.json'}: the deployment has no "
        f"configurationUpdate for com.visualsearch.Display"
    )


def test_a_file_that_does_not_parse_is_one_error_line(tmp_path):
    code, output = validate("display", write(tmp_path, "{port: [", "broken.yaml"))
    assert code == 1 and output.startswith(
        f"error: {tmp_path / 'broken.yaml'}: cannot read it as JSON or YAML"
    )
    assert len(output.strip().splitlines()) == 1


def test_retired_keys_are_noted_not_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(LocalSearchSettings, "RETIRED", {"min_similarity": "renamed to min_score in 0.2"})
    code, output = validate("local_search", write(tmp_path, {"min_similarity": 0.3, "bundle_dir": "/b"}))
    assert code == 0
    assert (
        output.splitlines()[0]
        == "note: retired setting ignored: local_search.min_similarity: renamed to min_score in 0.2"
    )


def test_an_unknown_component_is_a_usage_error(tmp_path):
    code, output = validate("camera", write(tmp_path, {}))
    assert code == 2 and "'camera' is not one of 'featurizer', 'local_search', 'display'" in output
