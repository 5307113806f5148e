"""Open the bundle named by `build-index --previous`: a local folder or a version in S3
(`s3://bucket/prefix/indexes/<version>`). Only the manifest, the reuse/ files and the
thumbnails of reused rows are read; every one is checked against the manifest's sha256. The
vectors file is hashed as it streams and memory-mapped, never read into memory whole (from S3
it is downloaded to a temporary folder first)."""

from __future__ import annotations

import atexit
import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

from cloud_sync.indexing.reuse import PreviousBuild, parse_reuse_files
from components.common import s3_layout
from components.common.bundle import MANIFEST, read_manifest, sha256_file
from components.common.errors import BundleError

_S3_VERSION = re.compile(r"s3://(?P<bucket>[^/]+)/(?:(?P<prefix>.*)/)?indexes/(?P<version>\d+)/?")


def open_previous(ref: str) -> PreviousBuild:
    if ref.startswith("s3://"):
        return _open_s3(ref)
    bundle = Path(ref)
    manifest = read_manifest(bundle)

    def local(rel: str) -> Path:
        return _checked_path(bundle / rel, _entry(manifest, rel, str(bundle)))

    return parse_reuse_files(
        str(bundle), manifest, lambda rel: _checked(bundle / rel, manifest, rel), local, local
    )


def _entry(manifest: dict, rel: str, where: str) -> dict:
    entry = manifest.get("reuse", {}).get(rel) or manifest["files"].get(rel)
    if entry is None:
        raise BundleError(f"{where}: {rel} is not listed in its manifest")
    return entry


def _verified(data: bytes, entry: dict, where: str) -> bytes:
    if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise BundleError(f"{where}: does not match its manifest (size or sha256); not reused")
    return data


def _checked(path: Path, manifest: dict, rel: str) -> bytes:
    entry = _entry(manifest, rel, str(path.parent))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return _verified(data, entry, str(path))


def _checked_path(path: Path, entry: dict) -> Path:
    try:
        matches = path.stat().st_size == entry["size"] and sha256_file(path) == entry["sha256"]
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not matches:
        raise BundleError(f"{path}: does not match its manifest (size or sha256); not reused")
    return path


def _download_folder() -> Path:
    """A temporary folder for files of a previous version in S3, removed when the command ends
    (the build memory-maps them until then)."""
    folder = Path(tempfile.mkdtemp(prefix="visual-search-previous-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _open_s3(ref: str) -> PreviousBuild:
    from cloud_sync.aws import aws_errors, client

    match = _S3_VERSION.fullmatch(ref)
    if not match:
        raise BundleError(f"{ref}: expected s3://<bucket>/<prefix>/indexes/<index_version>")
    bucket, prefix, version = match["bucket"], match["prefix"] or "", int(match["version"])
    s3 = client("s3")
    with aws_errors(ref):
        manifest = json.loads(_get(s3, bucket, _version_key(prefix, version, MANIFEST)))
        keys = _keys_of_version(s3, bucket, prefix, version, manifest)

    def read_file(rel: str) -> bytes:
        entry = _entry(manifest, rel, ref)
        with aws_errors(f"s3://{bucket}/{keys(rel, entry)}"):
            return _verified(_get(s3, bucket, keys(rel, entry)), entry, f"{ref}/{rel}")

    def download(rel: str) -> Path:
        entry = _entry(manifest, rel, ref)
        target = _download_folder() / Path(rel).name
        with aws_errors(f"s3://{bucket}/{keys(rel, entry)}"):
            s3.download_file(bucket, keys(rel, entry), str(target))
        return _checked_path(target, entry)

    return parse_reuse_files(ref, manifest, read_file, download)


def _get(s3, bucket: str, key: str) -> bytes:
    response = s3.get_object(Bucket=bucket, Key=key)
    with response["Body"] as body:
        return body.read()


def _version_key(prefix: str, version: int, rel: str) -> str:
    return s3_layout.bundle_key(prefix, version, rel)


def _keys_of_version(s3, bucket: str, prefix: str, version: int, manifest: dict):
    """key(rel, entry) of each file of the version, in the layout it was published with
    (reuse/ files are never stored in chunks)."""
    under_version = s3_layout.version_prefix(prefix, version)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=under_version, MaxKeys=2)
    layout = s3_layout.layout_of({obj["Key"][len(under_version) :] for obj in listed.get("Contents", [])})
    return lambda rel, entry: s3_layout.file_key(prefix, version, rel, entry["sha256"], layout)
