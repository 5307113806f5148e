"""`publish-components`: what `gdk component publish` does, for the three components at once.

For each component built in greengrass-build/ (a build of the current version):
1. the artifact bucket is `<bucket>-<region>-<account>` (account from STS GetCallerIdentity),
   created when missing, as GDK names and creates it;
2. a component version that Greengrass already has is refused before anything is uploaded
   (overwriting its artifacts would break the devices that run it): bump pyproject's version;
3. each artifact goes to `s3://<artifact bucket>/<name>/<version>/<file>`;
4. greengrassv2 CreateComponentVersion gets the finished recipe, its artifact URIs pointing
   at the uploaded objects (the text is otherwise unchanged).
A dry run calls STS only (nothing with `account`), and checks each CreateComponentVersion
request against boto3's service model without sending it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters

from cloud_sync.aws import CloudError, aws_errors, describe_client_error
from cloud_sync.packaging.greengrass_build import (
    ARTIFACT_URI,
    BUILD_DIR,
    COMPONENTS,
    MAX_RECIPE_BYTES,
    PROJECT_ROOT,
    BuildError,
    project_version,
)

URI_PLACEHOLDER = ARTIFACT_URI.rsplit("/", 1)[0] + "/"  # s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/


@dataclass(frozen=True)
class Planned:
    """One component ready to publish: its built files and the recipe to send."""

    name: str
    version: str
    artifacts: list[tuple[Path, str]]  # (file, S3 key)
    recipe: str  # with the artifact URIs filled in


@dataclass(frozen=True)
class Published:
    name: str
    version: str
    uris: list[str]
    arn: str = ""
    state: str = "DRY RUN"


def artifact_bucket(prefix: str, region: str, account: str) -> str:
    return f"{prefix.strip()}-{region}-{account}"


def caller_account(sts) -> str:
    with aws_errors("STS GetCallerIdentity"):
        return sts.get_caller_identity()["Account"]


def plan(build_dir: Path, bucket: str, version: str) -> list[Planned]:
    """Read the build of `version` and fill each recipe's artifact URIs in for `bucket`."""
    planned = []
    for component in COMPONENTS:
        path = build_dir / "recipes" / f"{component.name}.yaml"
        if not path.is_file():
            raise BuildError(
                f"{path}: missing; build first (gdk component build, or visual-search build-components)"
            )
        source = path.read_text()
        recipe = yaml.safe_load(source)
        if recipe.get("ComponentVersion") != version:
            raise BuildError(
                f"{path}: a build of {recipe.get('ComponentVersion')!r}, but pyproject.toml says "
                f"{version!r}; build again"
            )
        prefix = f"{component.name}/{version}/"
        filled = source.replace(URI_PLACEHOLDER, f"s3://{bucket}/{prefix}")
        artifacts = []
        for uri in _artifact_uris(yaml.safe_load(filled)):
            file = build_dir / "artifacts" / component.name / version / uri.rsplit("/", 1)[-1]
            if not uri.startswith(f"s3://{bucket}/{prefix}") or not file.is_file():
                raise BuildError(
                    f"{path}: artifact {uri} has no built file {file} (URIs are matched by file name)"
                )
            artifacts.append((file, prefix + file.name))
        if len(filled.encode()) >= MAX_RECIPE_BYTES:
            raise BuildError(
                f"{path}: {len(filled.encode())} bytes once filled in; Greengrass accepts under "
                f"{MAX_RECIPE_BYTES}"
            )
        planned.append(Planned(component.name, version, artifacts, filled))
    return planned


def _artifact_uris(recipe: dict) -> list[str]:
    return [a["URI"] for m in recipe.get("Manifests") or [] for a in m.get("Artifacts") or [] if "URI" in a]


def ensure_bucket(s3, bucket: str, region: str, echo: Callable[[str], None]) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise CloudError(
                f"s3://{bucket}: exists but cannot be used ({code}); it may belong to another "
                f"account: choose another --bucket"
            ) from None
    with aws_errors(f"creating s3://{bucket}"):
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    echo(f"created artifact bucket s3://{bucket} in {region}")


def refuse_existing(greengrass, planned: Planned, region: str, account: str) -> None:
    arn = (
        f"arn:{greengrass.meta.partition}:greengrass:{region}:{account}:components:"
        f"{planned.name}:versions:{planned.version}"
    )
    try:
        greengrass.describe_component(arn=arn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return
        raise CloudError(describe_client_error(f"Greengrass DescribeComponent {arn}", exc)) from None
    raise CloudError(
        f"{planned.name} {planned.version} is already published in {region}; bump the version "
        f"in pyproject.toml (and its copies in gdk-config.json and recipes/), then build again"
    )


def create_request(planned: Planned) -> dict:
    return {"inlineRecipe": planned.recipe.encode()}


def publish_components(
    bucket: str,
    region: str,
    *,
    s3,
    greengrass,
    sts=None,
    account: str | None = None,
    build_dir: Path | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> list[Published]:
    """Publish the three built components; clients are made by the caller (tests hook them)."""
    build_dir = Path(build_dir) if build_dir is not None else PROJECT_ROOT / BUILD_DIR
    account = account or caller_account(sts)
    target = artifact_bucket(bucket, region, account)
    planned = plan(build_dir, target, project_version(PROJECT_ROOT))
    request_shape = greengrass.meta.service_model.operation_model("CreateComponentVersion").input_shape
    for item in planned:
        validate_parameters(create_request(item), request_shape)  # a bad request fails before any upload
    if dry_run:
        for item in planned:
            for file, key in item.artifacts:
                echo(f"would upload {file} to s3://{target}/{key}")
            echo(f"would create {item.name} {item.version} ({len(item.recipe.encode()):,}-byte recipe)")
        return [Published(p.name, p.version, _artifact_uris(yaml.safe_load(p.recipe))) for p in planned]
    for item in planned:
        refuse_existing(greengrass, item, region, account)
    ensure_bucket(s3, target, region, echo)
    published = []
    for item in planned:
        for file, key in item.artifacts:
            with aws_errors(f"uploading {file.name} to s3://{target}/{key}"):
                s3.upload_file(str(file), target, key)
            echo(f"uploaded s3://{target}/{key} ({file.stat().st_size / 1e6:.1f} MB)")
        with aws_errors(f"Greengrass CreateComponentVersion {item.name} {item.version}"):
            response = greengrass.create_component_version(**create_request(item))
        state = response.get("status", {}).get("componentState", "")
        echo(f"created {response.get('arn', item.name)} ({state})")
        published.append(
            Published(
                item.name,
                item.version,
                _artifact_uris(yaml.safe_load(item.recipe)),
                response.get("arn", ""),
                state,
            )
        )
    return published
