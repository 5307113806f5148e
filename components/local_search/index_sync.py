"""Keeps the served index in step with S3: polls LATEST, downloads, verifies, swaps.

One background thread. It checks `<prefix>/indexes/LATEST` at start, every poll interval
(a conditional GET: If-None-Match with the last ETag, so an unchanged pointer costs one
304) and at once when `trigger()` is called (the IoT Core index-updated message). A new
version is downloaded into the store's staging directory, every file checked against the
manifest, the whole bundle verified and loaded, and only then swapped in. Files are stored
in S3 under their sha256 (s3_layout.py): those the device already holds, in its kept bundles
or the one it serves, are linked from disk instead of downloaded, and checked all the same.
S3 failures back off exponentially with jitter while the device keeps serving what it has.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from functools import partial
from pathlib import Path
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3Error

from components.common import s3_layout
from components.common.backoff import Backoff
from components.common.bundle import MANIFEST, manifest_digest, read_manifest
from components.common.chunks import is_chunked
from components.common.errors import BundleError
from components.local_search.bundle_store import BundleStore, ModelMismatch, check_model
from components.local_search.held_files import ChunkedFetcher
from components.local_search.search import IndexBundle
from components.local_search.serving import ServingIndex

log = logging.getLogger("local_search")
S3_ERRORS = (BotoCoreError, ClientError, Urllib3Error)


class IndexSync:
    """`report(state, detail)` is called when the served index changes ("running") or a
    bundle is refused ("error"); `expected_fingerprint()` names the model bundles must fit."""

    def __init__(
        self,
        store: BundleStore,
        serving: ServingIndex,
        *,
        bucket: str,
        prefix: str,
        poll_interval_s: float,
        expected_fingerprint: Callable[[], str | None],
        report: Callable[[str, str], None],
        seed_dir: str | Path | None = None,
        backoff: Backoff | None = None,
    ):
        self.store, self.serving, self.bucket, self.prefix = store, serving, bucket, prefix
        self.poll_interval_s = poll_interval_s
        self.backoff = backoff or Backoff(base_s=2.0, cap_s=300.0)  # S3 failures in a row: 2 s ... 5 min
        self._expected, self._report = expected_fingerprint, report
        self._seed = Path(seed_dir) if seed_dir else None
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="index-sync", daemon=True)
        self._client = None
        self._etag: str | None = None  # of the last LATEST fully dealt with
        self._recheck = False  # the next check ignores the ETag
        self.online: bool | None = None
        self.last_sync: float | None = None  # time of the last S3 call that succeeded
        self.last_error = ""
        self.refusal = ""  # why the bundle LATEST names is not used, while it names it
        self.retry_in_s: float | None = None  # while failing: the wait before the next try
        self.checks = 0

    @property
    def failures(self) -> int:
        """S3 or disk failures in a row (0 once a check succeeds)."""
        return self.backoff.failures

    @property
    def source(self) -> str:
        return f"s3://{self.bucket}/{s3_layout.latest_key(self.prefix)}"

    def start(self) -> None:
        self.backoff.reset()  # a Backoff handed in may have counted failures of an earlier run
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def trigger(self, recheck: bool = False) -> None:
        """Check LATEST now (e.g. IoT Core said a new index is out); `recheck` ignores the ETag."""
        if recheck:
            self._recheck = True
        self._wake.set()

    def on_index_updated(self, payload: bytes) -> None:
        """The IoT Core index-updated message: check now, unless it names another bucket/prefix."""
        try:
            note = json.loads(payload)
        except ValueError:
            note = None
        note, mine = note if isinstance(note, dict) else {}, (self.bucket, s3_layout.latest_key(self.prefix))
        if note.get("bucket") and (note["bucket"], note.get("latest_key", mine[1])) != mine:
            log.info("index sync: update for s3://%s/%s is not ours", note["bucket"], note.get("latest_key"))
            return
        served = self.serving.bundle
        if served is not None and note.get("manifest_sha256") == _digest(served):
            return  # the version served now
        log.info("index sync: version %s announced; checking %s", note.get("index_version", "?"), self.source)
        self.trigger()

    def status_fields(self) -> dict:
        return {
            "online": self.online,
            "last_sync": self.last_sync,
            "last_sync_error": self.last_error or self.refusal or None,
        }

    # --- the loop ------------------------------------------------------------------------
    def _run(self) -> None:
        delay = 0.0
        while not self._stop.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                ok = self.check_once()
            except Exception as exc:  # a bug must not end the sync: log it, back off, try again
                log.exception("index sync: unexpected error")
                self.last_error, ok = f"{type(exc).__name__}: {exc}", False
            if ok:
                self.backoff.reset()
                self.retry_in_s, delay = None, self.poll_interval_s
            else:
                delay = self.retry_in_s = self.backoff.next_delay()
                log.warning(
                    "index sync: %s; retrying in %.1f s (failure %d in a row)",
                    self.last_error,
                    delay,
                    self.failures,
                )

    def check_once(self) -> bool:
        """One look at LATEST (and whatever follows); False if S3 or the disk failed."""
        self.checks += 1
        try:
            found = self._fetch_pointer()
            if found is not None:
                self._follow(*found)
        except S3_ERRORS as exc:
            self.online = False
            self.last_error = f"S3: {type(exc).__name__}: {exc}"
            return False
        except OSError as exc:
            self.last_error = f"disk: {type(exc).__name__}: {exc}"
            return False
        except BundleError as exc:  # LATEST itself does not parse: wait until it changes
            self.last_error, self.refusal = "", str(exc)
            log.error("index sync: %s", exc)
            self._report("error", str(exc))
        else:
            self.last_error = ""
        return True

    def _s3_ok(self) -> None:
        self.online, self.last_sync = True, time.time()

    def _s3(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3",
                config=Config(
                    connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"}
                ),
            )
        return self._client

    def _fetch_pointer(self) -> tuple[s3_layout.Pointer, str] | None:
        key = s3_layout.latest_key(self.prefix)
        conditional = {"IfNoneMatch": self._etag} if self._etag and not self._recheck else {}
        self._recheck = False
        try:
            response = self._s3().get_object(Bucket=self.bucket, Key=key, **conditional)
            body = response["Body"].read()
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 304:
                self._s3_ok()
                return None
            if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                self._s3_ok()
                log.info("index sync: nothing published yet at %s", self.source)
                return None
            raise
        self._s3_ok()
        etag = response.get("ETag", "")
        try:
            return s3_layout.Pointer.from_json(body, where=self.source), etag
        except BundleError:
            self._etag = etag  # a broken pointer is reported once, not at every poll
            raise

    # --- following LATEST ----------------------------------------------------------------
    def _follow(self, pointer: s3_layout.Pointer, etag: str) -> None:
        version, digest = pointer.index_version, pointer.manifest_sha256
        served = self.serving.bundle
        if served is not None and served.version == version and _digest(served) == digest:
            self._etag, self.refusal = etag, ""
            return
        expected = self._expected()
        refused = self.store.rejection(digest)
        if refused and not (
            refused.get("model_mismatch") and refused.get("expected_fingerprint") != expected
        ):
            log.info(
                "index sync: LATEST names index version %s, refused before (%s)", version, refused["reason"]
            )
            self._etag = etag
            return
        fresh = None
        try:
            bundle = self._open_kept(pointer, expected)
            if bundle is None:
                fresh = self._download(pointer, expected)
                bundle = IndexBundle.open(fresh, expected)
        except (*S3_ERRORS, OSError):
            raise  # S3 or the disk failed: back off and try again
        except Exception as exc:  # checksums, model, or an index that does not load: refused
            if not isinstance(exc, BundleError):
                exc = BundleError(f"index version {version} does not load ({type(exc).__name__}: {exc})")
            self._refuse(pointer, exc, expected, fresh)
            self._etag = etag
            return
        if bundle.path.parent == self.store.versions:
            self.store.set_current(bundle.path)
        old = self.serving.swap(bundle)
        self._etag, self.refusal = etag, ""
        how = "downloaded" if fresh else "kept on the device, no download"
        detail = (
            f"now serving index version {version} ({len(bundle)} items, {how}); "
            f"was {old.version if old is not None else 'none'}"
        )
        log.info("index sync: %s", detail)
        self._report("running", detail)

    def _open_kept(self, pointer: s3_layout.Pointer, expected: str | None) -> IndexBundle | None:
        """The bundle LATEST names, if the device already has it (the kept previous version,
        or the bundle_dir seed); None if it must be downloaded."""
        path = self.store.find(pointer.index_version, pointer.manifest_sha256)
        if path is None and self.store.current_dir() is None:
            path = self._seed_if(pointer.manifest_sha256)
        if path is None:
            return None
        try:
            check_model(read_manifest(path), expected)
            return IndexBundle.open(path, expected)
        except ModelMismatch:
            raise
        except BundleError as exc:
            log.error("index sync: kept copy %s does not verify (%s); downloading it again", path, exc)
            if path.parent == self.store.versions:
                self.store.remove(path)
            return None

    def _refuse(self, pointer, exc: BundleError, expected: str | None, fresh_path: Path | None) -> None:
        mismatch = isinstance(exc, ModelMismatch)
        detail = f"refused index version {pointer.index_version} from S3: {exc}; still serving " + _served(
            self.serving
        )
        log.error("index sync: %s", detail)
        self.store.reject(
            pointer.manifest_sha256,
            pointer.index_version,
            str(exc),
            model_mismatch=mismatch,
            expected_fingerprint=expected,
        )
        if fresh_path is not None:
            self.store.remove(fresh_path)
        if not mismatch:
            self.store.discard_staging()
        self.refusal = detail
        self._report("error", detail)

    def _seed_if(self, digest: str) -> Path | None:
        """The bundle_dir seed, when LATEST names exactly it (no download needed)."""
        try:
            return self._seed if self._seed and manifest_digest(self._seed) == digest else None
        except OSError:
            return None

    def _download(self, pointer: s3_layout.Pointer, expected: str | None) -> Path:
        """Stage the bundle LATEST names, taking every file (and every chunk of a large file)
        the device already holds, in its kept bundles or the one served, from disk."""
        version, layout, prefix = pointer.index_version, pointer.layout, self.prefix
        where = f"s3://{self.bucket}/{s3_layout.version_prefix(prefix, version)}"
        served = self.serving.bundle
        kept = [self.store.current_dir(), self.store.previous_dir(), served.path if served else None]
        kept = [path for path in kept if path is not None]
        chunked = ChunkedFetcher(self._get_bytes, kept)

        def fetch(rel: str, sha256: str, size: int | None, target: Path) -> int | None:
            if rel == MANIFEST:
                return self._get(s3_layout.bundle_key(prefix, version, rel), target)
            if layout == s3_layout.CONTENT_LAYOUT and size is not None and is_chunked(size):
                chunk_key = partial(s3_layout.object_key, prefix)
                return chunked.fetch(s3_layout.chunk_list_key(prefix, sha256), chunk_key, target)
            return self._get(s3_layout.file_key(prefix, version, rel, sha256, layout), target)

        return self.store.stage(
            version,
            pointer.manifest_sha256,
            where,
            fetch=fetch,
            check=lambda manifest: check_model(manifest, expected),
            reuse_from=kept,
        )

    def _get_bytes(self, key: str) -> bytes:
        data = self._s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        self._s3_ok()
        return data

    def _get(self, key: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        response = self._s3().get_object(Bucket=self.bucket, Key=key)
        with open(part, "wb") as handle:
            for chunk in response["Body"].iter_chunks(1 << 20):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        self._s3_ok()
        os.replace(part, target)


def _digest(bundle: IndexBundle) -> str:
    try:
        return manifest_digest(bundle.path)
    except OSError:
        return ""


def _served(serving: ServingIndex) -> str:
    bundle = serving.bundle
    return f"index version {bundle.version}" if bundle is not None else "nothing (no index yet)"
