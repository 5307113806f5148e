"""PublishToIoTCore / SubscribeToIoTCore against the in-process IoT Core stand-in."""

from __future__ import annotations

import pytest
from awsiot.greengrasscoreipc.model import QOS, ServiceError, UnauthorizedError

from tests.devkit.nucleus.conftest import THING
from tests.support.inbox import Inbox

SEARCH, DISPLAY = "com.example.LocalSearch", "com.example.Display"
TELEMETRY = f"visualsearch/{THING}/telemetry"
T = 5


def publish(client, topic: str, payload: bytes, qos: str = QOS.AT_LEAST_ONCE):
    return client.publish_to_iot_core_async(topic_name=topic, qos=qos, payload=payload).result(T)


def test_publish_reaches_iot_core_on_the_thing_topic(nucleus, connect):
    publish(connect(SEARCH), TELEMETRY, b'{"queries": 3}')
    (message,) = nucleus.iot_core.wait_for(TELEMETRY)
    assert (message.topic, message.qos, message.json()) == (TELEMETRY, 1, {"queries": 3})
    assert nucleus.iot_core.messages_on("visualsearch/+/telemetry") == [message]


def test_cloud_publish_reaches_a_matching_device_subscriber(nucleus, connect):
    client = connect(SEARCH)
    inbox = Inbox()
    client.subscribe_to_iot_core_async(
        topic_name="visualsearch/index/#", qos=QOS.AT_LEAST_ONCE, on_stream_event=inbox
    )[0].result(T)
    nucleus.iot_core.publish("visualsearch/other", b"not for us")
    nucleus.iot_core.publish("visualsearch/index/updated", {"index_version": 7})
    (event,) = inbox.wait(1)
    assert event.message.topic_name == "visualsearch/index/updated"
    assert event.message.payload == b'{"index_version": 7}'


def test_unauthorised_iot_core_topics_are_refused(connect):
    search, display = connect(SEARCH), connect(DISPLAY)
    with pytest.raises(UnauthorizedError):
        publish(search, "visualsearch/another-thing/telemetry", b"{}")
    with pytest.raises(UnauthorizedError):
        publish(display, TELEMETRY, b"{}")  # Display has no mqttproxy policy at all
    with pytest.raises(UnauthorizedError):
        search.subscribe_to_iot_core_async(topic_name="#", qos=QOS.AT_MOST_ONCE)[0].result(T)


def test_publishes_are_spooled_while_unreachable_and_delivered_on_reconnect(nucleus, connect):
    client, iot = connect(SEARCH), nucleus.iot_core
    inbox = Inbox()
    client.subscribe_to_iot_core_async(
        topic_name="visualsearch/index/updated", qos=QOS.AT_LEAST_ONCE, on_stream_event=inbox
    )[0].result(T)
    iot.set_reachable(False)
    for n in range(3):
        publish(client, TELEMETRY, b'{"n": %d}' % n)  # succeeds: queued, not delivered
    with pytest.raises(ServiceError) as dropped:
        publish(client, TELEMETRY, b"{}", qos=QOS.AT_MOST_ONCE)
    assert "Dropping QoS 0" in dropped.value.message
    iot.publish("visualsearch/index/updated", b"v8")  # cloud side, waits for the device
    assert iot.messages == [] and len(iot.spooled) == 3 and inbox.events == []
    iot.set_reachable(True)
    assert [m.json()["n"] for m in iot.wait_for(TELEMETRY, count=3)] == [0, 1, 2]
    assert iot.spooled == []
    assert inbox.wait(1)[0].message.payload == b"v8"


def test_oversized_and_wildcard_publishes_fail_like_the_nucleus(connect):
    client = connect(SEARCH)
    with pytest.raises(ServiceError) as too_big:
        publish(client, TELEMETRY, b"x" * (128 * 1024))
    assert "exceeds" in too_big.value.message
    with pytest.raises(ServiceError) as wildcard:  # the policy allows visualsearch/index/#
        publish(client, "visualsearch/index/+", b"{}")
    assert "wildcard" in wildcard.value.message


def test_cloud_side_listener_is_called(nucleus, connect):
    seen = []
    stop = nucleus.iot_core.subscribe("visualsearch/#", seen.append)
    publish(connect(SEARCH), TELEMETRY, b"{}")
    nucleus.iot_core.wait_for(TELEMETRY)
    stop()
    assert [m.topic for m in seen] == [TELEMETRY]
