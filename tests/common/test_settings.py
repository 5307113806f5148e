"""Settings from Greengrass configuration: what is refused, what is coerced, what is ignored."""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar

import pytest

from components.common.settings import (
    SettingsError,
    changed_settings,
    check_settings,
    defaults,
    describe,
    live_keys,
    needs_rebuild,
    parse_settings,
    setting,
)
from components.display.settings import DisplaySettings
from components.featurizer.settings import FeaturizerSettings
from components.local_search.settings import LocalSearchSettings

PRODUCT = [FeaturizerSettings, LocalSearchSettings, DisplaySettings]


@dataclasses.dataclass(frozen=True)
class Sample:
    RETIRED: ClassVar[dict[str, str]] = {"min_similarity": "renamed to min_score in 0.2"}

    flag: bool = setting(False, "a switch")
    count: int = setting(3, "a count", min=1, max=10, live=True)
    score: float = setting(0.5, "a score", min=-1.0, max=1.0, live=True)
    name: str = setting("a", "a name", choices=("a", "b"))
    path: str = setting("", "a path")


def parse(**config):
    return parse_settings(Sample, config, "sample")


def refusal(**config) -> str:
    with pytest.raises(SettingsError) as error:
        parse(**config)
    return str(error.value)


# --- unknown keys -----------------------------------------------------------------------------
def test_an_unknown_key_is_refused_naming_it_and_the_known_ones():
    message = refusal(count=2, colour="red", size=1)
    assert message.startswith(
        "sample: unknown setting(s) colour, size (known: count, flag, name, path, score)"
    )


def test_access_control_is_the_nucleus_s_and_not_refused():
    assert parse(accessControl={"aws.greengrass.ipc.pubsub": {}}) == Sample()


# --- types ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config,expected",
    [
        ({"flag": True}, True),
        ({"flag": "false"}, False),
        ({"flag": "TRUE"}, True),
        ({"count": 4.0}, 4),
        ({"count": "7"}, 7),
        ({"count": 10}, 10),
        ({"score": 1}, 1.0),
        ({"score": "-0.25"}, -0.25),
        ({"path": 0}, "0"),
        ({"path": "/x"}, "/x"),
    ],
)
def test_values_greengrass_sends_are_coerced(config, expected):
    ((key, _),) = config.items()
    value = getattr(parse(**config), key)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("flag", "yes", "true or false"),
        ("flag", 1, "true or false"),
        ("flag", None, "true or false"),
        ("count", 2.5, "an integer"),
        ("count", "two", "an integer"),
        ("count", True, "an integer"),
        ("count", [3], "an integer"),
        ("count", None, "an integer"),
        ("count", float("inf"), "an integer"),
        ("score", "high", "a number"),
        ("score", True, "a number"),
        ("score", None, "a number"),
        ("score", {"v": 1}, "a number"),
        ("score", "nan", "a finite number"),
        ("path", {"a": 1}, "a string"),
        ("path", ["a"], "a string"),
        ("path", None, "a string"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_key_value_and_expectation(key, value, expected):
    assert refusal(**{key: value}) == f"sample.{key}: {value!r} is not {expected}"


# --- bounds -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("count", 0, "at least 1"),
        ("count", 11, "at most 10"),
        ("count", -5.0, "at least 1"),
        ("score", -1.01, "at least -1.0"),
        ("score", 1.5, "at most 1.0"),
        ("name", "c", "one of a, b"),
    ],
)
def test_a_value_out_of_bounds_is_refused(key, value, expected):
    assert refusal(**{key: value}) == f"sample.{key}: {value!r} is not {expected}"


@pytest.mark.parametrize(
    "key,value", [("count", 1), ("count", 10), ("score", -1.0), ("score", 1.0), ("name", "b")]
)
def test_the_bounds_themselves_are_allowed(key, value):
    assert getattr(parse(**{key: value}), key) == value


