"""Where index bundles live in S3, and the LATEST pointer that names the current one.

    s3://<bucket>/<prefix>/indexes/<index_version>/manifest.json
    s3://<bucket>/<prefix>/indexes/<index_version>/<every file the manifest lists>
    s3://<bucket>/<prefix>/indexes/LATEST        {"index_version": ..., "manifest_sha256": ...}

`publish-index` (cloud) writes these and devices (local_search) read them; both use this
module so the keys and the pointer format cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from components.common.errors import BundleError

POINTER_SCHEMA = 1
LATEST = "LATEST"


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def indexes_prefix(prefix: str) -> str:
    """`<prefix>/indexes/` (the trailing slash makes it safe for ListObjects)."""
    return _join(prefix, "indexes") + "/"


def latest_key(prefix: str) -> str:
    return _join(prefix, "indexes", LATEST)


def version_prefix(prefix: str, index_version: int) -> str:
    return _join(prefix, "indexes", str(int(index_version))) + "/"


def bundle_key(prefix: str, index_version: int, relative_path: str) -> str:
    """Key of one bundle file (`manifest.json`, `index.faiss`, `thumbnails/3.jpg`, ...)."""
    return version_prefix(prefix, index_version) + relative_path


@dataclass(frozen=True)
class Pointer:
    """The content of LATEST: which version devices should serve, and its exact manifest."""

    index_version: int
    manifest_sha256: str
    published_at: str = ""
    item_count: int = 0
    model_fingerprint: str = ""

    def to_json(self) -> bytes:
        return (json.dumps({"schema": POINTER_SCHEMA, **asdict(self)}, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes | str, where: str = LATEST) -> "Pointer":
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise BundleError(f"{where}: expected a JSON object")
        if raw.get("schema") != POINTER_SCHEMA:
            raise BundleError(
                f"{where}: pointer schema {raw.get('schema')!r} is not supported "
                f"(this build reads {POINTER_SCHEMA})"
            )
        version, digest = raw.get("index_version"), raw.get("manifest_sha256")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise BundleError(f"{where}: index_version must be a positive integer, got {version!r}")
        if not isinstance(digest, str) or len(digest) != 64:
            raise BundleError(f"{where}: manifest_sha256 must be a sha256 hex digest, got {digest!r}")
        return cls(
            index_version=version,
            manifest_sha256=digest,
            published_at=str(raw.get("published_at", "")),
            item_count=int(raw.get("item_count", 0) or 0),
            model_fingerprint=str(raw.get("model_fingerprint", "")),
        )
