"""publish-index, list-indexes and rollback-index against a real moto S3/IoT server over HTTP."""

import json
import shutil

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from cloud_sync.cli.main import main
from cloud_sync.indexing.build_index import build_bundle
from cloud_sync.publishing.publish_index import publish_bundle
from components.common.bundle import MANIFEST, manifest_digest, read_manifest, write_manifest
from components.common.messages import IOT_INDEX_UPDATED
from components.common.s3_layout import VERSION_LAYOUT, Pointer, bundle_key, latest_key, object_key
from tests.conftest import demo_class_folders
from tests.support.network import free_port

PREFIX = "store-12"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def built_bundle(tiny_model, tmp_path_factory):
    """One real bundle (6 items); tests copy it and renumber the copy."""
    catalog = demo_class_folders(tmp_path_factory.mktemp("catalog"), ("dress", "hat", "shoes"), 2)
    out = tmp_path_factory.mktemp("bundles") / "bundle"
    build_bundle(catalog, tiny_model, out, index_version=5, progress=False)
    return out


@pytest.fixture
def make_bundle(built_bundle, tmp_path):
    def make(version: int, altered: bool = False):
        out = tmp_path / f"bundle-{version}{'-altered' if altered else ''}"
        shutil.copytree(built_bundle, out)
        if altered:
            (out / "thumbnails" / "0.jpg").write_bytes(b"a different picture")
        manifest = read_manifest(out)
        write_manifest(out, {**{k: v for k, v in manifest.items() if k != "files"}, "index_version": version})
        return out

    return make


def s3_client_recording_puts(puts: list[str]):
    s3 = boto3.client("s3")
    s3.meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **_: puts.append(params["Key"])
    )
    return s3


def stored_key(bundle, rel: str) -> str:
    """Where publish-index puts one file of `bundle`: data files under their sha256."""
    manifest = read_manifest(bundle)
    if rel == MANIFEST:
        return bundle_key(PREFIX, manifest["index_version"], rel)
    return object_key(PREFIX, {**manifest["reuse"], **manifest["files"]}[rel]["sha256"])


def pointer(bucket) -> Pointer:
    raw = boto3.client("s3").get_object(Bucket=bucket, Key=latest_key(PREFIX))["Body"].read()
    return Pointer.from_json(raw)


def test_publish_uploads_every_file_then_points_latest_at_it(s3_bucket, make_bundle):
    bundle = make_bundle(5)
    result = run("publish-index", bundle, "--bucket", s3_bucket, "--prefix", PREFIX)
    assert result.exit_code == 0, result.output
    assert "published version 5 (6 items): uploaded 11 file(s), 0 already in S3" in result.output
    assert f"s3://{s3_bucket}/{PREFIX}/indexes/LATEST now names it" in result.output
    assert "11/11 files" in result.output  # progress: the reuse/ files for --previous go up too
    latest = pointer(s3_bucket)
    assert (latest.index_version, latest.manifest_sha256) == (5, manifest_digest(bundle))
    assert (
        latest.item_count == 6 and latest.model_fingerprint == read_manifest(bundle)["model"]["fingerprint"]
    )
    s3 = boto3.client("s3")
    for rel in [*read_manifest(bundle)["files"], *read_manifest(bundle)["reuse"], MANIFEST]:
        body = s3.get_object(Bucket=s3_bucket, Key=stored_key(bundle, rel))["Body"].read()
        assert body == (bundle / rel).read_bytes(), rel
    head = s3.head_object(Bucket=s3_bucket, Key=latest_key(PREFIX))
    assert head["ContentType"] == "application/json"


def test_manifest_then_latest_are_written_after_every_data_file(s3_bucket, make_bundle):
    bundle, puts = make_bundle(5), []
    publish_bundle(bundle, s3_bucket, PREFIX, s3=s3_client_recording_puts(puts))
    manifest = read_manifest(bundle)
    data_keys = {stored_key(bundle, rel) for rel in [*manifest["files"], *manifest["reuse"]]}
    assert set(puts[:-2]) == data_keys
    assert puts[-2:] == [bundle_key(PREFIX, 5, MANIFEST), latest_key(PREFIX)]


