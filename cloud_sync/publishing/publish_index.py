"""`publish-index`: upload a verified bundle to S3, check it there, then move LATEST.

Order matters because devices poll LATEST: every data file is uploaded and checked against
the manifest (size and sha256) first, then manifest.json, then the pointer. A version is
immutable once its manifest is in S3, so a device that has downloaded version N never finds
different bytes under N later.

Data files go to content-addressed keys (`indexes/objects/<sha256[:2]>/<sha256>`, see
s3_layout.py), shared by every version: a file that an earlier version already put there is
found by its checksum and not uploaded again, so a one-item change uploads a few objects.

Each object is sent with an S3 SHA-256 checksum (S3 rejects bytes damaged in transit) and the
manifest's sha256 as `x-amz-meta-sha256`; HEAD with checksums then proves the stored object
is the one the manifest lists, without downloading it again. An object that fails that check
is deleted, so every object under a content-addressed key passed it: one listing of the
objects then tells which a version still needs (no HEAD per thumbnail of a 1M-item catalog).

Two operators may publish at once: LATEST moves only if it is still what the version check
read (a conditional write, see index_versions.py). When it moved meanwhile, the new pointer is
read and checked again: a newer version there wins (this publish fails, saying so; its version
stays uploaded for rollback-index), an older one is replaced.
"""

from __future__ import annotations

import hashlib
import mimetypes
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from boto3.s3.transfer import TransferConfig

from cloud_sync.aws import aws_errors, get_bytes, list_objects, s3_url
from cloud_sync.publishing.chunked_upload import put_chunked, stored_object_matches
from cloud_sync.publishing.index_versions import (
    PointerMoved,
    latest_etag,
    read_pointer_and_etag,
    write_pointer,
)
from components.common.bundle import MANIFEST, manifest_digest, verify_bundle
from components.common.chunks import ChunkList, is_chunked, mapped
from components.common.errors import BundleError
from components.common.s3_layout import (
    CHUNK_LIST_SUFFIX,
    Pointer,
    bundle_key,
    chunk_list_key,
    latest_key,
    object_key,
    objects_prefix,
    version_prefix,
)

UPLOAD_WORKERS = 8
# Objects below this go up in one PUT, so S3's ChecksumSHA256 is the sha256 of the whole file
# (multipart objects get a checksum of part checksums, checked by downloading instead).
SINGLE_PUT_LIMIT = 4 * 1024**3
POINTER_ATTEMPTS = 5  # conditional moves of LATEST tried while other publishes keep moving it
TRANSFER = TransferConfig(multipart_threshold=SINGLE_PUT_LIMIT, use_threads=False)


@dataclass(frozen=True)
class Progress:
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


@dataclass
class PublishResult:
    pointer: Pointer  # what LATEST names after the publish
    previous: Pointer | None  # what it named before
    moved_latest: bool
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in S3 with the right checksum
    bytes_uploaded: int = 0


def publish_bundle(
    bundle_dir: str | Path,
    bucket: str,
    prefix: str,
    *,
    s3,
    force: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> PublishResult:
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir)
    version, digest = int(manifest["index_version"]), manifest_digest(bundle_dir)
    with aws_errors(s3_url(bucket, version_prefix(prefix, version))):
        previous, etag = _pointer_or_none(s3, bucket, prefix, force)
        _check_version_is_publishable(s3, bucket, prefix, version, digest, previous, force)
        # reuse/ files (for `build-index --previous s3://...`) go up too, never chunked
        files = {**manifest.get("reuse", {}), **manifest["files"]}
        files[MANIFEST] = {"size": (bundle_dir / MANIFEST).stat().st_size, "sha256": digest}
        uploader = _Uploader(s3, bucket, prefix, bundle_dir, files, on_progress)
        uploader.held = {o["Key"]: o["Size"] for o in list_objects(s3, bucket, objects_prefix(prefix))}
        uploader.run(_data_objects(prefix, files, chunkable=set(manifest["files"])))
        # last: a manifest in S3 means every file it lists is there
        uploader.run({bundle_key(prefix, version, MANIFEST): [MANIFEST]})
        pointer = Pointer(
            index_version=version,
            manifest_sha256=digest,
            published_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            item_count=int(manifest["item_count"]),
            model_fingerprint=str(manifest["model"].get("fingerprint", "")),
        )
        previous, unchanged = _move_latest(s3, bucket, prefix, pointer, previous, etag, force)
    return PublishResult(
        pointer=previous if unchanged else pointer,
        previous=previous,
        moved_latest=not unchanged,
        uploaded=sorted(uploader.uploaded),
        skipped=sorted(uploader.skipped),
        bytes_uploaded=uploader.bytes_uploaded,
    )


