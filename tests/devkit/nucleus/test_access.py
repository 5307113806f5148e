"""Authorisation matching, MQTT topic filters and configuration helpers, without a server."""

from __future__ import annotations

import pytest

from devkit.nucleus import ComponentSpec, LocalNucleus, config, topics
from devkit.nucleus.access import MQTTPROXY, PUBSUB, AccessPolicy

PUB, SUB = "aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"
IOT_PUB = "aws.greengrass#PublishToIoTCore"


def policy(service: str, operations: list[str], resources: list[str], thing: str = "thing-1") -> AccessPolicy:
    return AccessPolicy(
        {service: {"p:1": {"policyDescription": "d", "operations": operations, "resources": resources}}},
        thing,
    )


def test_exact_topic_and_operation():
    rules = policy(PUBSUB, [PUB], ["visualsearch/features"])
    assert rules.allows(PUBSUB, PUB, "visualsearch/features")
    assert not rules.allows(PUBSUB, SUB, "visualsearch/features")
    assert not rules.allows(PUBSUB, PUB, "visualsearch/matches")
    assert not rules.allows(MQTTPROXY, PUB, "visualsearch/features")


def test_operation_and_resource_wildcards():
    assert policy(PUBSUB, ["*"], ["a/b"]).allows(PUBSUB, SUB, "a/b")
    everything = policy(PUBSUB, [PUB], ["*"])
    assert everything.allows(PUBSUB, PUB, "any/topic/at/all")
    glob = policy(PUBSUB, [PUB], ["visualsearch/status/*"])
    assert glob.allows(PUBSUB, PUB, "visualsearch/status/display")
    assert glob.allows(PUBSUB, PUB, "visualsearch/status/a/b")  # the nucleus's * crosses levels
    assert not glob.allows(PUBSUB, PUB, "visualsearch/statusx")
    assert policy(PUBSUB, [PUB], ["a/*/c"]).allows(PUBSUB, PUB, "a/xyz/c")


def test_mqtt_wildcards_are_literal_for_pubsub_but_honoured_for_mqttproxy():
    local = policy(PUBSUB, [SUB], ["a/+/c", "b/#"])
    assert local.allows(PUBSUB, SUB, "a/+/c") and not local.allows(PUBSUB, SUB, "a/x/c")
    assert not local.allows(PUBSUB, SUB, "b/x")
    iot = policy(MQTTPROXY, [IOT_PUB], ["a/+/c", "b/#"])
    assert iot.allows(MQTTPROXY, IOT_PUB, "a/x/c") and not iot.allows(MQTTPROXY, IOT_PUB, "a/x/y/c")
    assert iot.allows(MQTTPROXY, IOT_PUB, "b") and iot.allows(MQTTPROXY, IOT_PUB, "b/x/y")
    assert not iot.allows(MQTTPROXY, IOT_PUB, "bx")
    assert policy(MQTTPROXY, [IOT_PUB], ["#"]).allows(MQTTPROXY, IOT_PUB, "any/thing")
    assert policy(MQTTPROXY, [IOT_PUB], ["a+/c"]).allows(MQTTPROXY, IOT_PUB, "a+/c")  # not a whole level


def test_thing_name_variable_and_escapes():
    rules = policy(MQTTPROXY, [IOT_PUB], ["visualsearch/{iot:thingName}/telemetry"], thing="kiosk-7")
    assert rules.allows(MQTTPROXY, IOT_PUB, "visualsearch/kiosk-7/telemetry")
    assert not rules.allows(MQTTPROXY, IOT_PUB, "visualsearch/kiosk-8/telemetry")
    literal = policy(PUBSUB, [PUB], ["a/${*}/${?}${$}"])
    assert literal.allows(PUBSUB, PUB, "a/*/?$") and not literal.allows(PUBSUB, PUB, "a/x/?$")


def test_invalid_resources_are_ignored_not_fatal():
    rules = policy(PUBSUB, [PUB], ["bad?topic", "${x}", "good"])
    assert rules.allows(PUBSUB, PUB, "good")
    assert not rules.allows(PUBSUB, PUB, "bad?topic")
    assert not AccessPolicy({PUBSUB: "not a mapping"}).allows(PUBSUB, PUB, "good")
    assert not AccessPolicy(None).allows(PUBSUB, PUB, "good")


@pytest.mark.parametrize(
    "topic_filter, topic, expected",
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+/b", "a/b", True),
        ("a/b", "a/c", False),
        ("#", "$aws/things/x", False),
        ("+/+", "a", False),
    ],
)
def test_topic_filter_matching(topic_filter, topic, expected):
    assert topics.matches(topic_filter, topic) is expected


def test_topic_filter_validity():
    assert topics.is_valid_filter("a/+/#") and topics.is_valid_filter("#")
    for bad in ("", "a/#/b", "a/b#", "a+/b"):
        assert not topics.is_valid_filter(bad)


def test_configuration_assign_reports_changed_leaves():
    tree = {"camera": {"fps": 5, "device": 0}, "model": "m"}
    assert config.assign(tree, ["camera", "fps"], 10) == [["camera", "fps"]]
    assert config.assign(tree, "camera", {"fps": 10, "device": 1}) == [["camera", "device"]]
    assert config.assign(tree, ["new", "deep"], {"x": 1}) == [["new", "deep", "x"]]
    assert tree["new"] == {"deep": {"x": 1}}
    assert config.assign(tree, [], {"model": "m"}) == [["camera"], ["new"]]
    assert config.key_path("/a/b") == ["a", "b"] == config.key_path(("a", "b"))
    assert config.related(["camera"], ["camera", "fps"]) and not config.related(["model"], ["camera"])


def test_component_spec_from_a_recipe_and_from_a_mapping():
    recipe = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.example.Display",
        "ComponentConfiguration": {
            "DefaultConfiguration": {
                "port": 8080,
                "accessControl": {
                    "aws.greengrass.ipc.pubsub": {"p": {"operations": [SUB], "resources": ["x"]}}
                },
            }
        },
    }
    spec = ComponentSpec.from_recipe(recipe, token="t-1")
    assert (spec.name, spec.token, spec.configuration["port"]) == ("com.example.Display", "t-1", 8080)
    assert AccessPolicy(spec.policy_source()).allows(PUBSUB, SUB, "x")
    assert ComponentSpec.from_recipe(recipe).token != ComponentSpec.from_recipe(recipe).token
    with pytest.raises(ValueError, match="unknown keys"):
        ComponentSpec.from_mapping("c", {"configuration": {}, "acessControl": {}})


def test_nucleus_settings_are_checked_before_anything_starts():
    with pytest.raises(ValueError, match="longer than"):
        LocalNucleus("/tmp/" + "x" * 120, components={})
    with pytest.raises(ValueError, match="share one token"):
        LocalNucleus(components={"a": {"token": "same"}, "b": {"token": "same"}})
