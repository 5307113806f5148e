"""`bench featurizer` times every runtime of the same model in one run (figures are not checked)."""

from __future__ import annotations

import json
import sys

from click.testing import CliRunner

from cloud_sync.cli.main import main


def bench(*args):
    return CliRunner().invoke(main, ["bench", "featurizer", *[str(a) for a in args], "--seconds", "0.3"])


def test_json_names_each_runtime_with_both_batch_sizes(tiny_model):
    result = bench("--model", tiny_model, "--runtime", "all", "--json")
    assert result.exit_code == 0, result.output
    speeds = json.loads(result.output)
    assert set(speeds) == {"mxnet", "onnxruntime"}
    for by_batch in speeds.values():
        assert set(by_batch) == {"1", "8"} and all(ips > 0 for ips in by_batch.values())


def test_mxnet_is_always_timed_as_the_reference(tiny_model):
    result = bench("--model", tiny_model, "--runtime", "onnxruntime")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("featurizer ") and "fingerprint" in lines[0]
    assert lines[1].startswith("mxnet ") and lines[2].startswith("onnxruntime ")
    assert "x mxnet" in lines[2]
    only = json.loads(bench("--model", tiny_model, "--runtime", "mxnet", "--json").output)
    assert set(only) == {"mxnet"}


def test_without_onnxruntime_all_is_mxnet_and_onnxruntime_is_a_one_line_error(tiny_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = bench("--model", tiny_model)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "onnxruntime: not installed, left out"
    assert set(json.loads(bench("--model", tiny_model, "--json").output)) == {"mxnet"}
    result = bench("--model", tiny_model, "--runtime", "onnxruntime")
    assert result.exit_code == 1 and result.output.strip().endswith(
        "onnxruntime: not installed (pip install onnxruntime)"
    )


def test_agreement_prints_the_lowest_cosine_of_each_runtime_to_mxnet(tiny_model, class_folders):
    result = bench("--model", tiny_model, "--agreement", class_folders)
    assert result.exit_code == 0, result.output
    (line,) = result.output.splitlines()
    assert line.startswith("onnxruntime: lowest cosine to MXNet's vector over 12 images of ")
    assert float(line.split(": ")[2].split()[0]) >= 0.9999


def test_int8_is_refused_in_one_line_as_no_model_carries_it(tiny_model):
    result = bench("--model", tiny_model, "--runtime", "int8")
    assert result.exit_code == 1
    assert result.output.strip().endswith("carries no int8 model (it carries mxnet, onnxruntime)")
