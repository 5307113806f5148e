"""publish-components against a moto S3 server; greengrassv2 (which moto lacks) is answered
after botocore has validated each request against the service model."""

import base64
import json
from types import SimpleNamespace
from urllib.parse import unquote

import boto3
import pytest
import yaml
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ParamValidationError
from click.testing import CliRunner

from cloud_sync.aws import CloudError
from cloud_sync.cli.main import main
from cloud_sync.packaging.greengrass_build import (
    COMPONENTS,
    MAX_RECIPE_BYTES,
    BuildError,
    build,
    project_version,
)
from cloud_sync.packaging.publish_components import publish_components
from tests.kiosk_helpers import REPO

VERSION = project_version(REPO)
ACCOUNT = "123456789012"  # moto's STS answer
REGION = "us-east-1"


class Body:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_):
        yield self.data


class FakeGreengrass:
    """before-send hooks: botocore has built (and validated) the request; nothing leaves."""

    def __init__(self, existing=()):
        self.existing = set(existing)
        self.created: list[dict] = []
        self.client = boto3.client("greengrassv2", region_name=REGION)
        events = self.client.meta.events
        events.register("before-send.greengrassv2.DescribeComponent", self.describe)
        events.register("before-send.greengrassv2.CreateComponentVersion", self.create)

    @staticmethod
    def respond(request, status: int, body: dict, error: str = "") -> AWSResponse:
        headers = {"Content-Type": "application/json", **({"x-amzn-ErrorType": error} if error else {})}
        return AWSResponse(request.url, status, headers, Body(json.dumps(body).encode()))

    def describe(self, request, **_):
        arn = unquote(request.url.split("/v2/components/", 1)[1].removesuffix("/metadata"))
        if any(arn.endswith(f"components:{name}:versions:{version}") for name, version in self.existing):
            return self.respond(request, 200, {"arn": arn, "componentName": arn.split(":")[-3]})
        return self.respond(request, 404, {"message": "not found"}, "ResourceNotFoundException")

    def create(self, request, **_):
        payload = json.loads(request.body)
        recipe = yaml.safe_load(base64.b64decode(payload["inlineRecipe"]))
        self.created.append(recipe)
        name, version = recipe["ComponentName"], recipe["ComponentVersion"]
        return self.respond(
            request,
            201,
            {
                "arn": f"arn:aws:greengrass:{REGION}:{ACCOUNT}:components:{name}:versions:{version}",
                "componentName": name,
                "componentVersion": version,
                "creationTimestamp": 0,
                "status": {"componentState": "REQUESTED", "message": "NONE", "errors": {}},
            },
        )


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("publish") / "greengrass-build"
    build(REPO, out)
    return out


def clients(greengrass: FakeGreengrass) -> dict:
    return {
        "s3": boto3.client("s3", region_name=REGION),
        "sts": boto3.client("sts", region_name=REGION),
        "greengrass": greengrass.client,
    }


def test_publish_uploads_like_gdk_and_creates_versions_pointing_at_the_objects(aws_env, build_dir):
    greengrass, lines = FakeGreengrass(), []
    published = publish_components(
        "vs-artifacts", REGION, build_dir=build_dir, echo=lines.append, **clients(greengrass)
    )
    bucket = f"vs-artifacts-{REGION}-{ACCOUNT}"
    s3 = boto3.client("s3", region_name=REGION)
    assert (
        [p.name for p in published]
        == [c.name for c in COMPONENTS]
        == [r["ComponentName"] for r in greengrass.created]
    )
    for recipe, component in zip(greengrass.created, COMPONENTS):
        assert recipe["ComponentVersion"] == VERSION
        (artifact,) = [a for m in recipe["Manifests"] for a in m["Artifacts"]]
        key = f"{component.name}/{VERSION}/visual-search.zip"
        assert artifact == {"URI": f"s3://{bucket}/{key}", "Unarchive": "ZIP"}
        uploaded = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert (
            uploaded
            == (build_dir / "artifacts" / component.name / VERSION / "visual-search.zip").read_bytes()
        )
        assert (
            recipe["ComponentConfiguration"]
            == yaml.safe_load((REPO / component.recipe).read_text())["ComponentConfiguration"]
        )
        assert ".installed-" in recipe["Manifests"][0]["Lifecycle"]["Install"]["Skipif"]
    assert all(p.state == "REQUESTED" and p.arn.endswith(f":versions:{VERSION}") for p in published)
    assert f"created artifact bucket s3://{bucket} in {REGION}" in lines


