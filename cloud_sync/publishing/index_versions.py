"""The index versions in S3: the LATEST pointer, listing, rollback, and telling devices.

A version counts as complete when its manifest.json is in S3 and every file the manifest
lists is there with the listed size (publish-index writes the manifest last, so a missing
manifest means an upload that stopped half-way): under its content-addressed key, or, for a
version published before files were content-addressed, under the version's own prefix
(s3_layout.layout_of tells which from the keys there).

LATEST only moves by a conditional write (S3 `If-Match` on the ETag read when the move was
decided, `If-None-Match: *` when there was none): two operators publishing or rolling back at
once cannot silently overwrite each other's pointer; the one that wrote second is told
(`PointerMoved`) and reads the pointer again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from botocore.exceptions import ClientError

from cloud_sync.aws import aws_errors, client, get_bytes, is_not_found, list_objects, s3_url
from components.common import messages
from components.common.bundle import MANIFEST
from components.common.chunks import is_chunked
from components.common.errors import BundleError
from components.common.messages import IOT_INDEX_UPDATED
from components.common.s3_layout import (
    CONTENT_LAYOUT,
    OBJECTS,
    Pointer,
    bundle_key,
    chunk_list_key,
    indexes_prefix,
    latest_key,
    layout_of,
    object_key,
    objects_prefix,
    version_prefix,
)


@dataclass
class IndexVersion:
    index_version: int
    files: int  # files of the version (the manifest and those it lists, or the keys found)
    size: int  # their bytes (objects shared with other versions count in each)
    complete: bool
    layout: str = CONTENT_LAYOUT
    problem: str = ""  # why it is not complete
    item_count: int | None = None
    model_fingerprint: str = ""
    created_at: str = ""
    manifest_sha256: str = ""
    latest: bool = False


@dataclass
class IndexListing:
    versions: list[IndexVersion]
    pointer: Pointer | None
    pointer_problem: str = ""  # LATEST exists but cannot be read


# S3 refuses a conditional write whose condition no longer holds (412), or that raced another
# conditional write of the same key (409); If-Match on a key deleted meanwhile is a 404.
_MOVED = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404")


class PointerMoved(BundleError):
    """LATEST is no longer what was read: another publish or rollback moved it meanwhile."""


def read_pointer(s3, bucket: str, prefix: str) -> Pointer | None:
    """What LATEST names; None when there is none yet; BundleError when it is unreadable."""
    return read_pointer_and_etag(s3, bucket, prefix)[0]


def read_pointer_and_etag(s3, bucket: str, prefix: str) -> tuple[Pointer | None, str | None]:
    """What LATEST names and its ETag, for a later `write_pointer` ((None, None): none yet).
    BundleError when it is unreadable (`latest_etag` still gives the ETag to replace it)."""
    raw, etag = _get_latest(s3, bucket, prefix)
    return (None if raw is None else Pointer.from_json(raw, where=s3_url(bucket, latest_key(prefix)))), etag


def latest_etag(s3, bucket: str, prefix: str) -> str | None:
    return _get_latest(s3, bucket, prefix)[1]


def _get_latest(s3, bucket: str, prefix: str) -> tuple[bytes | None, str | None]:
    try:
        response = s3.get_object(Bucket=bucket, Key=latest_key(prefix))
    except ClientError as exc:
        if is_not_found(exc):
            return None, None
        raise
    return response["Body"].read(), response["ETag"]


def write_pointer(s3, bucket: str, prefix: str, pointer: Pointer, *, etag: str | None) -> None:
    """Point LATEST at `pointer` if it is still the object read with ETag `etag` (None: if
    there is still none). PointerMoved when another writer got there first."""
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        s3.put_object(
            Bucket=bucket,
            Key=latest_key(prefix),
            Body=pointer.to_json(),
            ContentType="application/json",
            **condition,
        )
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in _MOVED:
            raise PointerMoved(f"{s3_url(bucket, latest_key(prefix))} changed since it was read") from None
        raise


def list_indexes(bucket: str, prefix: str, *, s3) -> IndexListing:
    with aws_errors(s3_url(bucket, indexes_prefix(prefix))):
        try:
            pointer, pointer_problem = read_pointer(s3, bucket, prefix), ""
        except BundleError as exc:
            pointer, pointer_problem = None, str(exc)
        sizes_by_version: dict[int, dict[str, int]] = {}
        objects: dict[str, int] = {}
        root = indexes_prefix(prefix)
        for obj in list_objects(s3, bucket, root):
            key = obj["Key"]
            head, _, rel = key[len(root) :].partition("/")
            if head.isdigit() and rel:
                sizes_by_version.setdefault(int(head), {})[rel] = obj["Size"]
            elif head == OBJECTS:
                objects[key] = obj["Size"]
        versions = [
            _describe(s3, bucket, prefix, version, sizes, objects)
            for version, sizes in sorted(sizes_by_version.items())
        ]
    for version in versions:
        version.latest = pointer is not None and version.index_version == pointer.index_version
    return IndexListing(versions, pointer, pointer_problem)


def _describe(
    s3, bucket: str, prefix: str, version: int, sizes: dict[str, int], objects: dict[str, int]
) -> IndexVersion:
    described = IndexVersion(
        index_version=version,
        files=len(sizes),
        size=sum(sizes.values()),
        complete=False,
        layout=layout_of(set(sizes)),
    )
    try:
        raw, manifest = remote_manifest(s3, bucket, prefix, version)
        _check_complete(manifest, sizes, objects, bucket, prefix, version)
    except BundleError as exc:
        described.problem = str(exc)
        return described
    if described.layout == CONTENT_LAYOUT:
        described.files = len(manifest["files"]) + 1
        described.size = len(raw) + sum(entry["size"] for entry in manifest["files"].values())
    described.complete = True
    described.item_count = manifest.get("item_count")
    described.model_fingerprint = str(manifest.get("model", {}).get("fingerprint", ""))
    described.created_at = str(manifest.get("created_at", ""))
    described.manifest_sha256 = hashlib.sha256(raw).hexdigest()
    return described


def remote_manifest(s3, bucket: str, prefix: str, version: int) -> tuple[bytes, dict]:
    where = s3_url(bucket, bundle_key(prefix, version, MANIFEST))
    raw = get_bytes(s3, bucket, bundle_key(prefix, version, MANIFEST))
    if raw is None:
        raise BundleError(f"{where}: missing (the upload of version {version} did not finish)")
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{where}: not an index manifest (no file list)")
    if manifest.get("index_version") != version:
        raise BundleError(
            f"{where}: says index_version {manifest.get('index_version')!r}, "
            f"but is stored under version {version}"
        )
    return raw, manifest


def _check_complete(
    manifest: dict, sizes: dict[str, int], objects: dict[str, int], bucket: str, prefix: str, version: int
) -> None:
    """Every listed file is stored with its size: under the version prefix (`sizes`, keys
    relative to it) or as a content-addressed object (`objects`, full keys; a large file's
    chunk list, which publish-index puts after its chunks)."""
    layout = layout_of(set(sizes))
    wrong = []
    for rel, entry in manifest["files"].items():
        if layout != CONTENT_LAYOUT:
            present = sizes.get(rel) == entry.get("size")
        elif not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("size"), int):
            present = False
        elif is_chunked(entry["size"]):
            present = chunk_list_key(prefix, entry["sha256"]) in objects
        else:
            present = objects.get(object_key(prefix, entry["sha256"])) == entry["size"]
        if not present:
            wrong.append(rel)
    if wrong:
        shown = ", ".join(wrong[:3]) + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else "")
        raise BundleError(
            f"version {version} is incomplete in {s3_url(bucket, version_prefix(prefix, version))}: "
            f"{len(wrong)} file(s) missing or of the wrong size ({shown})"
        )


@dataclass
class RollbackResult:
    pointer: Pointer
    previous: Pointer | None
    moved_latest: bool


def rollback_index(bucket: str, prefix: str, version: int, *, s3) -> RollbackResult:
    """Point LATEST at a version already in S3, after checking that it is complete."""
    with aws_errors(s3_url(bucket, version_prefix(prefix, version))):
        try:
            previous, etag = read_pointer_and_etag(s3, bucket, prefix)
        except BundleError:
            # an unreadable pointer is what a rollback repairs
            previous, etag = None, latest_etag(s3, bucket, prefix)
        where = version_prefix(prefix, version)
        sizes = {obj["Key"][len(where) :]: obj["Size"] for obj in list_objects(s3, bucket, where)}
        if not sizes:
            raise BundleError(
                f"version {version} is not in {s3_url(bucket, where)}; "
                f"list-indexes shows the versions there"
            )
        raw, manifest = remote_manifest(s3, bucket, prefix, version)
        layout = layout_of(set(sizes))
        objects = {}
        if layout == CONTENT_LAYOUT:
            root = objects_prefix(prefix)
            objects = {obj["Key"]: obj["Size"] for obj in list_objects(s3, bucket, root)}
        _check_complete(manifest, sizes, objects, bucket, prefix, version)
        pointer = Pointer(
            index_version=version,
            manifest_sha256=hashlib.sha256(raw).hexdigest(),
            published_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            item_count=int(manifest.get("item_count") or 0),
            model_fingerprint=str(manifest.get("model", {}).get("fingerprint", "")),
            layout=layout,
        )
        unchanged = previous is not None and (previous.index_version, previous.manifest_sha256) == (
            pointer.index_version,
            pointer.manifest_sha256,
        )
        if not unchanged:
            try:
                write_pointer(s3, bucket, prefix, pointer, etag=etag)
            except PointerMoved:
                raise BundleError(
                    f"LATEST changed while this rollback ran ({_names(s3, bucket, prefix)}); "
                    f"nothing was changed: run rollback-index again if version {version} "
                    f"should still be the one devices use"
                ) from None
    return RollbackResult(previous if unchanged else pointer, previous, not unchanged)


def _names(s3, bucket: str, prefix: str) -> str:
    try:
        now = read_pointer(s3, bucket, prefix)
    except BundleError:
        return "it is now unreadable"
    return "it is now gone" if now is None else f"it now names version {now.index_version}"


def index_updated_message(pointer: Pointer, bucket: str, prefix: str) -> dict:
    return messages.index_updated_message(
        index_version=pointer.index_version,
        manifest_sha256=pointer.manifest_sha256,
        item_count=pointer.item_count,
        model_fingerprint=pointer.model_fingerprint,
        bucket=bucket,
        prefix=prefix,
        latest_key=latest_key(prefix),
    )


def iot_data_client(endpoint: str | None = None):
    """An iot-data client; `endpoint` is the account's data endpoint (`aws iot describe-endpoint
    --endpoint-type iot:Data-ATS`), with or without https://."""
    if endpoint and "://" not in endpoint:
        endpoint = "https://" + endpoint
    return client("iot-data", endpoint_url=endpoint or None)


def notify_devices(message: dict, *, iot) -> None:
    with aws_errors(f"IoT Core publish to {IOT_INDEX_UPDATED}"):
        iot.publish(topic=IOT_INDEX_UPDATED, qos=1, payload=json.dumps(message, sort_keys=True).encode())
