"""prune-indexes against a real moto S3 server over HTTP, on versions put there by publish-index."""

import re
import shutil
import time
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from click.testing import CliRunner

from cloud_sync.cli.index_commands import human_size
from cloud_sync.cli.main import main
from cloud_sync.indexing.build_index import build_bundle
from cloud_sync.publishing import prune_indexes as prune_module
from cloud_sync.publishing.prune_indexes import prune_indexes
from components.common.bundle import INDEX_FILE, MANIFEST, read_manifest, write_manifest
from components.common.chunks import ChunkList, is_chunked
from components.common.errors import BundleError
from components.common.s3_layout import (
    VERSION_LAYOUT,
    Pointer,
    bundle_key,
    chunk_list_key,
    indexes_prefix,
    latest_key,
    object_key,
    objects_prefix,
    version_prefix,
)
from tests.conftest import demo_class_folders
from tests.local_search.sync_helpers import upload

PREFIX = "store-31"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def prune(bucket, *args):
    return run("prune-indexes", "--bucket", bucket, "--prefix", PREFIX, *args)


@pytest.fixture(scope="module")
def base_bundle(tiny_model, tmp_path_factory):
    """A real bundle of 4 items; each version below is a copy with a few bytes of its own."""
    catalog = demo_class_folders(tmp_path_factory.mktemp("prune-catalog"), ("dress", "shoes"), 2)
    out = tmp_path_factory.mktemp("prune-bundles") / "base"
    build_bundle(catalog, tiny_model, out, index_version=1, progress=False)
    return out


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Files of a kilobyte and more stored as chunks of about 256 bytes (the bundles are small)."""
    from components.common import chunks

    for name, value in (("CHUNKED_MIN_BYTES", 1024), ("MIN_CHUNK", 64), ("MAX_CHUNK", 4096)):
        monkeypatch.setattr(chunks, name, value)
    monkeypatch.setattr(chunks, "BOUNDARY_MASK", 255)


@pytest.fixture
def make_version(base_bundle, tmp_path):
    def make(version: int, variant: int | None = None):
        """Version `version`, whose thumbnail 0 and a few bytes in the middle of its index are
        those of `variant` (by default its own): objects and chunks only this variant has."""
        variant = version if variant is None else variant
        out = tmp_path / f"version-{version}"
        shutil.copytree(base_bundle, out)
        (out / "thumbnails" / "0.jpg").write_bytes(b"picture of variant %d" % variant)
        index = bytearray((out / INDEX_FILE).read_bytes())
        index[len(index) // 2 : len(index) // 2 + 4] = variant.to_bytes(4, "little")
        (out / INDEX_FILE).write_bytes(bytes(index))
        manifest = read_manifest(out)
        write_manifest(out, {**{k: v for k, v in manifest.items() if k != "files"}, "index_version": version})
        return out

    return make


def publish(bucket, *bundles):
    for bundle in bundles:
        result = run("publish-index", bundle, "--bucket", bucket, "--prefix", PREFIX)
        assert result.exit_code == 0, result.output


def stored_keys(bundle) -> set[str]:
    """What publish-index stores under objects/ for `bundle`: each file under its sha256, a
    large file as its chunk list and chunks (computed here from the files)."""
    manifest = read_manifest(bundle)
    keys = {object_key(PREFIX, entry["sha256"]) for entry in manifest.get("reuse", {}).values()}
    for rel, entry in manifest["files"].items():
        if is_chunked(entry["size"]):
            chunks = ChunkList.of((bundle / rel).read_bytes()).chunks
            keys |= {chunk_list_key(PREFIX, entry["sha256"])} | {object_key(PREFIX, sha) for sha, _ in chunks}
        else:
            keys.add(object_key(PREFIX, entry["sha256"]))
    return keys


def listed(bucket, prefix: str) -> dict[str, int]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {obj["Key"]: obj["Size"] for page in pages for obj in page.get("Contents", [])}


def whole_bucket(bucket) -> dict[str, str]:
    """{key: ETag} of every object: equal before and after means nothing was deleted or changed."""
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {obj["Key"]: obj["ETag"] for page in pages for obj in page.get("Contents", [])}


def latest(bucket) -> int:
    raw = boto3.client("s3").get_object(Bucket=bucket, Key=latest_key(PREFIX))["Body"].read()
    return Pointer.from_json(raw).index_version


def test_keeps_the_newest_versions_and_every_object_and_chunk_they_list(s3_bucket, make_version):
    bundles = {version: make_version(version) for version in (1, 2, 3, 4)}
    publish(s3_bucket, *bundles.values())
    before = listed(s3_bucket, objects_prefix(PREFIX))
    needed = stored_keys(bundles[3]) | stored_keys(bundles[4])
    only_dropped = (stored_keys(bundles[1]) | stored_keys(bundles[2])) - needed
    assert set(before) == needed | only_dropped  # what publish-index stored, as computed here
    shared = stored_keys(bundles[1]) & needed
    assert len(shared) > 10  # the unchanged thumbnails, items.sqlite, most chunks of the index
    index_of_1 = ChunkList.of((bundles[1] / INDEX_FILE).read_bytes())
    assert {object_key(PREFIX, sha) for sha, _ in index_of_1.chunks} & only_dropped  # chunks only 1 had

    result = prune(s3_bucket, "--keep", 2, "--min-age-hours", 0)
    assert result.exit_code == 0, result.output
    assert "LATEST names version 4" in result.output
    assert "kept 2 version(s): 3, 4" in result.output and "dropped 2 version(s): 1, 2" in result.output
    freed = human_size(sum(before[key] for key in only_dropped))
    assert "deleted 2 key(s) of dropped versions" in result.output
    assert f"and {len(only_dropped)} unreferenced object(s) ({freed})" in result.output
    assert set(listed(s3_bucket, objects_prefix(PREFIX))) == needed
    assert not listed(s3_bucket, version_prefix(PREFIX, 1)) and not listed(
        s3_bucket, version_prefix(PREFIX, 2)
    )

    back = run("rollback-index", 3, "--bucket", s3_bucket, "--prefix", PREFIX)
    assert back.exit_code == 0, back.output
    assert latest(s3_bucket) == 3
    gone = run("rollback-index", 1, "--bucket", s3_bucket, "--prefix", PREFIX)
    assert gone.exit_code == 1 and "version 1 is not in" in gone.output
    assert latest(s3_bucket) == 3


def test_the_version_latest_names_is_kept_even_when_older_than_the_newest(s3_bucket, make_version):
    bundles = {version: make_version(version) for version in (1, 2, 3, 4)}
    publish(s3_bucket, *bundles.values())
    assert run("rollback-index", 1, "--bucket", s3_bucket, "--prefix", PREFIX).exit_code == 0
    result = prune(s3_bucket, "--keep", 2, "--min-age-hours", 0)
    assert result.exit_code == 0, result.output
    assert "kept 3 version(s): 1, 3, 4" in result.output and "dropped 1 version(s): 2" in result.output
    needed = stored_keys(bundles[1]) | stored_keys(bundles[3]) | stored_keys(bundles[4])
    assert set(listed(s3_bucket, objects_prefix(PREFIX))) == needed
    assert bundle_key(PREFIX, 1, MANIFEST) in listed(s3_bucket, version_prefix(PREFIX, 1))
    assert latest(s3_bucket) == 1


def test_dry_run_deletes_nothing_and_reports_what_the_real_run_deletes(s3_bucket, make_version):
    publish(s3_bucket, *(make_version(version) for version in (1, 2, 3)))
    snapshot = whole_bucket(s3_bucket)
    dry = prune(s3_bucket, "--keep", 1, "--min-age-hours", 0, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert whole_bucket(s3_bucket) == snapshot
    assert "dry run: nothing was deleted" in dry.output
    would = re.search(r"^would delete (.*)$", dry.output, re.M)
    assert would and would.group(1).startswith("2 key(s) of dropped versions")
    real = prune(s3_bucket, "--keep", 1, "--min-age-hours", 0)
    assert real.exit_code == 0, real.output
    assert f"deleted {would.group(1)}" in real.output.splitlines()
    assert len(whole_bucket(s3_bucket)) < len(snapshot)


def test_nothing_younger_than_the_grace_period_is_deleted(s3_bucket, make_version):
    publish(s3_bucket, *(make_version(version) for version in (1, 2, 3)))
    in_flight = object_key(PREFIX, "ab" * 32)  # uploaded by a publish whose manifest is not there yet
    boto3.client("s3").put_object(Bucket=s3_bucket, Key=in_flight, Body=b"a new picture")
    snapshot = whole_bucket(s3_bucket)
    result = prune(s3_bucket, "--keep", 1)  # the default grace period: 24 h
    assert result.exit_code == 0, result.output
    assert whole_bucket(s3_bucket) == snapshot
    assert "left whole, younger than 24 h: 1, 2" in result.output
    assert "deleted 0 key(s) of dropped versions (0 B) and 0 unreferenced object(s)" in result.output
    assert "left 1 unreferenced object(s) younger than 24 h" in result.output
    without_grace = prune(s3_bucket, "--keep", 1, "--min-age-hours", 0)
    assert without_grace.exit_code == 0, without_grace.output
    assert in_flight not in whole_bucket(s3_bucket)


def wait_for_the_next_second() -> datetime:
    """Wait until the next whole second; return a moment just before it. S3 dates objects in
    whole seconds: those put before are older than that moment, those put after younger."""
    now = datetime.now(timezone.utc)
    boundary = now.replace(microsecond=0) + timedelta(seconds=1)
    time.sleep((boundary - now).total_seconds() + 0.01)
    return boundary - timedelta(milliseconds=1)


def test_a_young_dropped_version_keeps_the_old_objects_it_lists(s3_bucket, make_version):
    """Version 3 re-lists version 1's picture and chunks (uploaded with 1, so old): while 3 is
    within the grace period, dropping 1 must not delete them."""
    bundles = {1: make_version(1), 2: make_version(2)}
    publish(s3_bucket, bundles[1], bundles[2])
    between = wait_for_the_next_second()
    bundles |= {3: make_version(3, variant=1), 4: make_version(4)}
    publish(s3_bucket, bundles[3], bundles[4])
    result = prune_indexes(
        s3_bucket, PREFIX, s3=boto3.client("s3"), keep=1, min_age_hours=1, now=between + timedelta(hours=1)
    )
    assert (result.kept, result.too_recent_versions, result.dropped) == ([4], [3], [1, 2])
    assert set(listed(s3_bucket, objects_prefix(PREFIX))) == stored_keys(bundles[3]) | stored_keys(bundles[4])
    assert run("rollback-index", 3, "--bucket", s3_bucket, "--prefix", PREFIX).exit_code == 0


def test_a_dropped_version_of_the_version_layout_loses_every_file_under_its_prefix(s3_bucket, make_version):
    old = make_version(1)
    upload(boto3.client("s3"), s3_bucket, PREFIX, old, layout=VERSION_LAYOUT)
    assert len(listed(s3_bucket, version_prefix(PREFIX, 1))) > 1
    publish(s3_bucket, make_version(2), make_version(3))
    result = prune(s3_bucket, "--keep", 2, "--min-age-hours", 0)
    assert result.exit_code == 0, result.output
    files = len(read_manifest(old)["files"]) + len(read_manifest(old)["reuse"]) + 1
    assert f"deleted {files} key(s) of dropped versions" in result.output
    assert not listed(s3_bucket, version_prefix(PREFIX, 1))
    assert set(listed(s3_bucket, indexes_prefix(PREFIX))) >= {bundle_key(PREFIX, v, MANIFEST) for v in (2, 3)}


def test_without_latest_nothing_is_deleted(s3_bucket, make_version):
    publish(s3_bucket, make_version(1), make_version(2))
    boto3.client("s3").delete_object(Bucket=s3_bucket, Key=latest_key(PREFIX))
    snapshot = whole_bucket(s3_bucket)
    result = prune(s3_bucket, "--keep", 1, "--min-age-hours", 0)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"error: s3://{s3_bucket}/{latest_key(PREFIX)}: missing" in result.output
    assert "nothing was deleted" in result.output
    assert whole_bucket(s3_bucket) == snapshot


@pytest.mark.parametrize("damaged", ["manifest", "chunk list"])
def test_an_unreadable_manifest_or_chunk_list_of_a_kept_version_stops_everything(
    s3_bucket, make_version, damaged
):
    bundles = [make_version(version) for version in (1, 2, 3)]
    publish(s3_bucket, *bundles)
    index_sha = read_manifest(bundles[2])["files"][INDEX_FILE]["sha256"]
    key = bundle_key(PREFIX, 3, MANIFEST) if damaged == "manifest" else chunk_list_key(PREFIX, index_sha)
    boto3.client("s3").put_object(Bucket=s3_bucket, Key=key, Body=b"{damaged")
    snapshot = whole_bucket(s3_bucket)
    result = prune(s3_bucket, "--keep", 1, "--min-age-hours", 0)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"s3://{s3_bucket}/{key}: not " in result.output and "nothing was deleted" in result.output
    assert whole_bucket(s3_bucket) == snapshot


def test_deletes_go_in_batches_and_a_refused_key_is_reported(s3_bucket, make_version, monkeypatch):
    publish(s3_bucket, *(make_version(version) for version in (1, 2, 3)))
    monkeypatch.setattr(prune_module, "DELETE_BATCH", 3)
    s3, batches = boto3.client("s3"), []
    s3.meta.events.register(
        "provide-client-params.s3.DeleteObjects",
        lambda params, **_: batches.append(len(params["Delete"]["Objects"])),
    )
    result = prune_indexes(s3_bucket, PREFIX, s3=s3, keep=1, min_age_hours=0)
    assert sum(batches) == result.version_keys + result.objects and result.objects > 3
    assert max(batches) == 3 and batches[0] == 2  # the two dropped manifests, before any object

    publish(s3_bucket, make_version(4))
    refusing = boto3.client("s3")

    def refuse_the_first_key(parsed, **_):
        parsed["Errors"] = [{"Key": bundle_key(PREFIX, 3, MANIFEST), "Code": "AccessDenied", "Message": "no"}]

    refusing.meta.events.register("after-call.s3.DeleteObjects", refuse_the_first_key)
    with pytest.raises(BundleError, match=r"3/manifest.json: not deleted \(AccessDenied: no\), 1 of 1 key"):
        prune_indexes(s3_bucket, PREFIX, s3=refusing, keep=1, min_age_hours=0)


def test_s3_failures_are_one_line(aws_env):
    result = prune("no-such-bucket-for-prune")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == "error: s3://no-such-bucket-for-prune: no such bucket"
