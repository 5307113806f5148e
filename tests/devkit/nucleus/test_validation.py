"""Deployments that validate first: SubscribeToValidateConfigurationUpdates,
SendConfigurationValidityReport."""

from __future__ import annotations

import pytest
from awsiot.greengrasscoreipc.model import (
    ConfigurationValidityReport,
    ConfigurationValidityStatus,
    InvalidArgumentsError,
)

from devkit.nucleus import config
from tests.devkit.nucleus.conftest import COMPONENTS
from tests.support.inbox import Inbox
from tests.support.waiting import wait_until

FEATURIZER, SEARCH = "com.example.Featurizer", "com.example.LocalSearch"
T = 5


def report(client, deployment_id, status, message=""):
    return client.send_configuration_validity_report_async(
        configuration_validity_report=ConfigurationValidityReport(
            status=status, deployment_id=deployment_id, message=message
        )
    ).result(T)


def validator(client, decide):
    """Subscribe `client` as its component's validator: `decide(configuration)` -> None or a reason."""
    seen = Inbox("validation events")

    def on_event(event):
        proposal = event.validate_configuration_update_event
        seen(proposal)
        reason = decide(proposal.configuration)
        status = (
            ConfigurationValidityStatus.ACCEPTED if reason is None else ConfigurationValidityStatus.REJECTED
        )
        report(client, proposal.deployment_id, status, reason or "")

    client.subscribe_to_validate_configuration_updates_async(on_stream_event=on_event)[0].result(T)
    return seen


def test_a_refused_update_changes_nothing_and_names_the_reason(nucleus, connect):
    client = connect(FEATURIZER)  # its recipe grants pub/sub only: validation needs no policy
    updates = Inbox("updates")
    client.subscribe_to_configuration_update_async(on_stream_event=updates)[0].result(T)
    seen = validator(client, lambda c: "model: 'resnet' is not allowed" if c["model"] == "resnet" else None)
    before = nucleus.configuration(FEATURIZER)

    result = nucleus.deploy(FEATURIZER, merge={"model": "resnet"}, timeout=T)

    assert result.status == "FAILED_NO_STATE_CHANGE" and not result.succeeded
    assert f"name = {FEATURIZER}, message = model: 'resnet' is not allowed" in result.detail
    (proposal,) = seen.wait(1)
    assert proposal.configuration == {**before, "model": "resnet"}  # the whole proposed configuration
    assert proposal.deployment_id == result.deployment_id
    assert nucleus.configuration(FEATURIZER) == before
    assert updates.events == []


def test_an_accepted_update_is_applied_and_announced(nucleus, connect):
    client = connect(FEATURIZER)
    updates = Inbox("updates")
    client.subscribe_to_configuration_update_async(on_stream_event=updates)[0].result(T)
    seen = validator(client, lambda c: None)

    # JSON text, as in a deployment
    result = nucleus.deploy(FEATURIZER, merge='{"camera": {"fps": 15}}', timeout=T)

    assert result.succeeded and len(seen.wait(1)) == 1
    assert nucleus.configuration(FEATURIZER)["camera"] == {"device": 0, "fps": 15}  # merged, not replaced
    assert [e.configuration_update_event.key_path for e in updates.wait(1)] == [["camera", "fps"]]
    assert client.get_configuration_async(key_path=["camera", "fps"]).result(T).value == {"fps": 15}


def test_without_a_validator_the_update_is_applied_at_once(nucleus):
    assert nucleus.validators() == []
    assert nucleus.deploy(SEARCH, merge={"topK": 9}).succeeded
    assert nucleus.configuration(SEARCH)["topK"] == 9


def test_an_update_that_changes_nothing_asks_nothing(nucleus, connect):
    seen = validator(connect(SEARCH), lambda c: "refuse everything")
    result = nucleus.deploy(SEARCH, merge={"topK": 5})
    assert result.succeeded and seen.events == []


def test_reset_goes_back_to_the_defaults_before_merging(nucleus):
    assert nucleus.deploy(FEATURIZER, merge={"model": "resnet", "extra": 1}).succeeded
    assert nucleus.deploy(FEATURIZER, reset=["/model", "/extra"], merge={"camera": {"fps": 1}}).succeeded
    configuration = nucleus.configuration(FEATURIZER)
    assert configuration["model"] == "mobilenet" and "extra" not in configuration
    assert configuration["camera"] == {"device": 0, "fps": 1}
    assert nucleus.deploy(FEATURIZER, reset=[""]).succeeded
    assert nucleus.configuration(FEATURIZER) == COMPONENTS[FEATURIZER]["configuration"]


def test_no_answer_in_time_fails_the_deployment_and_a_late_report_is_refused(nucleus, connect):
    client = connect(SEARCH)
    proposals = Inbox("validation events")
    client.subscribe_to_validate_configuration_updates_async(
        on_stream_event=lambda e: proposals(e.validate_configuration_update_event)
    )[0].result(T)

    result = nucleus.deploy(SEARCH, merge={"topK": 7}, timeout=0.3)

    assert result.status == "FAILED_NO_STATE_CHANGE" and "did not answer within 0.3 s" in result.detail
    assert nucleus.configuration(SEARCH)["topK"] == 5
    (late,) = proposals.wait(1)
    with pytest.raises(InvalidArgumentsError) as error:
        report(client, late.deployment_id, ConfigurationValidityStatus.ACCEPTED)
    assert error.value.message == "Validation request either timed out or was never made"


def test_reports_that_answer_nothing_are_refused(connect):
    client = connect(SEARCH)
    with pytest.raises(InvalidArgumentsError) as error:
        report(client, "no-such-deployment", ConfigurationValidityStatus.ACCEPTED)
    assert error.value.message == "Validation request either timed out or was never made"
    with pytest.raises(InvalidArgumentsError) as error:
        report(client, None, ConfigurationValidityStatus.REJECTED)
    assert "the deployment ID provided was null" in error.value.message


def test_one_validator_per_component_and_it_goes_with_its_stream(nucleus, connect):
    first, second = connect(SEARCH), connect(SEARCH)
    validator(first, lambda c: "first refuses")
    validator(second, lambda c: None)  # accepted as a call, but the nucleus keeps the first one
    assert "first refuses" in nucleus.deploy(SEARCH, merge={"topK": 6}, timeout=T).detail
    first.close()
    wait_until(lambda: nucleus.validators() == [], 5, "the closed validator to go")
    assert nucleus.deploy(SEARCH, merge={"topK": 6}, timeout=T).succeeded


def test_apply_update_follows_the_deployment_rules():
    current = {"a": {"b": 1, "c": 2}, "d": [1, 2], "e": "x"}
    defaults = {"a": {"b": 0}, "d": [0]}
    assert config.apply_update(current, defaults, {"a": {"c": 3}, "d": [9]}) == {
        "a": {"b": 1, "c": 3},
        "d": [9],
        "e": "x",
    }
    assert config.apply_update(current, defaults, reset=["/a/b", "/e"]) == {
        "a": {"b": 0, "c": 2},
        "d": [1, 2],
    }
    assert config.apply_update(current, defaults, reset=[""], merge="") == defaults
    assert config.json_pointer("/x~1y/z~0") == ["x/y", "z~"]
    with pytest.raises(ValueError, match="JSON pointer"):
        config.apply_update(current, defaults, reset=["a"])
    with pytest.raises(ValueError, match="JSON object"):
        config.apply_update(current, defaults, merge="[1]")
