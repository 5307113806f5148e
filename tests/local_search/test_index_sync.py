"""Index sync from S3 (a real moto server over HTTP, plain boto3): the sync step by step,
then local_search as on a device (built by its main, real IPC under the nucleus stand-in)."""

import json
import shutil

import boto3
import numpy as np
import pytest

from components.common import messages, s3_layout
from components.common.bundle import (
    INDEX_FILE,
    MANIFEST,
    manifest_digest,
    read_manifest,
    verify_bundle,
    write_manifest,
)
from components.local_search.bundle_store import BundleStore, version_name
from components.local_search.index_sync import Backoff, IndexSync
from components.local_search.serving import ServingIndex
from tests.local_search.sync_helpers import (
    FAST_BACKOFF,
    SwitchableProxy,
    device_nucleus,
    make_bundle,
    point_latest,
    publish,
    running_device,
    sync_settings,
    upload,
    with_fingerprint,
)
from tests.support.waiting import wait_until

PREFIX = "fleet/store-7"


@pytest.fixture(scope="module")
def bundles(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("sync-bundles")
    return {v: make_bundle(tiny_model, root, v) for v in (1, 2, 3)}


@pytest.fixture
def s3(s3_bucket):
    return boto3.client("s3")


def make_sync(root, bucket, expected=None) -> IndexSync:
    serving = ServingIndex()
    sync = IndexSync(
        BundleStore(root),
        serving,
        bucket=bucket,
        prefix=PREFIX,
        poll_interval_s=3600,
        expected_fingerprint=lambda: expected
        or (serving.bundle.model_fingerprint if serving.bundle else None),
        report=lambda state, detail: sync.reports.append((state, detail)),
        backoff=FAST_BACKOFF,
    )
    sync.reports = []
    sync.gets = []  # (key, HTTP status) of every GetObject it makes
    events = sync._s3().meta.events
    events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: sync.gets.append([params["Key"]])
    )
    events.register(
        "after-call.s3.GetObject", lambda http_response, **_: sync.gets[-1].append(http_response.status_code)
    )
    return sync


def data_gets(sync) -> list[str]:
    return [key for key, _ in sync.gets if not key.endswith(s3_layout.LATEST)]


def test_backoff_is_exponential_capped_and_jittered():
    backoff = Backoff(base_s=2.0, cap_s=300.0)
    assert [backoff.delay(n, rand=lambda: 1.0) for n in (1, 2, 3, 4, 9, 50)] == [2, 4, 8, 16, 300, 300]
    assert [backoff.delay(n, rand=lambda: 0.0) for n in (1, 2, 3)] == [1, 2, 4]


def test_first_sync_downloads_and_an_unchanged_latest_costs_one_304(tmp_path, s3, s3_bucket, bundles):
    sync = make_sync(tmp_path / "indexes", s3_bucket)
    assert sync.check_once() is True and sync.serving.bundle is None  # nothing published yet
    assert sync.online is True and sync.reports == []
    publish(s3, s3_bucket, PREFIX, bundles[1])
    assert sync.check_once() and sync.serving.bundle.version == 1
    assert sync.store.current_dir() == sync.serving.bundle.path and sync.reports[-1][0] == "running"
    downloaded = data_gets(sync)
    assert MANIFEST in downloaded[0] and len(downloaded) == sync.store.files_fetched
    sync.check_once()
    assert sync.gets[-1] == [s3_layout.latest_key(PREFIX), 304] and data_gets(sync) == downloaded


