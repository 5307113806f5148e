"""`build-components` and `publish-components`: the three Greengrass components, for fleets."""

from __future__ import annotations

from pathlib import Path

import click

from cloud_sync.cli.options import expected_errors


@click.command("build-components")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Build directory (default: greengrass-build/ in the project).",
)
@expected_errors
def build_components(out):
    """Build the three components' artifact zips and recipes (what `gdk component build` runs)."""
    from cloud_sync.packaging.greengrass_build import PROJECT_ROOT, build, describe

    for built in build(PROJECT_ROOT, out):
        click.echo(describe(built))


@click.command("publish-components")
@click.option(
    "--bucket",
    required=True,
    help="Artifact bucket prefix, as GDK's: artifacts go to <bucket>-<region>-<account>.",
)
@click.option("--region", required=True, help="AWS region of the components (and of the bucket).")
@click.option("--account", default=None, help="AWS account id (default: from STS GetCallerIdentity).")
@click.option(
    "--build-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="What build-components wrote (default: greengrass-build/).",
)
@click.option(
    "--dry-run", is_flag=True, help="Show and check what would be uploaded and created; change nothing."
)
@expected_errors
def publish_components(bucket, region, account, build_dir, dry_run):
    """Upload the built artifacts and create the component versions in Greengrass (all three)."""
    import boto3

    from cloud_sync.aws import client
    from cloud_sync.packaging.publish_components import publish_components as publish

    session = boto3.Session(region_name=region)
    published = publish(
        bucket,
        region,
        s3=client("s3", session),
        greengrass=client("greengrassv2", session),
        sts=client("sts", session),
        account=account,
        build_dir=build_dir,
        dry_run=dry_run,
        echo=click.echo,
    )
    verb = "checked" if dry_run else "published"
    click.echo(
        f"{verb} {len(published)} components: " + ", ".join(f"{p.name} {p.version}" for p in published)
    )