def test_a_failed_upload_leaves_latest_and_the_manifest_untouched(s3_bucket, make_bundle):
    assert run("publish-index", make_bundle(5), "--bucket", s3_bucket, "--prefix", PREFIX).exit_code == 0
    s3 = boto3.client("s3")
    changed = make_bundle(6, altered=True)
    failing_key = stored_key(changed, "thumbnails/0.jpg")

    def fail(params, **_):
        if params["Key"] == failing_key:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "PutObject")

    s3.meta.events.register("provide-client-params.s3.PutObject", fail)
    with pytest.raises(Exception, match="upload failed"):
        publish_bundle(changed, s3_bucket, PREFIX, s3=s3)
    assert pointer(s3_bucket).index_version == 5
    assert "Contents" not in s3.list_objects_v2(Bucket=s3_bucket, Prefix=bundle_key(PREFIX, 6, MANIFEST))


def test_a_file_changed_after_the_check_is_caught_before_latest_moves(s3_bucket, make_bundle):
    bundle = make_bundle(5)
    s3 = boto3.client("s3")
    changed = stored_key(bundle, "items.sqlite")

    def change_file_before_its_upload(params, **_):
        if params["Key"] == changed:
            data = bytearray((bundle / "items.sqlite").read_bytes())
            data[-1] ^= 0xFF
            (bundle / "items.sqlite").write_bytes(bytes(data))

    s3.meta.events.register("provide-client-params.s3.PutObject", change_file_before_its_upload)
    with pytest.raises(Exception, match="does not match the manifest"):
        publish_bundle(bundle, s3_bucket, PREFIX, s3=s3)
    assert "Contents" not in s3.list_objects_v2(Bucket=s3_bucket, Prefix=latest_key(PREFIX))
    assert "Contents" not in s3.list_objects_v2(Bucket=s3_bucket, Prefix=changed)  # deleted, not trusted


def test_republishing_the_same_bundle_uploads_nothing_and_leaves_latest(s3_bucket, make_bundle):
    bundle = make_bundle(5)
    assert run("publish-index", bundle, "--bucket", s3_bucket, "--prefix", PREFIX).exit_code == 0
    before, puts = pointer(s3_bucket), []
    result = publish_bundle(bundle, s3_bucket, PREFIX, s3=s3_client_recording_puts(puts))
    assert puts == [] and not result.moved_latest and result.uploaded == []
    assert len(result.skipped) == 11 and pointer(s3_bucket) == before
    again = run("publish-index", bundle, "--bucket", s3_bucket, "--prefix", PREFIX)
    assert again.exit_code == 0
    assert "version 5 was already published: uploaded 0 file(s), 11 already in S3" in again.output
    assert "LATEST already names it, left as is" in again.output


def test_a_one_item_change_uploads_only_that_file_and_the_manifest(s3_bucket, make_bundle):
    publish_bundle(make_bundle(5), s3_bucket, PREFIX, s3=boto3.client("s3"))
    changed, puts = make_bundle(6, altered=True), []
    result = publish_bundle(changed, s3_bucket, PREFIX, s3=s3_client_recording_puts(puts))
    assert result.uploaded == [MANIFEST, "thumbnails/0.jpg"] and len(result.skipped) == 9
    assert puts == [
        stored_key(changed, "thumbnails/0.jpg"),
        stored_key(changed, MANIFEST),
        latest_key(PREFIX),
    ]
    assert pointer(s3_bucket).index_version == 6


def publish_with_the_previous_layout(s3_bucket, bundle) -> None:
    """What publish-index wrote before files were content-addressed: every file under its
    version's prefix, and a schema 1 LATEST."""
    s3, manifest = boto3.client("s3"), read_manifest(bundle)
    version = manifest["index_version"]
    for rel in [*manifest["files"], *manifest["reuse"], MANIFEST]:
        s3.put_object(
            Bucket=s3_bucket, Key=bundle_key(PREFIX, version, rel), Body=(bundle / rel).read_bytes()
        )
    old_pointer = {"schema": 1, "index_version": version, "manifest_sha256": manifest_digest(bundle)}
    s3.put_object(Bucket=s3_bucket, Key=latest_key(PREFIX), Body=json.dumps(old_pointer).encode())


