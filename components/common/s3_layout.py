"""Where index bundles live in S3, and the LATEST pointer that names the current one.

    s3://<bucket>/<prefix>/indexes/<index_version>/manifest.json
    s3://<bucket>/<prefix>/indexes/objects/<sha256[:2]>/<sha256>   every file a manifest lists,
    s3://<bucket>/<prefix>/indexes/objects/<sha256[:2]>/<sha256>.chunks   or for a large file its
                                                                  chunk list (each chunk an object)
    s3://<bucket>/<prefix>/indexes/LATEST     {"schema": 2, "index_version", "manifest_sha256", "layout", ...}

Files are stored once under their sha256 and shared by every version that lists them, so a
new version uploads, and a device downloads, only the files that changed; large files
(chunks.py) as content-defined chunks, so only the chunks around a change. Versions published
before this layout (pointer schema 1) keep their files under their own version prefix
(`indexes/<index_version>/<relative path>`); they are still read, listed and rolled back to.

`publish-index` (cloud) writes these and devices (local_search) read them; both use this
module so the keys and the pointer format cannot drift apart.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from components.common.bundle import MANIFEST
from components.common.errors import BundleError

POINTER_SCHEMA = 2
READABLE_POINTER_SCHEMAS = (1, 2)  # 1: before content-addressed files; always the version layout
LATEST = "LATEST"
OBJECTS = "objects"
CHUNK_LIST_SUFFIX = ".chunks"
# How a version's files are stored: under their sha256 (shared), or under the version prefix.
CONTENT_LAYOUT = "content"
VERSION_LAYOUT = "version"
LAYOUTS = (CONTENT_LAYOUT, VERSION_LAYOUT)
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    """Key of a file under its version's prefix: the manifest, or any file of a version
    published with the version layout."""
    return version_prefix(prefix, index_version) + relative_path


def objects_prefix(prefix: str) -> str:
    return _join(prefix, "indexes", OBJECTS) + "/"


def object_key(prefix: str, sha256: str) -> str:
    """Key of the content-addressed object holding the bytes whose sha256 is `sha256`."""
    if not _SHA256.fullmatch(sha256 or ""):
        raise BundleError(f"not a sha256 hex digest: {sha256!r}")
    return objects_prefix(prefix) + f"{sha256[:2]}/{sha256}"


def chunk_list_key(prefix: str, sha256: str) -> str:
    """Key of the chunk list of a large file (components/common/chunks.py)."""
    return object_key(prefix, sha256) + CHUNK_LIST_SUFFIX


def file_key(prefix: str, index_version: int, relative_path: str, sha256: str, layout: str) -> str:
    """Where one file of a version's manifest is stored (the manifest itself: `bundle_key`)."""
    if layout == CONTENT_LAYOUT:
        return object_key(prefix, sha256)
    return bundle_key(prefix, index_version, relative_path)


def layout_of(keys_under_version: list[str] | set[str]) -> str:
    """A version's layout from the relative keys under its prefix: the version layout put
    data files there, the content layout only the manifest."""
    return VERSION_LAYOUT if any(key != MANIFEST for key in keys_under_version) else CONTENT_LAYOUT


@dataclass(frozen=True)
class Pointer:
    """The content of LATEST: which version devices should serve, its exact manifest, and
    where that version's files are stored."""

    index_version: int
    manifest_sha256: str
    published_at: str = ""
    item_count: int = 0
    model_fingerprint: str = ""
    layout: str = CONTENT_LAYOUT

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
        schema = raw.get("schema")
        if schema not in READABLE_POINTER_SCHEMAS or isinstance(schema, bool):
            raise BundleError(
                f"{where}: pointer schema {schema!r} is not supported "
                f"(this build reads {', '.join(map(str, READABLE_POINTER_SCHEMAS))})"
            )
        version, digest = raw.get("index_version"), raw.get("manifest_sha256")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise BundleError(f"{where}: index_version must be a positive integer, got {version!r}")
        if not isinstance(digest, str) or len(digest) != 64:
            raise BundleError(f"{where}: manifest_sha256 must be a sha256 hex digest, got {digest!r}")
        layout = raw.get("layout", CONTENT_LAYOUT) if schema >= 2 else VERSION_LAYOUT
        if layout not in LAYOUTS:
            raise BundleError(f"{where}: unknown layout {layout!r} (this build reads {', '.join(LAYOUTS)})")
        return cls(
            index_version=version,
            manifest_sha256=digest,
            published_at=str(raw.get("published_at", "")),
            item_count=int(raw.get("item_count", 0) or 0),
            model_fingerprint=str(raw.get("model_fingerprint", "")),
            layout=layout,
        )
