"""GetConfiguration, SubscribeToConfigurationUpdate, UpdateState and unsupported operations."""

from __future__ import annotations

import pytest
from awsiot.greengrasscoreipc.model import InvalidArgumentsError, ResourceNotFoundError, ServiceError

from tests.devkit.nucleus.conftest import COMPONENTS
from tests.support.inbox import Inbox

FEATURIZER, SEARCH = "com.example.Featurizer", "com.example.LocalSearch"
T = 5


def test_read_whole_configuration_and_key_paths(connect):
    client = connect(FEATURIZER)
    whole = client.get_configuration_async().result(T)
    assert whole.component_name == FEATURIZER
    assert whole.value == COMPONENTS[FEATURIZER]["configuration"]
    camera = client.get_configuration_async(key_path=["camera"]).result(T)
    assert camera.value == {"device": 0, "fps": 5}
    # a leaf comes back as {leaf name: value}, as the nucleus answers
    assert client.get_configuration_async(key_path=["camera", "fps"]).result(T).value == {"fps": 5}
    other = client.get_configuration_async(component_name=SEARCH, key_path=["topK"]).result(T)
    assert (other.component_name, other.value) == (SEARCH, {"topK": 5})


def test_missing_key_or_component_is_resource_not_found(connect):
    client = connect(FEATURIZER)
    with pytest.raises(ResourceNotFoundError):
        client.get_configuration_async(key_path=["camera", "nope"]).result(T)
    with pytest.raises(ResourceNotFoundError):
        client.get_configuration_async(component_name="com.example.Missing").result(T)
    with pytest.raises(ResourceNotFoundError):
        client.subscribe_to_configuration_update_async(key_path=["nope"], on_stream_event=print)[0].result(T)


def test_configuration_update_events(nucleus, connect):
    client = connect(FEATURIZER)
    camera, everything = Inbox(), Inbox()
    client.subscribe_to_configuration_update_async(key_path=["camera"], on_stream_event=camera)[0].result(T)
    client.subscribe_to_configuration_update_async(on_stream_event=everything)[0].result(T)
    nucleus.set_configuration(FEATURIZER, ["camera", "fps"], 15)
    (event,) = camera.wait(1)
    assert event.configuration_update_event.component_name == FEATURIZER
    assert event.configuration_update_event.key_path == ["camera", "fps"]
    assert client.get_configuration_async(key_path=["camera", "fps"]).result(T).value == {"fps": 15}
    nucleus.set_configuration(FEATURIZER, "model", "resnet")
    paths = [e.configuration_update_event.key_path for e in everything.wait(2)]
    assert paths == [["camera", "fps"], ["model"]]
    assert len(camera.events) == 1  # "model" is not under "camera"
    assert nucleus.configuration(FEATURIZER)["model"] == "resnet"


def test_access_control_changes_take_effect(nucleus, connect):
    from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage, UnauthorizedError

    client = connect(FEATURIZER)
    message = PublishMessage(json_message=JsonMessage(message={}))
    with pytest.raises(UnauthorizedError):
        client.publish_to_topic_async(topic="visualsearch/status/featurizer", publish_message=message).result(
            T
        )
    nucleus.set_configuration(
        FEATURIZER,
        ["accessControl", "aws.greengrass.ipc.pubsub", "extra"],
        {"operations": ["aws.greengrass#PublishToTopic"], "resources": ["visualsearch/status/*"]},
    )
    client.publish_to_topic_async(topic="visualsearch/status/featurizer", publish_message=message).result(T)


def test_update_state_is_recorded(nucleus, connect):
    client = connect(SEARCH)
    client.update_state_async(state="RUNNING").result(T)
    nucleus.wait_for_state(SEARCH, "RUNNING")
    client.update_state_async(state="ERRORED").result(T)
    assert nucleus.states == {SEARCH: "ERRORED"}
    with pytest.raises(InvalidArgumentsError):
        client.update_state_async(state="BROKEN").result(T)
    with pytest.raises(TimeoutError):
        nucleus.wait_for_state(FEATURIZER, "RUNNING", timeout=0.05)


def test_unsupported_operation_is_a_service_error_not_a_crash(connect):
    client = connect(SEARCH)
    with pytest.raises(ServiceError) as error:
        client.list_components_async().result(T)
    assert "not supported" in error.value.message
    assert client.get_configuration_async(key_path=["topK"]).result(T).value == {"topK": 5}