def test_versions_of_the_previous_layout_stay_listed_and_can_be_rolled_back_to(s3_bucket, make_bundle):
    old = make_bundle(5)
    publish_with_the_previous_layout(s3_bucket, old)
    assert pointer(s3_bucket).layout == VERSION_LAYOUT
    assert run("publish-index", make_bundle(6), "--bucket", s3_bucket, "--prefix", PREFIX).exit_code == 0
    listing = json.loads(run("list-indexes", "--bucket", s3_bucket, "--prefix", PREFIX, "--json").output)
    assert [(v["index_version"], v["complete"], v["layout"]) for v in listing["versions"]] == [
        (5, True, "version"),
        (6, True, "content"),
    ]
    result = run("rollback-index", 5, "--bucket", s3_bucket, "--prefix", PREFIX)
    assert result.exit_code == 0, result.output
    latest = pointer(s3_bucket)
    assert (latest.index_version, latest.layout, latest.manifest_sha256) == (
        5,
        VERSION_LAYOUT,
        manifest_digest(old),
    )


def test_an_unknown_pointer_schema_is_refused_with_what_this_build_reads():
    with pytest.raises(Exception, match="pointer schema 3 is not supported \\(this build reads 1, 2\\)"):
        Pointer.from_json(json.dumps({"schema": 3, "index_version": 1, "manifest_sha256": "0" * 64}))


def test_an_older_version_needs_force(s3_bucket, make_bundle):
    assert run("publish-index", make_bundle(6), "--bucket", s3_bucket, "--prefix", PREFIX).exit_code == 0
    older = make_bundle(5)
    refused = run("publish-index", older, "--bucket", s3_bucket, "--prefix", PREFIX)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "names version 6, newer than this bundle's 5" in refused.output and "--force" in refused.output
    assert pointer(s3_bucket).index_version == 6
    forced = run("publish-index", older, "--bucket", s3_bucket, "--prefix", PREFIX, "--force")
    assert forced.exit_code == 0, forced.output
    assert "was version 6" in forced.output
    assert pointer(s3_bucket).manifest_sha256 == manifest_digest(older)


def test_the_same_version_with_other_content_is_refused(s3_bucket, make_bundle):
    original = make_bundle(6)
    assert run("publish-index", original, "--bucket", s3_bucket, "--prefix", PREFIX).exit_code == 0
    result = run("publish-index", make_bundle(6, altered=True), "--bucket", s3_bucket, "--prefix", PREFIX)
    assert result.exit_code == 1
    assert "version 6 is already published" in result.output and "immutable" in result.output
    assert "--index-version" in result.output
    s3 = boto3.client("s3")
    stored = s3.get_object(Bucket=s3_bucket, Key=stored_key(original, "thumbnails/0.jpg"))["Body"].read()
    assert stored == (original / "thumbnails" / "0.jpg").read_bytes()
    assert pointer(s3_bucket).manifest_sha256 == manifest_digest(original)


def test_a_broken_local_bundle_is_refused_before_any_upload(s3_bucket, make_bundle):
    bundle = make_bundle(5)
    (bundle / "index.faiss").write_bytes(b"truncated")
    result = run("publish-index", bundle, "--bucket", s3_bucket, "--prefix", PREFIX)
    assert result.exit_code == 1 and "index.faiss: size 9 bytes" in result.output
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=s3_bucket)


def test_notify_publishes_the_new_version_on_iot_core(s3_bucket, make_bundle):
    from moto.backends import get_backend

    bundle = make_bundle(5)
    result = run("publish-index", bundle, "--bucket", s3_bucket, "--prefix", PREFIX, "--notify")
    assert result.exit_code == 0, result.output
    assert "notified devices on visualsearch/index/updated: version 5" in result.output
    published = get_backend("iot-data")["123456789012"]["us-east-1"].published_payloads
    messages = [json.loads(payload) for topic, payload in published if topic == IOT_INDEX_UPDATED]
    message = next(m for m in messages if m["bucket"] == s3_bucket)
    assert message["schema"] == "visualsearch.index_updated/1" and message["id"] and message["timestamp"] > 0
    assert message["index_version"] == 5 and message["manifest_sha256"] == manifest_digest(bundle)
    assert message["prefix"] == PREFIX and message["latest_key"] == latest_key(PREFIX)