def test_the_recipes_sent_are_valid_requests_under_the_size_limit(aws_env, build_dir):
    greengrass = FakeGreengrass()
    publish_components("vs-size", REGION, build_dir=build_dir, echo=lambda _: None, **clients(greengrass))
    shape = greengrass.client.meta.service_model.operation_model("CreateComponentVersion").input_shape
    assert shape.members["inlineRecipe"].type_name == "blob" and len(greengrass.created) == 3
    for recipe in greengrass.created:
        assert len(yaml.safe_dump(recipe).encode()) < MAX_RECIPE_BYTES


def test_a_request_the_service_model_refuses_stops_before_any_upload(aws_env, build_dir, monkeypatch):
    import cloud_sync.packaging.publish_components as publishing

    monkeypatch.setattr(
        publishing, "create_request", lambda planned: {"inlineRecipe": planned.recipe, "owner": "x"}
    )
    greengrass = FakeGreengrass()
    with pytest.raises(ParamValidationError, match="owner"):
        publish_components(
            "vs-invalid", REGION, build_dir=build_dir, echo=lambda _: None, **clients(greengrass)
        )
    buckets = [b["Name"] for b in boto3.client("s3", region_name=REGION).list_buckets()["Buckets"]]
    assert f"vs-invalid-{REGION}-{ACCOUNT}" not in buckets and not greengrass.created


def test_a_published_version_is_refused_before_anything_is_uploaded(aws_env, build_dir):
    greengrass = FakeGreengrass(existing=[("com.visualsearch.LocalSearch", VERSION)])
    with pytest.raises(
        CloudError, match=rf"com\.visualsearch\.LocalSearch {VERSION} is already published .*bump"
    ):
        publish_components(
            "vs-existing", REGION, build_dir=build_dir, echo=lambda _: None, **clients(greengrass)
        )
    assert not greengrass.created
    buckets = [b["Name"] for b in boto3.client("s3", region_name=REGION).list_buckets()["Buckets"]]
    assert f"vs-existing-{REGION}-{ACCOUNT}" not in buckets


def test_dry_run_changes_nothing(aws_env, build_dir):
    greengrass, lines = FakeGreengrass(), []
    published = publish_components(
        "vs-dry", REGION, build_dir=build_dir, dry_run=True, echo=lines.append, **clients(greengrass)
    )
    assert not greengrass.created and len(published) == 3
    assert all(
        p.uris == [f"s3://vs-dry-{REGION}-{ACCOUNT}/{p.name}/{VERSION}/visual-search.zip"] for p in published
    )
    assert sum(line.startswith("would upload") for line in lines) == 3
    buckets = [b["Name"] for b in boto3.client("s3", region_name=REGION).list_buckets()["Buckets"]]
    assert f"vs-dry-{REGION}-{ACCOUNT}" not in buckets


def test_publishing_without_a_build_names_what_to_run(tmp_path):
    greengrass = SimpleNamespace(meta=boto3.client("greengrassv2", region_name=REGION).meta)
    with pytest.raises(BuildError, match=r"com\.visualsearch\.Featurizer\.yaml: missing; build first"):
        publish_components("b", REGION, s3=None, greengrass=greengrass, account=ACCOUNT, build_dir=tmp_path)


def test_cli_dry_run(build_dir):
    result = CliRunner().invoke(
        main,
        [
            "publish-components",
            "--bucket",
            "b",
            "--region",
            "eu-west-1",
            "--account",
            ACCOUNT,
            "--build-dir",
            str(build_dir),
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        f"would upload {build_dir}/artifacts/com.visualsearch.Display/{VERSION}/visual-search.zip to "
        f"s3://b-eu-west-1-{ACCOUNT}/com.visualsearch.Display/{VERSION}/visual-search.zip" in result.output
    )
    assert result.output.strip().endswith(f"com.visualsearch.Display {VERSION}")
    missing = CliRunner().invoke(
        main,
        [
            "publish-components",
            "--bucket",
            "b",
            "--region",
            "eu-west-1",
            "--account",
            ACCOUNT,
            "--build-dir",
            str(build_dir / "nope"),
            "--dry-run",
        ],
    )
    assert missing.exit_code == 1 and "error: " in missing.output and "build first" in missing.output
