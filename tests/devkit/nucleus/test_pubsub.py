"""Local pub/sub between components through the real GreengrassCoreIPCClientV2."""

from __future__ import annotations

import pytest
from awsiot.greengrasscoreipc.model import (
    BinaryMessage,
    InvalidArgumentsError,
    JsonMessage,
    PublishMessage,
    UnauthorizedError,
)

from tests.devkit.nucleus.conftest import FEATURES, MATCHES
from tests.support.inbox import Inbox
from tests.support.waiting import wait_until

FEATURIZER, SEARCH, DISPLAY = "com.example.Featurizer", "com.example.LocalSearch", "com.example.Display"
T = 5  # seconds: every call below would otherwise block forever if the server misbehaved


def subscribe(client, topic: str, **kwargs):
    inbox = Inbox()
    future, operation = client.subscribe_to_topic_async(topic=topic, on_stream_event=inbox, **kwargs)
    future.result(T)
    return inbox, operation


def publish(client, topic: str, *, json=None, binary=None):
    message = (
        PublishMessage(json_message=JsonMessage(message=json))
        if binary is None
        else PublishMessage(binary_message=BinaryMessage(message=binary))
    )
    return client.publish_to_topic_async(topic=topic, publish_message=message).result(T)


def test_json_message_round_trip_between_two_components(connect):
    featurizer, search = connect(FEATURIZER), connect(SEARCH)
    inbox, _ = subscribe(search, FEATURES)
    body = {"version": 1, "id": "f-1", "vector": [0.1, 0.2], "nested": {"ok": True}}
    publish(featurizer, FEATURES, json=body)
    (event,) = inbox.wait(1)
    assert event.json_message.message == body
    assert event.json_message.context.topic == FEATURES
    assert event.binary_message is None


def test_binary_message_arrives_as_binary(connect):
    featurizer, search = connect(FEATURIZER), connect(SEARCH)
    inbox, _ = subscribe(search, FEATURES)
    payload = bytes(range(256)) * 4
    publish(featurizer, FEATURES, binary=payload)
    (event,) = inbox.wait(1)
    assert event.binary_message.message == payload
    assert event.binary_message.context.topic == FEATURES
    assert event.json_message is None


def test_messages_arrive_in_order_and_only_on_their_topic(connect):
    featurizer, search, display = connect(FEATURIZER), connect(SEARCH), connect(DISPLAY)
    features, _ = subscribe(search, FEATURES)
    matches, _ = subscribe(display, MATCHES)
    for n in range(20):
        publish(featurizer, FEATURES, json={"n": n})
    assert [e.json_message.message["n"] for e in features.wait(20)] == list(range(20))
    publish(display, MATCHES, json={"hit": 1})
    assert matches.wait(1)[0].json_message.message == {"hit": 1}
    assert len(features.events) == 20


def test_unauthorised_publish_and_subscribe_are_refused(connect):
    featurizer, search = connect(FEATURIZER), connect(SEARCH)
    with pytest.raises(UnauthorizedError) as refused:
        publish(search, FEATURES, json={"x": 1})  # LocalSearch may only subscribe to it
    assert "not authorized" in refused.value.message
    with pytest.raises(UnauthorizedError):
        subscribe(featurizer, FEATURES)  # Featurizer may only publish to it
    with pytest.raises(UnauthorizedError):
        publish(featurizer, MATCHES, json={"x": 1})  # a topic no policy names
    inbox, _ = subscribe(search, FEATURES)  # the allowed ones still work on the same connections
    publish(featurizer, FEATURES, json={"ok": 1})
    assert inbox.wait(1)[0].json_message.message == {"ok": 1}


def test_wildcard_policy_and_receive_modes(connect):
    display = connect(DISPLAY)  # operations ["*"], resources ["visualsearch/*"]
    own, _ = subscribe(display, "visualsearch/status/display")
    others, _ = subscribe(display, "visualsearch/status/display", receive_mode="RECEIVE_MESSAGES_FROM_OTHERS")
    publish(display, "visualsearch/status/display", json={"up": True})
    assert own.wait(1)[0].json_message.message == {"up": True}
    assert others.events == []
    with pytest.raises(InvalidArgumentsError):
        publish(display, "visualsearch/+", json={})


def test_mqtt_wildcard_subscriptions_on_local_topics(nucleus, connect):
    display, featurizer = connect(DISPLAY), connect(FEATURIZER)
    everything, _ = subscribe(display, "visualsearch/#")  # the policy resource visualsearch/* covers it
    statuses, _ = subscribe(display, "visualsearch/status/+")
    publish(display, "visualsearch/status/display", json={"own": True})  # wildcards: others' messages only
    nucleus.publish_to_topic("visualsearch/status/featurizer", {"up": True})
    publish(featurizer, FEATURES, json={"n": 1})
    topics_seen = [e.json_message.context.topic for e in everything.wait(2)]
    assert topics_seen == ["visualsearch/status/featurizer", FEATURES]
    assert [e.json_message.context.topic for e in statuses.events] == ["visualsearch/status/featurizer"]


def test_large_binary_message(connect):
    featurizer, search = connect(FEATURIZER), connect(SEARCH)
    inbox, _ = subscribe(search, FEATURES)
    payload = bytes(range(256)) * 4096  # 1 MiB, several socket reads per frame
    publish(featurizer, FEATURES, binary=payload)
    assert inbox.wait(1, timeout=10)[0].binary_message.message == payload


def test_closed_subscription_and_disconnected_subscriber_are_removed(nucleus, connect):
    featurizer, search = connect(FEATURIZER), connect(SEARCH)
    inbox, operation = subscribe(search, FEATURES)
    assert (SEARCH, "pubsub", FEATURES) in nucleus.subscriptions()
    operation.close().result(T)
    wait_until(lambda: nucleus.subscriptions() == [], what="no subscription left")
    subscribe(search, FEATURES)
    search.close()
    wait_until(lambda: nucleus.subscriptions() == [], what="no subscription left")
    publish(featurizer, FEATURES, json={"after": "close"})  # nobody left: still a success
    assert inbox.events == []


def test_nucleus_can_publish_from_python(nucleus, connect):
    inbox, _ = subscribe(connect(SEARCH), FEATURES)
    nucleus.publish_to_topic(FEATURES, b"\x00raw")
    nucleus.publish_to_topic(FEATURES, {"from": "python"})
    first, second = inbox.wait(2)
    assert first.binary_message.message == b"\x00raw"
    assert second.json_message.message == {"from": "python"}
