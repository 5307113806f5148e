"""deploy/deployment.json, the policies and docs/deployment.md agree with the code."""

import json
import re

import boto3
import pytest
from botocore.validate import validate_parameters
from packaging.version import Version

from cloud_sync.packaging.greengrass_build import project_version
from components.common import messages, s3_layout
from components.common.settings import parse_settings
from tests.deploy_helpers import SETTINGS, grants
from tests.kiosk_helpers import REPO, recipe

DEPLOY = REPO / "deploy"
NUCLEUS = "aws.greengrass.Nucleus"


def deployment() -> dict:
    return json.loads((DEPLOY / "deployment.json").read_text())


def deployment_doc() -> str:
    return (REPO / "docs" / "deployment.md").read_text()


def json_blocks(text: str) -> list:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]


def test_deployment_is_a_valid_create_deployment_request():
    model = boto3.client("greengrassv2", region_name="us-east-1").meta.service_model
    validate_parameters(deployment(), model.operation_model("CreateDeployment").input_shape)
    assert re.fullmatch(r"arn:aws:iot:[a-z0-9-]+:\d{12}:thinggroup/[\w-]+", deployment()["targetArn"])
    assert deployment()["deploymentPolicies"]["failureHandlingPolicy"] == "ROLLBACK"


def test_deployment_names_the_three_components_at_the_built_version():
    components = deployment()["components"]
    assert set(components) == set(SETTINGS) | {NUCLEUS}
    assert {name: components[name]["componentVersion"] for name in SETTINGS} == dict.fromkeys(
        SETTINGS, project_version(REPO)
    )


def test_the_nucleus_fills_in_the_thing_name_of_iot_core_policies():
    nucleus = deployment()["components"][NUCLEUS]
    # the option applies within the deployment
    assert Version(nucleus["componentVersion"]) >= Version("2.9.2")
    assert json.loads(nucleus["configurationUpdate"]["merge"]) == {"interpolateComponentConfiguration": True}


@pytest.mark.parametrize("name", SETTINGS)
def test_store_configuration_uses_settings_that_exist(name):
    merge = json.loads(deployment()["components"][name]["configurationUpdate"]["merge"])
    fields = set(SETTINGS[name].__dataclass_fields__)
    assert merge and set(merge) <= fields, f"{name}: unknown keys {set(merge) - fields}"
    defaults = recipe(name)["ComponentConfiguration"]["DefaultConfiguration"]
    parse_settings(SETTINGS[name], {**defaults, **merge}, name)


def test_store_sets_index_location_camera_and_port():
    components = deployment()["components"]
    merges = {name: json.loads(components[name]["configurationUpdate"]["merge"]) for name in SETTINGS}
    assert {"index_bucket", "index_prefix"} <= set(merges["com.visualsearch.LocalSearch"])
    assert "camera" in merges["com.visualsearch.Featurizer"] and "port" in merges["com.visualsearch.Display"]


def test_policies_cover_what_the_components_use():
    tes = json.loads((DEPLOY / "token-exchange-role-policy.json").read_text())
    resources = {s["Resource"] for s in tes["Statement"] if s["Action"] == "s3:GetObject"}
    index_keys = s3_layout.indexes_prefix("INDEX_PREFIX") + "*"
    assert resources == {
        f"arn:aws:s3:::INDEX_BUCKET/{index_keys}",
        "arn:aws:s3:::ARTIFACT_BUCKET-REGION-ACCOUNT/com.visualsearch.*",
    }
    assert {s["Action"] for s in tes["Statement"]} == {"s3:GetObject"}  # read-only, nothing else
    iot = {
        (s["Action"], s["Resource"].split(":", 5)[-1])
        for s in json.loads((DEPLOY / "iot-policy.json").read_text())["Statement"]
    }
    thing = "${iot:Connection.Thing.ThingName}"
    assert iot == {
        ("iot:Publish", "topic/" + messages.IOT_TELEMETRY.format(thing_name=thing)),
        ("iot:Subscribe", "topicfilter/" + messages.IOT_INDEX_UPDATED),
        ("iot:Receive", "topic/" + messages.IOT_INDEX_UPDATED),
    }
    mqtt = {
        (op, topic)
        for service, op, topic in grants(recipe("com.visualsearch.LocalSearch"), thing)
        if service == "aws.greengrass.ipc.mqttproxy"
    }
    assert mqtt == {
        ("aws.greengrass#PublishToIoTCore", messages.IOT_TELEMETRY.format(thing_name=thing)),
        ("aws.greengrass#SubscribeToIoTCore", messages.IOT_INDEX_UPDATED),
    }


def test_the_deployment_doc_shows_the_committed_documents_and_the_commands():
    section = deployment_doc()
    blocks = json_blocks(section)
    for name in ("token-exchange-role-policy.json", "iot-policy.json", "deployment.json"):
        assert (
            json.loads((DEPLOY / name).read_text()) in blocks
        ), f"docs/deployment.md differs from deploy/{name}"
        assert f"deploy/{name}" in section
    for command in (
        "gdk component build",
        "visual-search build-components",
        "visual-search publish-components",
        "aws greengrassv2 create-deployment --cli-input-json file://deploy/deployment.json",
        "greengrass-cli component list",
        "/greengrass/v2/logs/",
        "list-effective-deployments",
        "visual-search publish-index",
        "--notify",
        "interpolateComponentConfiguration",
        "usermod -aG video ggc_user",
        "2.9.2",
    ):
        assert command in section, command