def _pointer_or_none(s3, bucket: str, prefix: str, force: bool) -> tuple[Pointer | None, str | None]:
    """LATEST and its ETag; an unreadable one is (None, its ETag) with --force, else refused."""
    try:
        return read_pointer_and_etag(s3, bucket, prefix)
    except BundleError as exc:
        if force:
            return None, latest_etag(s3, bucket, prefix)
        raise BundleError(f"{exc}; pass --force to replace it") from None


def _move_latest(
    s3, bucket: str, prefix: str, pointer: Pointer, previous: Pointer | None, etag: str | None, force: bool
) -> tuple[Pointer | None, bool]:
    """Point LATEST at `pointer` unless it already names it: (what it named before, unchanged).
    A pointer moved by someone else since it was read is read and judged again."""
    version = pointer.index_version
    for _ in range(POINTER_ATTEMPTS):
        if previous is not None and (previous.index_version, previous.manifest_sha256) == (
            version,
            pointer.manifest_sha256,
        ):
            return previous, True
        try:
            write_pointer(s3, bucket, prefix, pointer, etag=etag)
            return previous, False
        except PointerMoved:
            previous, etag = _pointer_or_none(s3, bucket, prefix, force)
        if previous is not None and previous.index_version > version and not force:
            raise BundleError(
                f"{s3_url(bucket, latest_key(prefix))}: LATEST changed while this publish ran: it now names "
                f"version {previous.index_version}, newer than this bundle's {version}; "
                f"version {version} is uploaded but LATEST was left on {previous.index_version} "
                f"(rollback-index {version} moves it, if that is what you want)"
            )
    raise BundleError(
        f"{s3_url(bucket, latest_key(prefix))}: LATEST kept changing while this publish ran "
        f"({POINTER_ATTEMPTS} tries); version {version} is uploaded, LATEST was not moved: "
        f"run publish-index again"
    )


def _check_version_is_publishable(
    s3, bucket: str, prefix: str, version: int, digest: str, previous: Pointer | None, force: bool
) -> None:
    in_s3 = get_bytes(s3, bucket, bundle_key(prefix, version, MANIFEST))
    other = hashlib.sha256(in_s3).hexdigest() if in_s3 is not None else None
    if other is None and previous is not None and previous.index_version == version:
        other = previous.manifest_sha256
    if other is not None and other != digest:
        raise BundleError(
            f"version {version} is already published in {s3_url(bucket, version_prefix(prefix, version))} "
            f"with a different manifest (sha256 {other[:12]}, this bundle {digest[:12]}); versions are "
            f"immutable because devices cache them by number: rebuild with a new --index-version"
        )
    if previous is not None and version < previous.index_version and not force:
        raise BundleError(
            f"{s3_url(bucket, latest_key(prefix))} names version {previous.index_version}, newer than "
            f"this bundle's {version}; devices would go back to an older index. Pass --force to publish "
            f"it anyway (or rollback-index {version} if it is already in S3)"
        )


def _data_objects(prefix: str, files: dict, chunkable: set[str]) -> dict[str, list[str]]:
    """{object key: the bundle files with those bytes} (identical files share one object; a
    large file that devices download is stored as chunks, under its chunk list's key)."""
    objects: dict[str, list[str]] = {}
    for rel, entry in files.items():
        if rel == MANIFEST:
            continue
        chunked = rel in chunkable and is_chunked(entry["size"])
        key = (chunk_list_key if chunked else object_key)(prefix, entry["sha256"])
        objects.setdefault(key, []).append(rel)
    return objects