def test_list_indexes_marks_latest_and_incomplete_versions(s3_bucket, make_bundle):
    for version in (5, 6):
        assert (
            run("publish-index", make_bundle(version), "--bucket", s3_bucket, "--prefix", PREFIX).exit_code
            == 0
        )
    boto3.client("s3").put_object(Bucket=s3_bucket, Key=bundle_key(PREFIX, 7, "index.faiss"), Body=b"partial")
    result = run("list-indexes", "--bucket", s3_bucket, "--prefix", PREFIX)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"s3://{s3_bucket}/{PREFIX}/indexes/  (* = LATEST, version 6)"
    assert lines[2].startswith("  5 ") and lines[3].startswith("* 6 ") and " 6  " in lines[3]
    assert "incomplete: " in lines[4] and "7/manifest.json: missing" in lines[4]
    listing = json.loads(run("list-indexes", "--bucket", s3_bucket, "--prefix", PREFIX, "--json").output)
    assert listing["latest"]["index_version"] == 6
    assert [(v["index_version"], v["complete"], v["latest"]) for v in listing["versions"]] == [
        (5, True, False),
        (6, True, True),
        (7, False, False),
    ]
    assert listing["versions"][0]["item_count"] == 6 and listing["versions"][0]["files"] == 9


def test_list_indexes_of_an_empty_prefix(s3_bucket):
    result = run("list-indexes", "--bucket", s3_bucket, "--prefix", PREFIX)
    assert (
        result.exit_code == 0
        and f"no index versions under s3://{s3_bucket}/{PREFIX}/indexes/" in result.output
    )


def test_rollback_to_a_complete_version(s3_bucket, make_bundle):
    v5 = make_bundle(5)
    for bundle in (v5, make_bundle(6)):
        assert run("publish-index", bundle, "--bucket", s3_bucket, "--prefix", PREFIX).exit_code == 0
    result = run("rollback-index", 5, "--bucket", s3_bucket, "--prefix", PREFIX)
    assert result.exit_code == 0, result.output
    assert "LATEST now names version 5 (6 items" in result.output and "was version 6" in result.output
    assert (pointer(s3_bucket).index_version, pointer(s3_bucket).manifest_sha256) == (5, manifest_digest(v5))
    again = run("rollback-index", 5, "--bucket", s3_bucket, "--prefix", PREFIX)
    assert again.exit_code == 0 and "already names version 5" in again.output


def test_rollback_refuses_missing_and_incomplete_versions(s3_bucket, make_bundle):
    bundles = [make_bundle(version) for version in (5, 6)]
    for bundle in bundles:
        assert run("publish-index", bundle, "--bucket", s3_bucket, "--prefix", PREFIX).exit_code == 0
    boto3.client("s3").delete_object(Bucket=s3_bucket, Key=stored_key(bundles[0], "thumbnails/2.jpg"))
    incomplete = run("rollback-index", 5, "--bucket", s3_bucket, "--prefix", PREFIX)
    assert incomplete.exit_code == 1
    assert "version 5 is incomplete" in incomplete.output and "thumbnails/2.jpg" in incomplete.output
    missing = run("rollback-index", 9, "--bucket", s3_bucket, "--prefix", PREFIX)
    assert missing.exit_code == 1 and "version 9 is not in" in missing.output
    assert pointer(s3_bucket).index_version == 6


def test_an_unreadable_latest_needs_force(s3_bucket, make_bundle):
    boto3.client("s3").put_object(Bucket=s3_bucket, Key=latest_key(PREFIX), Body=b"<html>oops</html>")
    bundle = make_bundle(5)
    refused = run("publish-index", bundle, "--bucket", s3_bucket, "--prefix", PREFIX)
    assert refused.exit_code == 1 and "--force" in refused.output
    assert f"s3://{s3_bucket}/{PREFIX}/indexes/LATEST: not valid JSON" in refused.output
    forced = run("publish-index", bundle, "--bucket", s3_bucket, "--prefix", PREFIX, "--force")
    assert forced.exit_code == 0, forced.output
    assert pointer(s3_bucket).index_version == 5


def test_the_iot_endpoint_may_be_given_without_a_scheme(aws_env):
    from cloud_sync.publishing.index_versions import iot_data_client

    client = iot_data_client("abc123-ats.iot.eu-west-1.amazonaws.com")
    assert client.meta.endpoint_url == "https://abc123-ats.iot.eu-west-1.amazonaws.com"
    assert iot_data_client(None).meta.endpoint_url == aws_env  # boto3's default: AWS_ENDPOINT_URL here


