"""The on-disk side of index sync: versions, the CURRENT marker, staging and resume."""

import shutil
from pathlib import Path

import pytest

from components.common.bundle import INDEX_FILE, MANIFEST, manifest_digest, read_manifest
from components.common.errors import BundleError
from components.local_search.bundle_store import (
    BundleStore,
    ModelMismatch,
    check_model,
    inside,
    resolve_index_dir,
    version_name,
)
from tests.local_search.sync_helpers import make_bundle


@pytest.fixture(scope="module")
def bundles(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("store-bundles")
    return {v: make_bundle(tiny_model, root, v) for v in (1, 2, 3)}


def put(store: BundleStore, bundle: Path) -> Path:
    """A bundle as the sync leaves it: copied through staging, committed."""
    staging = store.staging_for(read_manifest(bundle)["index_version"], manifest_digest(bundle))
    shutil.rmtree(staging)
    shutil.copytree(bundle, staging)
    return store.commit(staging, keep={p.relative_to(staging).as_posix() for p in staging.rglob("*")})


def copier(bundle: Path, calls: list, damage: dict | None = None):
    """A `fetch` that copies from a local bundle (optionally damaging some files each time)."""

    def fetch(rel: str, sha256: str, size, target: Path) -> None:
        calls.append(rel)
        data = bytearray((bundle / rel).read_bytes())
        if rel in (damage or {}):
            data[0] ^= 0xFF
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bytes(data))

    return fetch


def stage(store: BundleStore, bundle: Path, fetch, check=lambda manifest: None) -> Path:
    manifest = read_manifest(bundle)
    return store.stage(
        manifest["index_version"], manifest_digest(bundle), "test://bundle/", fetch=fetch, check=check
    )


def test_current_and_previous_are_kept_and_older_versions_pruned(tmp_path, bundles):
    store = BundleStore(tmp_path / "indexes")
    assert store.current_dir() is None and store.open_current() is None
    paths = []
    for v in (1, 2):
        paths.append(put(store, bundles[v]))
        store.set_current(paths[-1])
    assert store.marker() == {"current": paths[1].name, "previous": paths[0].name}
    third = put(store, bundles[3])
    store.set_current(third)
    assert sorted(p.name for p in store.versions.iterdir()) == sorted([paths[1].name, third.name])
    assert not list(store.root.glob(".*.tmp"))  # the marker is written aside and renamed over
    store.set_current(paths[1])  # rollback to the kept previous: the two swap roles
    assert store.marker() == {"current": paths[1].name, "previous": third.name}


def test_the_current_bundle_reopens_after_a_restart_and_a_damaged_one_falls_back(tmp_path, bundles):
    store = BundleStore(tmp_path / "indexes")
    for v in (1, 2):
        store.set_current(put(store, bundles[v]))
    reopened = BundleStore(tmp_path / "indexes").open_current()
    assert reopened.version == 2
    reopened.close()
    index = store.current_dir() / INDEX_FILE
    index.write_bytes(index.read_bytes()[:-10])  # disk damage after the fact
    fallback = BundleStore(tmp_path / "indexes").open_current()
    assert fallback.version == 1 and store.marker() == {"current": fallback.path.name, "previous": None}
    fallback.close()


def test_a_download_resumes_reusing_staged_files_that_match(tmp_path, bundles):
    store = BundleStore(tmp_path / "indexes")
    bundle = bundles[2]
    staging = store.staging_for(2, manifest_digest(bundle))
    shutil.copytree(bundle, staging, dirs_exist_ok=True)  # as an interrupted download left it:
    (staging / INDEX_FILE).write_bytes(b"half")  # one file cut short,
    (staging / "thumbnails" / "0.jpg").unlink()  # one missing,
    (staging / "index.faiss.part").write_bytes(b"x")  # a temporary file
    stale = store.staging / version_name(1, "0" * 64)
    stale.mkdir()  # and another version's leftovers
    calls = []
    path = stage(store, bundle, copier(bundle, calls))
    assert sorted(calls) == sorted([INDEX_FILE, "thumbnails/0.jpg"])
    assert store.files_reused == len(read_manifest(bundle)["files"]) + 1 - 2  # the manifest too
    assert path == store.versions / version_name(2, manifest_digest(bundle))
    assert not (path / "index.faiss.part").exists() and not stale.exists() and not staging.exists()
    fetched = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert fetched == sorted([*read_manifest(bundle)["files"], MANIFEST])  # what devices get


def test_a_file_that_stays_wrong_after_a_second_fetch_refuses_the_bundle(tmp_path, bundles):
    store = BundleStore(tmp_path / "indexes")
    calls = []
    with pytest.raises(
        BundleError, match=r"test://bundle/thumbnails/1\.jpg: sha256 does not match the manifest"
    ):
        stage(store, bundles[1], copier(bundles[1], calls, damage={"thumbnails/1.jpg"}))
    assert calls.count("thumbnails/1.jpg") == 2
    assert not store.versions.exists() or not any(store.versions.iterdir())


def test_the_model_is_checked_before_anything_big_is_fetched(tmp_path, bundles):
    store = BundleStore(tmp_path / "indexes")
    calls = []
    with pytest.raises(
        ModelMismatch, match=r"built for model \w{12}, but the featurizer runs model ffffffffffff"
    ):
        stage(store, bundles[1], copier(bundles[1], calls), check=lambda m: check_model(m, "f" * 64))
    assert calls == [MANIFEST]


def test_refused_bundles_are_remembered_across_restarts(tmp_path):
    store = BundleStore(tmp_path / "indexes")
    store.reject("a" * 64, 4, "index.faiss: sha256 does not match")
    store.reject("b" * 64, 5, "other model", model_mismatch=True, expected_fingerprint="c" * 64)
    again = BundleStore(tmp_path / "indexes")
    assert again.rejection("a" * 64)["index_version"] == 4
    assert again.rejection("b" * 64)["expected_fingerprint"] == "c" * 64
    assert again.rejection("d" * 64) is None


def test_manifest_paths_cannot_leave_the_bundle(tmp_path):
    assert inside(tmp_path, "thumbnails/1.jpg") == tmp_path / "thumbnails" / "1.jpg"
    for bad in ("../escape", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(BundleError, match="unsafe path"):
            inside(tmp_path, bad)


def test_a_relative_index_dir_is_under_the_work_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("VISUAL_SEARCH_WORK_DIR", str(tmp_path))
    assert resolve_index_dir("indexes") == tmp_path / "indexes"
    assert resolve_index_dir("/var/x") == Path("/var/x")
    monkeypatch.delenv("VISUAL_SEARCH_WORK_DIR")
    monkeypatch.chdir(tmp_path)
    assert resolve_index_dir("indexes") == tmp_path / "indexes"