class _Uploader:
    """Puts the objects of one version that S3 does not already hold, each checked after upload."""

    def __init__(self, s3, bucket, prefix, bundle_dir: Path, files: dict, on_progress):
        self.s3, self.bucket, self.prefix = s3, bucket, prefix
        self.bundle_dir, self.files, self.on_progress = bundle_dir, files, on_progress
        self.uploaded: list[str] = []
        self.skipped: list[str] = []
        self._lock = threading.Lock()
        self._done = self._bytes_done = 0
        self.bytes_uploaded = 0
        self.held: dict[str, int] = {}  # content-addressed key -> size, already in S3
        self._bytes_total = sum(entry["size"] for entry in files.values())

    def run(self, objects: dict[str, list[str]]) -> None:
        pool = ThreadPoolExecutor(UPLOAD_WORKERS)
        try:
            futures = [pool.submit(self._put_if_needed, key, rels) for key, rels in objects.items()]
            for future in as_completed(futures):
                future.result()  # the first failure stops the publish; LATEST is not moved
        finally:
            pool.shutdown(cancel_futures=True)

    def _put_if_needed(self, key: str, rels: list[str]) -> None:
        rel, entry = rels[0], self.files[rels[0]]
        if key in self.held and (key.endswith(CHUNK_LIST_SUFFIX) or self.held[key] == entry["size"]):
            self._files_done(rels, skipped=True)
            return
        if key.endswith(CHUNK_LIST_SUFFIX):
            self._put_chunked(key, rels)
            return
        if rel == MANIFEST and stored_object_matches(self.s3, self.bucket, key, entry):
            self._files_done(rels, skipped=True)
            return
        path = self.bundle_dir / rel
        extra = {
            "ChecksumAlgorithm": "SHA256",
            "Metadata": {"sha256": entry["sha256"]},
            "ContentType": mimetypes.guess_type(rel)[0] or "application/octet-stream",
        }
        try:
            self.s3.upload_file(
                str(path), self.bucket, key, ExtraArgs=extra, Config=TRANSFER, Callback=self._add_bytes
            )
        except OSError as exc:
            raise BundleError(
                f"{path}: cannot read it ({exc.strerror or exc}); nothing was published " f"as LATEST"
            ) from None
        if not stored_object_matches(self.s3, self.bucket, key, entry):
            self.s3.delete_object(Bucket=self.bucket, Key=key)
            raise BundleError(
                f"{s3_url(self.bucket, key)}: the uploaded object does not match the "
                f"manifest's size and sha256 (did {path} change during the upload?); "
                f"LATEST was not moved"
            )
        self._files_done(rels, skipped=False)

    def _put_chunked(self, key: str, rels: list[str]) -> None:
        path, entry = self.bundle_dir / rels[0], self.files[rels[0]]
        try:
            with mapped(path) as data:
                listing = ChunkList.of(data)
                if listing.sha256 != entry["sha256"]:
                    raise BundleError(f"{path}: changed since the bundle was checked; LATEST was not moved")
                sent = put_chunked(self.s3, self.bucket, self.prefix, key, data, listing, self.held)
        except OSError as exc:
            raise BundleError(
                f"{path}: cannot read it ({exc.strerror or exc}); LATEST was not moved"
            ) from None
        with self._lock:
            self.bytes_uploaded += sent
        self._files_done(rels, skipped=False, counted=0)

    def _add_bytes(self, count: int) -> None:
        with self._lock:
            self.bytes_uploaded += count
            self._bytes_done += count
            self._report()

    def _files_done(self, rels: list[str], skipped: bool, counted: int = 1) -> None:
        """`rels` are in S3 now; their bytes count as done, but for the `counted` first
        that were counted while they went up."""
        with self._lock:
            (self.skipped if skipped else self.uploaded).extend(rels)
            self._done += len(rels)
            self._bytes_done += sum(self.files[rel]["size"] for rel in rels[0 if skipped else counted :])
            self._report()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(self._done, len(self.files), self._bytes_done, self._bytes_total))