def test_a_crash_mid_download_leaves_the_old_index_and_the_next_start_resumes(
    tmp_path, s3, s3_bucket, bundles
):
    class Crash(BaseException):
        pass

    sync = make_sync(tmp_path / "indexes", s3_bucket)
    publish(s3, s3_bucket, PREFIX, bundles[1])
    sync.check_once()
    publish(s3, s3_bucket, PREFIX, bundles[2])
    real_get, done = sync._get, []

    def get_then_crash(key, target):
        if len(done) == 4:
            target.with_name(target.name + ".part").write_bytes(b"half a file")
            raise Crash()  # the process dies here, in the middle of the download
        real_get(key, target)
        done.append(key)

    sync._get = get_then_crash
    with pytest.raises(Crash):
        sync.check_once()
    assert sync.serving.bundle.version == 1 and BundleStore(sync.store.root).open_current().version == 1

    again = make_sync(tmp_path / "indexes", s3_bucket)  # the next start
    assert again.store.open_current().version == 1
    again.check_once()
    assert again.serving.bundle.version == 2
    assert again.store.files_reused == 4 and MANIFEST not in " ".join(data_gets(again))
    assert not list(again.store.root.rglob("*.part")) and not any(again.store.staging.iterdir())
    assert sorted(p.name for p in again.store.versions.iterdir()) == sorted(
        version_name(v, manifest_digest(bundles[v])) for v in (1, 2)
    )


def test_rollback_to_the_kept_previous_version_needs_no_download(tmp_path, s3, s3_bucket, bundles):
    sync = make_sync(tmp_path / "indexes", s3_bucket)
    first = publish(s3, s3_bucket, PREFIX, bundles[1])
    sync.check_once()
    publish(s3, s3_bucket, PREFIX, bundles[2])
    sync.check_once()
    before = list(data_gets(sync))
    point_latest(s3, s3_bucket, PREFIX, first)  # what rollback-index 1 does
    sync.check_once()
    assert sync.serving.bundle.version == 1 and data_gets(sync) == before
    assert "kept on the device" in sync.reports[-1][1]
    assert sync.store.current_dir().name == version_name(1, first.manifest_sha256)


def one_picture_changed(bundle_dir, out, version: int):
    """A copy of a bundle as the next version, with one item's thumbnail changed."""
    shutil.copytree(bundle_dir, out)
    thumbnail = out / "thumbnails" / "0.jpg"
    thumbnail.write_bytes(thumbnail.read_bytes() + b"re-shot")
    manifest = read_manifest(out)
    write_manifest(out, {**{k: v for k, v in manifest.items() if k != "files"}, "index_version": version})
    return out