# --- every problem at once, retired keys, the settings together -------------------------------
def test_check_settings_names_every_problem_at_once():
    checked = check_settings(Sample, {"count": 0, "score": "x", "colour": 1}, "sample")
    assert not checked.ok and checked.settings is None
    assert checked.problems == [
        "sample: unknown setting(s) colour (known: count, flag, name, path, score)",
        "sample.count: 0 is not at least 1",
        "sample.score: 'x' is not a number",
    ]
    assert (
        refusal(count=0, score="x") == "sample.count: 0 is not at least 1; sample.score: 'x' is not a number"
    )


def test_a_retired_key_is_logged_and_ignored_not_refused(caplog):
    checked = check_settings(Sample, {"min_similarity": 0.4, "score": 0.1}, "sample")
    assert checked.ok and checked.settings == Sample(score=0.1)
    assert checked.retired == ["sample.min_similarity: renamed to min_score in 0.2"]
    with caplog.at_level(logging.WARNING):
        assert parse(min_similarity=0.4) == Sample()
    assert "ignoring retired setting(s): sample.min_similarity: renamed to min_score in 0.2" in caplog.text
    # truly unknown: still refused
    assert "unknown setting(s) min_score" in refusal(min_similarity=0.4, min_score=0.4)


def test_problems_of_the_settings_together_are_found_by_check_settings_only():
    neither = {"bundle_dir": "", "index_bucket": ""}
    # the recipe's defaults
    assert parse_settings(LocalSearchSettings, neither, "local_search") == LocalSearchSettings()
    checked = check_settings(LocalSearchSettings, neither, "local_search")
    assert checked.problems == [
        "local_search.bundle_dir: not set, and no index_bucket to sync from "
        "(set one of them: the index bundle to serve)"
    ]
    assert check_settings(LocalSearchSettings, {"index_bucket": "b"}, "local_search").ok
    backwards = check_settings(
        FeaturizerSettings, {"reconnect_initial_s": 5, "reconnect_max_s": 1}, "featurizer"
    )
    assert backwards.problems == ["featurizer.reconnect_initial_s: 5.0 is more than reconnect_max_s (1.0)"]


def test_a_configuration_that_is_not_a_mapping_is_a_problem_not_a_crash():
    assert check_settings(Sample, ["count"], "sample").problems == [
        "sample: the configuration must be a mapping, not list"
    ]


# --- what changed, and what needs a rebuild ------------------------------------------------------
def test_changed_settings_and_which_of_them_need_a_rebuild():
    old = Sample()
    assert live_keys(Sample) == {"count", "score"}
    assert changed_settings(old, Sample()) == [] and needs_rebuild(old, Sample()) == []
    assert changed_settings(old, Sample(count=4, score=0.1)) == ["count", "score"]
    assert needs_rebuild(old, Sample(count=4, score=0.1)) == []
    assert needs_rebuild(old, Sample(count=4, path="/x")) == ["path"]


# --- the product's settings classes ------------------------------------------------------------
@pytest.mark.parametrize("cls", PRODUCT)
def test_every_setting_has_help_and_the_defaults_parse(cls):
    assert all(meaning for _, _, meaning in describe(cls))
    assert parse_settings(cls, defaults(cls), cls.__name__) == cls()


@pytest.mark.parametrize("cls", PRODUCT)
def test_retired_names_are_not_current_names(cls):
    assert not set(cls.RETIRED) & set(defaults(cls))
    assert all(note for note in cls.RETIRED.values())  # each says what became of it


def test_what_is_applied_live_in_the_product():
    assert {"top_k", "min_score", "smoothing_window", "poll_interval_s"} <= live_keys(LocalSearchSettings)
    assert not {"bundle_dir", "index_bucket", "index_prefix", "index_dir"} & live_keys(LocalSearchSettings)
    assert {"pixel_threshold", "max_rate_hz", "thumbnail_px"} <= live_keys(FeaturizerSettings)
    assert not {"camera", "model_dir", "reconnect_initial_s"} & live_keys(FeaturizerSettings)
    assert {"idle_after_s", "upload_timeout_s", "keyword_limit"} <= live_keys(DisplaySettings)
    assert not {"host", "port", "watched_components", "max_event_clients"} & live_keys(DisplaySettings)
