"""`publish-index`, `list-indexes`, `rollback-index`, `prune-indexes`: index versions in S3."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import click

from cloud_sync.cli.options import expected_errors

PROGRESS_EVERY_S = 1.0

bucket_option = click.option("--bucket", required=True, help="S3 bucket that holds the indexes.")
prefix_option = click.option(
    "--prefix",
    default="",
    show_default=True,
    help="Key prefix in the bucket (indexes are under <prefix>/indexes/).",
)
notify_option = click.option(
    "--notify", is_flag=True, help="Tell devices over IoT Core (topic visualsearch/index/updated)."
)
iot_endpoint_option = click.option(
    "--iot-endpoint",
    envvar="VISUAL_SEARCH_IOT_ENDPOINT",
    default=None,
    help="IoT Core data endpoint for --notify, from `aws iot describe-endpoint --endpoint-type "
    "iot:Data-ATS` [env VISUAL_SEARCH_IOT_ENDPOINT; default: boto3's]",
)


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024


def _s3():
    from cloud_sync.aws import client

    return client("s3")


def _notify(pointer, bucket, prefix, iot_endpoint):
    from cloud_sync.publishing.index_versions import index_updated_message, iot_data_client, notify_devices

    message = index_updated_message(pointer, bucket, prefix)
    notify_devices(message, iot=iot_data_client(iot_endpoint))
    click.echo(
        f"notified devices on visualsearch/index/updated: version {pointer.index_version} "
        f"(message {message['id']})"
    )


def _progress_printer():
    last = {"at": 0.0}

    def show(progress):
        now = time.monotonic()
        done = progress.files_done == progress.files_total
        if done or now - last["at"] >= PROGRESS_EVERY_S:
            last["at"] = now
            click.echo(
                f"  {progress.files_done}/{progress.files_total} files, "
                f"{human_size(progress.bytes_done)} of {human_size(progress.bytes_total)}",
                err=True,
            )

    return show


@click.command("publish-index")
@click.argument("bundle", type=click.Path(path_type=Path))
@bucket_option
@prefix_option
@notify_option
@click.option(
    "--force", is_flag=True, help="Publish even if LATEST names a newer version (or is unreadable)."
)
@iot_endpoint_option
@expected_errors
def publish_index(bundle, bucket, prefix, notify, force, iot_endpoint):
    """Upload a bundle to S3, check every object against its manifest, then move LATEST to it."""
    from cloud_sync.aws import s3_url
    from cloud_sync.publishing.publish_index import publish_bundle
    from components.common.s3_layout import latest_key

    result = publish_bundle(bundle, bucket, prefix, s3=_s3(), force=force, on_progress=_progress_printer())
    pointer, previous = result.pointer, result.previous
    files = (
        f"uploaded {len(result.uploaded)} file(s), "
        f"{len(result.skipped)} already in S3 with the right checksum"
    )
    if result.moved_latest:
        was = f", was version {previous.index_version}" if previous else ", was unset"
        click.echo(
            f"published version {pointer.index_version} ({pointer.item_count} items): {files}; "
            f"{s3_url(bucket, latest_key(prefix))} now names it "
            f"(manifest {pointer.manifest_sha256[:12]}){was}"
        )
    else:
        click.echo(
            f"version {pointer.index_version} was already published: {files}; "
            f"LATEST already names it, left as is"
        )
    if notify:
        _notify(pointer, bucket, prefix, iot_endpoint)


@click.command("list-indexes")
@bucket_option
@prefix_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@expected_errors
def list_indexes(bucket, prefix, as_json):
    """Index versions in S3 with their item count, model, creation time and size; * marks LATEST."""
    from cloud_sync.aws import s3_url
    from cloud_sync.publishing.index_versions import list_indexes as read_listing
    from components.common.s3_layout import indexes_prefix

    listing = read_listing(bucket, prefix, s3=_s3())
    where = s3_url(bucket, indexes_prefix(prefix))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "location": where,
                    "latest": asdict(listing.pointer) if listing.pointer else None,
                    "latest_problem": listing.pointer_problem,
                    "versions": [asdict(v) for v in listing.versions],
                },
                indent=2,
            )
        )
        return
    if listing.pointer_problem:
        click.echo(f"warning: {listing.pointer_problem}", err=True)
    if not listing.versions:
        click.echo(f"no index versions under {where}")
        return
    latest = f"version {listing.pointer.index_version}" if listing.pointer else "none"
    click.echo(f"{where}  (* = LATEST, {latest})")
    click.echo(f"  {'version':<16}{'items':>7}  {'model':<14}{'created':<27}{'size':>10}{'files':>7}")
    for v in listing.versions:
        mark = "*" if v.latest else " "
        if v.complete:
            click.echo(
                f"{mark} {v.index_version:<16}{v.item_count:>7}  {v.model_fingerprint[:12]:<14}"
                f"{v.created_at:<27}{human_size(v.size):>10}{v.files:>7}"
            )
        else:
            click.echo(f"{mark} {v.index_version:<16}incomplete: {v.problem}")


@click.command("rollback-index")
@click.argument("version", type=click.IntRange(1))
@bucket_option
@prefix_option
@notify_option
@iot_endpoint_option
@expected_errors
def rollback_index(version, bucket, prefix, notify, iot_endpoint):
    """Point LATEST at VERSION, a complete version already in S3 (see list-indexes)."""
    from cloud_sync.publishing.index_versions import rollback_index as roll_back

    result = roll_back(bucket, prefix, version, s3=_s3())
    pointer, previous = result.pointer, result.previous
    if result.moved_latest:
        was = f", was version {previous.index_version}" if previous else ""
        click.echo(
            f"LATEST now names version {version} ({pointer.item_count} items, "
            f"manifest {pointer.manifest_sha256[:12]}){was}"
        )
    else:
        click.echo(f"LATEST already names version {version}; left as is")
    if notify:
        _notify(pointer, bucket, prefix, iot_endpoint)


@click.command("prune-indexes")
@bucket_option
@prefix_option
@click.option(
    "--keep",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="How many of the newest versions to keep (the version LATEST names is always kept too).",
)
@click.option(
    "--min-age-hours",
    type=click.FloatRange(0),
    default=24.0,
    show_default=True,
    help="Grace period: nothing modified more recently than this is deleted.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be deleted, delete nothing.")
@expected_errors
def prune_indexes(bucket, prefix, keep, min_age_hours, dry_run):
    """Delete index versions older than the newest --keep (never the one LATEST names), then every
    object under <prefix>/indexes/objects/ that no kept version lists.

    Do not run it while a publish-index writes to the same prefix: a publish skips the objects
    it finds already in S3, and prune may delete one of them meanwhile.
    """
    from cloud_sync.aws import s3_url
    from cloud_sync.publishing.prune_indexes import prune_indexes as prune
    from components.common.s3_layout import indexes_prefix

    result = prune(bucket, prefix, s3=_s3(), keep=keep, min_age_hours=min_age_hours, dry_run=dry_run)
    grace = f"younger than {min_age_hours:g} h"
    click.echo(f"{s3_url(bucket, indexes_prefix(prefix))}: LATEST names version {result.latest}")
    click.echo(f"kept {len(result.kept)} version(s): {_versions(result.kept)}")
    click.echo(f"dropped {len(result.dropped)} version(s): {_versions(result.dropped)}")
    if result.too_recent_versions:
        click.echo(f"left whole, {grace}: {_versions(result.too_recent_versions)}")
    click.echo(
        f"{'would delete' if dry_run else 'deleted'} {result.version_keys} key(s) of dropped versions "
        f"({human_size(result.version_bytes)}) and {result.objects} unreferenced object(s) "
        f"({human_size(result.object_bytes)})"
    )
    if result.too_recent_objects:
        click.echo(f"left {result.too_recent_objects} unreferenced object(s) {grace}")
    if dry_run:
        click.echo("dry run: nothing was deleted")


def _versions(versions: list[int]) -> str:
    return ", ".join(map(str, versions)) or "none"