def test_a_one_item_change_downloads_only_that_file_and_verifies_all(tmp_path, s3, s3_bucket, bundles):
    sync = make_sync(tmp_path / "indexes", s3_bucket)
    publish(s3, s3_bucket, PREFIX, bundles[1])
    sync.check_once()
    changed = one_picture_changed(bundles[1], tmp_path / "changed", version=4)
    publish(s3, s3_bucket, PREFIX, changed)
    before, fetched_bytes = len(data_gets(sync)), sync.store.bytes_fetched
    sync.check_once()
    assert sync.serving.bundle.version == 4
    files = read_manifest(changed)["files"]
    picture = s3_layout.object_key(PREFIX, files["thumbnails/0.jpg"]["sha256"])
    assert data_gets(sync)[before:] == [s3_layout.bundle_key(PREFIX, 4, MANIFEST), picture]
    assert sync.store.files_linked == len(files) - 1
    assert (
        sync.store.bytes_fetched - fetched_bytes
        == (changed / MANIFEST).stat().st_size + (files["thumbnails/0.jpg"]["size"])
    )
    verify_bundle(sync.store.current_dir())  # every file in place, whether fetched or kept


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunk files of a kilobyte and more, about every 256 bytes (the test bundles are small)."""
    from components.common import chunks

    for name, value in (("CHUNKED_MIN_BYTES", 1024), ("MIN_CHUNK", 64), ("MAX_CHUNK", 4096)):
        monkeypatch.setattr(chunks, name, value)
    monkeypatch.setattr(chunks, "BOUNDARY_MASK", 255)


def test_a_one_row_change_of_a_large_file_downloads_only_the_chunks_around_it(
    tmp_path, s3, s3_bucket, bundles, small_chunks
):
    from cloud_sync.publishing.publish_index import publish_bundle

    sync = make_sync(tmp_path / "indexes", s3_bucket)
    publish_bundle(bundles[1], s3_bucket, PREFIX, s3=s3)
    sync.check_once()
    changed = tmp_path / "changed"
    shutil.copytree(bundles[1], changed)
    index = bytearray((changed / INDEX_FILE).read_bytes())
    index[len(index) // 2 : len(index) // 2 + 8] = bytes(8)  # one stored vector altered
    (changed / INDEX_FILE).write_bytes(bytes(index))
    manifest = read_manifest(changed)
    write_manifest(changed, {**{k: v for k, v in manifest.items() if k != "files"}, "index_version": 4})
    published = publish_bundle(changed, s3_bucket, PREFIX, s3=s3)
    assert published.uploaded == [INDEX_FILE, MANIFEST]
    assert published.bytes_uploaded < len(index) / 2  # the changed chunks, chunk list and manifest
    fetched = sync.store.bytes_fetched
    sync.check_once()
    assert sync.serving.bundle.version == 4
    assert sync.store.bytes_fetched - fetched < len(index) / 2
    verify_bundle(sync.store.current_dir())
    assert (sync.store.current_dir() / INDEX_FILE).read_bytes() == bytes(index)


def test_a_file_damaged_on_the_device_is_downloaded_not_linked(tmp_path, s3, s3_bucket, bundles):
    sync = make_sync(tmp_path / "indexes", s3_bucket)
    publish(s3, s3_bucket, PREFIX, bundles[1])
    sync.check_once()
    kept = sync.store.current_dir() / "items.sqlite"
    kept.write_bytes(kept.read_bytes()[:-1] + b"?")
    publish(s3, s3_bucket, PREFIX, one_picture_changed(bundles[1], tmp_path / "changed", version=4))
    sync.check_once()
    assert sync.serving.bundle.version == 4
    assert any(
        key.endswith(read_manifest(bundles[1])["files"]["items.sqlite"]["sha256"]) for key in data_gets(sync)
    )
    verify_bundle(sync.store.current_dir())


def test_a_version_published_with_the_previous_layout_is_still_followed(tmp_path, s3, s3_bucket, bundles):
    pointer = upload(s3, s3_bucket, PREFIX, bundles[2], layout=s3_layout.VERSION_LAYOUT)
    old_latest = {"schema": 1, "index_version": 2, "manifest_sha256": pointer.manifest_sha256}
    s3.put_object(Bucket=s3_bucket, Key=s3_layout.latest_key(PREFIX), Body=json.dumps(old_latest).encode())
    sync = make_sync(tmp_path / "indexes", s3_bucket)
    sync.check_once()
    assert sync.serving.bundle.version == 2 and not sync.refusal
    assert all(key.startswith(s3_layout.version_prefix(PREFIX, 2)) for key in data_gets(sync))


def test_a_bundle_for_another_model_is_refused_until_that_model_runs(tmp_path, s3, s3_bucket, bundles):
    other = with_fingerprint(bundles[2], tmp_path / "other-model", "f" * 64)
    sync = make_sync(tmp_path / "indexes", s3_bucket)
    publish(s3, s3_bucket, PREFIX, bundles[1])
    sync.check_once()
    served = sync.serving.bundle.model_fingerprint
    publish(s3, s3_bucket, PREFIX, other)
    sync.check_once()
    state, detail = sync.reports[-1]
    assert (
        state == "error"
        and f"built for model ffffffffffff, but the featurizer runs model {served[:12]}" in detail
    )
    assert sync.serving.bundle.version == 1 and data_gets(sync)[-1].endswith(MANIFEST)  # nothing big fetched
    assert "refused index version 2" in sync.status_fields()["last_sync_error"]
    sync._expected = lambda: "f" * 64  # the featurizer now runs that model
    sync.trigger(recheck=True)
    sync.check_once()
    assert sync.serving.bundle.version == 2 and sync.serving.bundle.model_fingerprint == "f" * 64


def test_a_pointer_that_does_not_parse_is_reported_once(tmp_path, s3, s3_bucket):
    sync = make_sync(tmp_path / "indexes", s3_bucket)
    s3.put_object(Bucket=s3_bucket, Key=s3_layout.latest_key(PREFIX), Body=b"{not json")
    sync.check_once()
    sync.check_once()
    assert [state for state, _ in sync.reports] == ["error"] and "not valid JSON" in sync.reports[0][1]
    assert sync.gets[-1][1] == 304 and sync.online is True


def test_an_update_for_another_fleet_is_ignored(tmp_path, s3_bucket):
    sync = make_sync(tmp_path / "indexes", s3_bucket)
    sync.on_index_updated(json.dumps({"bucket": "someone-else", "latest_key": "x/indexes/LATEST"}).encode())
    assert not sync._wake.is_set()
    sync.on_index_updated(
        json.dumps(
            {"bucket": s3_bucket, "latest_key": s3_layout.latest_key(PREFIX), "index_version": 4}
        ).encode()
    )
    assert sync._wake.is_set()
    sync._wake.clear()
    sync.on_index_updated(b"not json: still worth a look")
    assert sync._wake.is_set()


def test_what_publish_index_writes_is_what_the_device_follows(tmp_path, s3, s3_bucket, bundles):
    from cloud_sync.publishing.publish_index import publish_bundle

    sync = make_sync(tmp_path / "indexes", s3_bucket)
    for version in (1, 2):
        publish_bundle(bundles[version], s3_bucket, PREFIX, s3=s3)
        assert sync.check_once() and sync.serving.bundle.version == version
    assert sync.serving.bundle.path == sync.store.current_dir()
    sync._wake.clear()
    served = messages.index_updated_message(
        index_version=2,
        manifest_sha256=manifest_digest(bundles[2]),
        item_count=8,
        model_fingerprint="",
        bucket=s3_bucket,
        prefix=PREFIX,
        latest_key=s3_layout.latest_key(PREFIX),
    )
    sync.on_index_updated(json.dumps(served).encode())
    assert not sync._wake.is_set()  # the version served now: nothing to check


# --- as on a device ------------------------------------------------------------------------
@pytest.fixture
def work_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VISUAL_SEARCH_WORK_DIR", str(tmp_path / "work"))
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def version_in_status(device, version, timeout=30.0) -> dict:
    return device.status.next(timeout=timeout, where=lambda m: m.get("index_version") == version)


def test_without_any_index_it_waits_for_the_first_one_then_serves_it(work_dir, s3, s3_bucket, bundles):
    with device_nucleus() as nucleus, running_device(nucleus, sync_settings(s3_bucket)) as device:
        waiting = device.status.next(where=lambda m: m["state"] == "waiting")
        assert (
            waiting["detail"] == f"waiting for the first index from s3://{s3_bucket}/{PREFIX}/indexes/LATEST"
        )
        assert waiting["index_version"] is None and waiting["bundle_dir"] == ""
        publish(s3, s3_bucket, PREFIX, bundles[1])
        nucleus.iot_core.publish(messages.IOT_INDEX_UPDATED, {"index_version": 1})
        serving = version_in_status(device, 1)
        assert serving["index_source"] == "s3" and serving["online"] is True and serving["last_sync"]
        assert serving["bundle_dir"].startswith(str(work_dir / "indexes" / "versions"))


@pytest.mark.parametrize("flip", [INDEX_FILE, "thumbnails/3.jpg"])
def test_a_corrupted_bundle_is_refused_reported_and_not_fetched_again(work_dir, s3, s3_bucket, bundles, flip):
    publish(s3, s3_bucket, PREFIX, bundles[1])
    with device_nucleus() as nucleus, running_device(nucleus, sync_settings(s3_bucket)) as device:
        version_in_status(device, 1)
        publish(s3, s3_bucket, PREFIX, bundles[2], flip=flip)
        nucleus.iot_core.publish(messages.IOT_INDEX_UPDATED, {"index_version": 2})
        refusal = device.status.next(timeout=30, where=lambda m: m["state"] == "error")
        assert (
            f"refused index version 2 from S3: s3://{s3_bucket}/{PREFIX}/indexes/2/{flip}: sha256 does not "
            f"match the manifest" in refusal["detail"]
        )
        assert refusal["index_version"] == 1 and "still serving index version 1" in refusal["detail"]
        store = device.component.sync.store
        fetched = store.files_fetched
        sync = device.component.sync
        for recheck in (False, True):  # the next polls, whether LATEST looks changed or not
            checks = sync.checks
            sync.trigger(recheck=recheck)
            wait_until(
                lambda checks=checks: sync.checks > checks + 1
                or (sync.checks > checks and not sync._wake.is_set()),
                30,
                "the next check",
            )
        later = device.status.next(timeout=30, where=lambda m: m["state"] == "running")
        assert later["index_version"] == 1 and "refused index version 2" in later["last_sync_error"]
        assert store.files_fetched == fetched and not (
            store.staging.exists() and any(store.staging.iterdir())
        )
        assert (
            device.ask(device.component.bundle.index.reconstruct(0), "still-answering")["index_version"] == 1
        )


def test_s3_unreachable_keeps_serving_backs_off_and_catches_up(work_dir, s3, s3_bucket, bundles, monkeypatch):
    proxy = SwitchableProxy(s3.meta.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)  # the device reaches S3 only through the proxy
    publish(s3, s3_bucket, PREFIX, bundles[1])
    settings = sync_settings(s3_bucket, poll_interval_s=0.2)
    try:
        with device_nucleus() as nucleus, running_device(nucleus, settings, Backoff(0.2, 1.0)) as device:
            version_in_status(device, 1)
            proxy.set_up(False)
            publish(s3, s3_bucket, PREFIX, bundles[2])  # published while the device is offline
            offline = device.status.next(timeout=30, where=lambda m: m.get("online") is False)
            assert offline["index_version"] == 1 and offline["last_sync_error"].startswith("S3: ")
            sync = device.component.sync
            wait_until(lambda: sync.failures >= 3, 30, "three failures in a row")
            assert proxy.refused >= 3 and sync.retry_in_s <= 1.0
            assert device.ask(device.component.bundle.index.reconstruct(2), "offline")["index_version"] == 1
            proxy.set_up(True)
            caught_up = version_in_status(device, 2)
            assert caught_up["online"] is True and sync.failures == 0
    finally:
        proxy.close()


def test_after_a_crash_and_with_no_network_the_next_start_serves_the_last_index_at_once(
    work_dir, s3, s3_bucket, bundles, monkeypatch
):
    publish(s3, s3_bucket, PREFIX, bundles[1])
    with device_nucleus() as nucleus, running_device(nucleus, sync_settings(s3_bucket)) as device:
        version_in_status(device, 1)
    # Killed while downloading version 2: some files staged, one cut short, a temporary file.
    store = BundleStore(work_dir / "indexes")
    pointer = upload(s3, s3_bucket, PREFIX, bundles[2])
    staging = store.staging_for(2, pointer.manifest_sha256)
    shutil.copytree(bundles[2], staging, dirs_exist_ok=True)
    (staging / INDEX_FILE).write_bytes((staging / INDEX_FILE).read_bytes()[:100])
    (staging / "items.sqlite.part").write_bytes(b"partial")
    point_latest(s3, s3_bucket, PREFIX, pointer)

    proxy = SwitchableProxy(s3.meta.endpoint_url)
    proxy.set_up(False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        with device_nucleus() as nucleus, running_device(nucleus, sync_settings(s3_bucket)) as device:
            assert device.component.bundle.version == 1  # before any network call: from disk
            first = device.status.next()
            assert first["index_version"] == 1 and first["index_source"] == "s3"
            offline = device.status.next(timeout=30, where=lambda m: m.get("online") is False)
            assert offline["index_version"] == 1
            proxy.set_up(True)
            version_in_status(device, 2)
            assert device.component.sync.store.files_reused >= 3  # the staged files that matched
    finally:
        proxy.close()
    assert not list((work_dir / "indexes").rglob("*.part"))


def test_an_iot_core_notification_triggers_a_check_before_the_poll_interval(work_dir, s3, s3_bucket, bundles):
    publish(s3, s3_bucket, PREFIX, bundles[1])
    with device_nucleus() as nucleus, running_device(nucleus, sync_settings(s3_bucket)) as device:
        version_in_status(device, 1)  # the check at start; the next poll is an hour away
        publish(s3, s3_bucket, PREFIX, bundles[2])
        nucleus.iot_core.publish(
            messages.IOT_INDEX_UPDATED,
            messages.index_updated_message(
                index_version=2,
                manifest_sha256=manifest_digest(bundles[2]),
                item_count=8,
                model_fingerprint="",
                bucket=s3_bucket,
                prefix=PREFIX,
                latest_key=s3_layout.latest_key(PREFIX),
            ),
        )
        swapped = version_in_status(device, 2)
        assert swapped["items"] == 8 and "was 1" in swapped["detail"]


def test_rollback_in_s3_is_followed_with_the_kept_previous_version(work_dir, s3, s3_bucket, bundles):
    first = publish(s3, s3_bucket, PREFIX, bundles[1])
    with device_nucleus() as nucleus, running_device(nucleus, sync_settings(s3_bucket)) as device:
        version_in_status(device, 1)
        publish(s3, s3_bucket, PREFIX, bundles[2])
        nucleus.iot_core.publish(messages.IOT_INDEX_UPDATED, {"index_version": 2})
        version_in_status(device, 2)
        fetched = device.component.sync.store.files_fetched
        point_latest(s3, s3_bucket, PREFIX, first)  # rollback-index 1
        nucleus.iot_core.publish(messages.IOT_INDEX_UPDATED, {"index_version": 1})
        back = version_in_status(device, 1)
        assert "no download" in back["detail"] and device.component.sync.store.files_fetched == fetched
        answer = device.ask(device.component.bundle.index.reconstruct(0), "after-rollback")
        assert answer["index_version"] == 1 and answer["matches"][0]["item_id"].startswith("v1-")


def test_the_bundle_dir_seed_is_served_and_not_downloaded_again_when_latest_names_it(
    work_dir, s3, s3_bucket, bundles
):
    publish(s3, s3_bucket, PREFIX, bundles[1])
    settings = sync_settings(s3_bucket, bundle_dir=str(bundles[1]))
    with device_nucleus() as nucleus, running_device(nucleus, settings) as device:
        first = device.status.next()
        assert (first["index_version"], first["index_source"]) == (1, "bundle_dir")
        sync = device.component.sync
        wait_until(lambda: sync.checks >= 1 and sync.online, 30, "the first check")
        assert sync.store.files_fetched == 0 and sync.store.current_dir() is None
        publish(s3, s3_bucket, PREFIX, bundles[2])
        nucleus.iot_core.publish(messages.IOT_INDEX_UPDATED, {"index_version": 2})
        assert version_in_status(device, 2)["index_source"] == "s3"


def test_with_neither_a_bundle_nor_a_bucket_the_component_does_not_start(work_dir):
    from components.common.settings import SettingsError
    from components.local_search.__main__ import build
    from components.local_search.component import LocalSearchSettings

    with pytest.raises(SettingsError, match="bundle_dir: not set, and no index_bucket to sync from"):
        build(None, LocalSearchSettings())


def test_chunks_of_a_large_file_download_several_at_a_time_and_land_in_order(tmp_path):
    import hashlib
    import threading

    from components.common.chunks import ChunkList
    from components.local_search.held_files import CHUNK_DOWNLOADS, ChunkedFetcher

    data = np.random.default_rng(5).integers(0, 256, 4 << 20, dtype=np.uint8).tobytes()
    listing = ChunkList.of(data)
    assert len(listing.chunks) > 2 * CHUNK_DOWNLOADS
    objects, offset = {"file.chunks": listing.to_json()}, 0
    for sha, size in listing.chunks:
        objects[sha] = data[offset : offset + size]
        offset += size
    together = threading.Barrier(CHUNK_DOWNLOADS, timeout=30)  # broken if GETs run one at a time
    met = []

    def get(key):
        if key != "file.chunks" and not met:
            together.wait()
            met.append(True)
        return objects[key]

    target = tmp_path / "out" / "rerank-vectors.npy"
    downloaded = ChunkedFetcher(get, []).fetch("file.chunks", lambda sha: sha, target)
    assert met and target.read_bytes() == data and downloaded >= len(data)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == listing.sha256
