"""`prune-indexes`: delete the S3 objects of index versions nobody needs any more.

Kept: the newest `keep` versions by number, and the one LATEST names (even an older one, after
a rollback-index). Every other version is dropped: its keys under `indexes/<version>/` (the
manifest, and all files of a version-layout version) are deleted, then every content-addressed
object that no retained manifest lists, directly or through a chunk list (s3_layout.py).

Nothing younger than the grace period is deleted: a publish-index uploads its objects before
its manifest, so a fresh object nobody lists yet may be about to be listed. A dropped version
with a key that young is left whole, and its manifest counts like a kept one (it may list old
objects the other versions no longer do). A publish-index lists the objects once and skips
those already there, so prune must still not run while a publish-index writes to the prefix.

Nothing is deleted unless every retained manifest and chunk list was read: a version's files
are judged unneeded only on complete knowledge. Dropped versions go first, unreferenced objects
second, so a crash in between leaves garbage for the next run, never a listed version with
missing files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cloud_sync.aws import aws_errors, get_bytes, list_objects, s3_url
from cloud_sync.publishing.index_versions import read_pointer, remote_manifest
from components.common.bundle import MANIFEST
from components.common.chunks import ChunkList
from components.common.errors import BundleError
from components.common.s3_layout import (
    CHUNK_LIST_SUFFIX,
    OBJECTS,
    bundle_key,
    chunk_list_key,
    indexes_prefix,
    latest_key,
    object_key,
)

DELETE_BATCH = 1000  # the most keys S3 DeleteObjects takes at once
NOTHING_DELETED = "nothing was deleted"


@dataclass
class PruneResult:
    latest: int  # the version LATEST names
    kept: list[int]  # the newest `keep` versions and LATEST's
    dropped: list[int]  # versions whose keys were deleted (would be, with dry_run)
    too_recent_versions: list[int]  # dropped by --keep, but left whole: a key is within the grace period
    version_keys: int = 0  # keys of dropped versions deleted, and their bytes
    version_bytes: int = 0
    objects: int = 0  # unreferenced content-addressed objects deleted, and their bytes
    object_bytes: int = 0
    too_recent_objects: int = 0  # unreferenced objects left because they are within the grace period
    dry_run: bool = False


def prune_indexes(
    bucket: str,
    prefix: str,
    *,
    s3,
    keep: int = 5,
    min_age_hours: float = 24.0,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneResult:
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(hours=min_age_hours)
    with aws_errors(s3_url(bucket, indexes_prefix(prefix))):
        latest = _latest_version(s3, bucket, prefix)
        version_objects, stored_objects = _listing(s3, bucket, prefix)
        kept = sorted(set(sorted(version_objects)[-keep:]) | {latest})
        dropped, too_recent = [], []
        for version in sorted(set(version_objects) - set(kept)):
            young = any(obj["LastModified"] > cutoff for obj in version_objects[version])
            (too_recent if young else dropped).append(version)
        referenced = _referenced_objects(s3, bucket, prefix, [*kept, *too_recent], stored_objects)
        unreferenced = [obj for key, obj in stored_objects.items() if key not in referenced]
        old_enough = [obj for obj in unreferenced if obj["LastModified"] <= cutoff]
        version_keys = [obj for version in dropped for obj in version_objects[version]]
        result = PruneResult(
            latest=latest,
            kept=kept,
            dropped=dropped,
            too_recent_versions=too_recent,
            version_keys=len(version_keys),
            version_bytes=sum(obj["Size"] for obj in version_keys),
            objects=len(old_enough),
            object_bytes=sum(obj["Size"] for obj in old_enough),
            too_recent_objects=len(unreferenced) - len(old_enough),
            dry_run=dry_run,
        )
        if dry_run:
            return result
        if _latest_version(s3, bucket, prefix) != latest:
            raise BundleError(
                f"{s3_url(bucket, latest_key(prefix))} changed while prune-indexes read the versions "
                f"(a publish-index or rollback-index ran meanwhile); {NOTHING_DELETED}: run it again"
            )
        _delete(s3, bucket, [obj["Key"] for obj in version_keys])
        _delete(s3, bucket, [obj["Key"] for obj in old_enough])
    return result


def _latest_version(s3, bucket: str, prefix: str) -> int:
    where = s3_url(bucket, latest_key(prefix))
    try:
        pointer = read_pointer(s3, bucket, prefix)
    except BundleError as exc:
        raise BundleError(f"{exc}; {NOTHING_DELETED}") from None
    if pointer is None:
        raise BundleError(
            f"{where}: missing, so which version devices serve is unknown; {NOTHING_DELETED} "
            f"(publish-index or rollback-index writes it)"
        )
    return pointer.index_version


def _listing(s3, bucket: str, prefix: str) -> tuple[dict[int, list[dict]], dict[str, dict]]:
    """({version: the objects under its prefix}, {key: object} of the content-addressed objects),
    in one pass over every page of the listing."""
    root = indexes_prefix(prefix)
    by_version: dict[int, list[dict]] = {}
    stored: dict[str, dict] = {}
    for obj in list_objects(s3, bucket, root):
        head, _, rel = obj["Key"][len(root) :].partition("/")
        if head.isdigit() and rel:
            by_version.setdefault(int(head), []).append(obj)
        elif head == OBJECTS and rel:
            stored[obj["Key"]] = obj
    return by_version, stored


def _referenced_objects(
    s3, bucket: str, prefix: str, versions: list[int], stored: dict[str, dict]
) -> set[str]:
    """Every content-addressed key the manifests of `versions` list: each file's object and
    chunk list (whichever was stored), and the chunks of each chunk list in S3."""
    referenced: set[str] = set()
    for version in versions:
        where = s3_url(bucket, bundle_key(prefix, version, MANIFEST))
        try:
            _, manifest = remote_manifest(s3, bucket, prefix, version)
        except BundleError as exc:
            raise BundleError(f"{exc}; version {version} is kept, so {NOTHING_DELETED}") from None
        sections = [manifest["files"], manifest.get("reuse", {})]
        try:
            shas = {str(entry["sha256"]) for section in sections for entry in section.values()}
            referenced |= {object_key(prefix, sha) for sha in shas}
            referenced |= {chunk_list_key(prefix, sha) for sha in shas}
        except (AttributeError, KeyError, TypeError, BundleError) as exc:
            raise BundleError(
                f"{where}: a file entry without a valid sha256 ({type(exc).__name__}: {exc}); "
                f"version {version} is kept, so {NOTHING_DELETED}"
            ) from None
    for key in sorted(k for k in referenced if k.endswith(CHUNK_LIST_SUFFIX) and k in stored):
        raw = get_bytes(s3, bucket, key)
        if raw is None:
            raise BundleError(f"{s3_url(bucket, key)}: gone while prune-indexes ran; {NOTHING_DELETED}")
        try:
            chunks = ChunkList.from_json(raw, where=s3_url(bucket, key)).chunks
            referenced |= {object_key(prefix, sha) for sha, _ in chunks}
        except BundleError as exc:
            raise BundleError(f"{exc}; it is listed by a kept version, so {NOTHING_DELETED}") from None
    return referenced


def _delete(s3, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        response = s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
        )
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise BundleError(
                f"{s3_url(bucket, first.get('Key', ''))}: not deleted ({first.get('Code')}: "
                f"{first.get('Message')}), {len(errors)} of {len(batch)} key(s) of this batch failed; "
                f"run prune-indexes again"
            )