def test_s3_failures_are_one_line(aws_env, make_bundle, monkeypatch):
    result = run("publish-index", make_bundle(5), "--bucket", "no-such-bucket-here", "--prefix", PREFIX)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == "error: s3://no-such-bucket-here: no such bucket"
    closed = free_port()  # a port where nothing listens
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = run("list-indexes", "--bucket", "any-bucket", "--prefix", PREFIX)
    assert result.exit_code == 1 and f"cannot reach http://127.0.0.1:{closed}" in result.output


def test_access_denied_names_the_location():
    from cloud_sync.aws import CloudError, aws_errors

    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")
    with pytest.raises(CloudError, match=r"^s3://b/p/indexes/: access denied \(AccessDenied\)"):
        with aws_errors("s3://b/p/indexes/"):
            raise denied


# ---- two operators at once (issue 14, item 4) ------------------------------------------------
def s3_client_that_lets_another_publish_first(other):
    """A client that runs `other()` once, just before it moves LATEST: the other operator's
    whole publish lands between this one's version check and its pointer write."""
    s3, done = boto3.client("s3"), []

    def before_put(params, **_):
        if params["Key"] == latest_key(PREFIX) and not done:
            done.append(True)
            other()

    s3.meta.events.register("provide-client-params.s3.PutObject", before_put)
    return s3


def publish_from_another_laptop(bucket, bundle):
    return lambda: publish_bundle(bundle, bucket, PREFIX, s3=boto3.client("s3"))


def test_an_older_publish_that_finishes_last_leaves_latest_on_the_newer(s3_bucket, make_bundle):
    from components.common.errors import BundleError

    assert run("publish-index", make_bundle(5), "--bucket", s3_bucket, "--prefix", PREFIX).exit_code == 0
    s3 = s3_client_that_lets_another_publish_first(publish_from_another_laptop(s3_bucket, make_bundle(7)))
    with pytest.raises(
        BundleError,
        match=r"LATEST changed while this publish ran: it now names version 7, "
        r"newer than this bundle's 6; version 6 is uploaded but LATEST was "
        r"left on 7",
    ):
        publish_bundle(make_bundle(6), s3_bucket, PREFIX, s3=s3)
    assert pointer(s3_bucket).index_version == 7


def test_a_newer_publish_whose_check_went_stale_moves_latest_after_reading_it_again(s3_bucket, make_bundle):
    assert run("publish-index", make_bundle(5), "--bucket", s3_bucket, "--prefix", PREFIX).exit_code == 0
    s3 = s3_client_that_lets_another_publish_first(publish_from_another_laptop(s3_bucket, make_bundle(6)))
    result = publish_bundle(make_bundle(8), s3_bucket, PREFIX, s3=s3)
    assert result.moved_latest and result.previous.index_version == 6
    assert pointer(s3_bucket).index_version == 8


def test_two_first_publishes_to_an_empty_prefix_keep_the_newer(s3_bucket, make_bundle):
    from components.common.errors import BundleError

    s3 = s3_client_that_lets_another_publish_first(publish_from_another_laptop(s3_bucket, make_bundle(7)))
    with pytest.raises(BundleError, match="it now names version 7, newer than this bundle's 6"):
        publish_bundle(make_bundle(6), s3_bucket, PREFIX, s3=s3)
    assert pointer(s3_bucket).index_version == 7


def test_a_rollback_raced_by_a_publish_is_refused_and_says_so(s3_bucket, make_bundle):
    from cloud_sync.publishing.index_versions import rollback_index
    from components.common.errors import BundleError

    for version in (5, 6):
        assert (
            run("publish-index", make_bundle(version), "--bucket", s3_bucket, "--prefix", PREFIX).exit_code
            == 0
        )
    s3 = s3_client_that_lets_another_publish_first(publish_from_another_laptop(s3_bucket, make_bundle(7)))
    with pytest.raises(
        BundleError,
        match=r"LATEST changed while this rollback ran \(it now names version 7\); "
        r"nothing was changed: run rollback-index again",
    ):
        rollback_index(s3_bucket, PREFIX, 5, s3=s3)
    assert pointer(s3_bucket).index_version == 7
