"""The index bundle: what build-index writes, S3 carries and devices verify before use.

A directory holding `manifest.json` and the files it lists (each with size and sha256)::

    manifest.json
    index.faiss          the faiss index; row i is items.faiss_id = i
    rerank-vectors.npy   only with a compressed index: every vector at float16, row i =
                         faiss id i, read from disk to re-rank the index's candidates
    items.sqlite         item metadata
    thumbnails/<i>.jpg   small pictures so the kiosk shows items offline
    reuse/               for the next build only (`build-index --previous`): listed under
                         the manifest's `reuse`, not `files`, so devices never fetch it

Both the cloud side (writing) and the device (verifying) use this module, so the format
cannot drift between them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from components.common.errors import BundleError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"
RERANK_FILE = "rerank-vectors.npy"
ITEMS_FILE = "items.sqlite"
THUMBNAIL_DIR = "thumbnails"
REUSE_DIR = "reuse"
METRICS = ("cosine", "l2")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entries(bundle_dir: Path) -> dict[str, dict]:
    """{relative path: {size, sha256}} for every file in the bundle except the manifest."""
    entries = {}
    for path in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(bundle_dir).as_posix()
        if rel != MANIFEST:
            entries[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return entries


def write_manifest(bundle_dir: Path, manifest: dict) -> dict:
    """Add the file lists to `manifest` and write it; returns the full manifest.
    `files` is what devices download and verify; `reuse` (files under reuse/) only what the
    next `build-index --previous` reads."""
    entries = file_entries(bundle_dir)
    reuse = {rel: entry for rel, entry in entries.items() if rel.startswith(REUSE_DIR + "/")}
    files = {rel: entry for rel, entry in entries.items() if rel not in reuse}
    manifest = {**manifest, "format_version": FORMAT_VERSION, "files": files}
    manifest.pop("reuse", None)
    if reuse:
        manifest["reuse"] = reuse
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def manifest_digest(bundle_dir: Path) -> str:
    """sha256 of manifest.json: names the exact bundle (used by the S3 LATEST pointer)."""
    return sha256_file(Path(bundle_dir) / MANIFEST)


def read_manifest(bundle_dir: str | Path) -> dict:
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir}: bundle directory not found")
    if not path.is_file():
        raise BundleError(f"{path}: missing (not an index bundle)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: expected a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path}: format_version {version!r} is not supported " f"(this build reads {FORMAT_VERSION})"
        )
    for key in ("index_version", "item_count", "metric", "index", "model", "files"):
        if key not in manifest:
            raise BundleError(f"{path}: missing key {key!r}")
    if manifest["metric"] not in METRICS:
        raise BundleError(f"{path}: unknown metric {manifest['metric']!r}")
    return manifest


def verify_bundle(
    bundle_dir: str | Path, expected_fingerprint: str | None = None, skip: tuple[str, ...] = ()
) -> dict:
    """Check format version, every file's size and sha256, and the model fingerprint.

    `skip` names files not to hash (the display never reads the faiss index).
    Returns the manifest; raises BundleError naming the first file that does not match.
    """
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    for required in (INDEX_FILE, ITEMS_FILE):
        if required not in manifest["files"]:
            raise BundleError(f"{bundle_dir / MANIFEST}: does not list {required}")
    for rel, entry in manifest["files"].items():
        if rel in skip:
            continue
        path = bundle_dir / rel
        if not path.is_file():
            raise BundleError(f"{path}: missing (listed in the manifest)")
        size = path.stat().st_size
        if size != entry["size"]:
            raise BundleError(f"{path}: size {size} bytes, manifest says {entry['size']}")
        if sha256_file(path) != entry["sha256"]:
            raise BundleError(f"{path}: sha256 does not match the manifest (corrupted or altered)")
    actual = manifest["model"].get("fingerprint")
    if expected_fingerprint is not None and actual != expected_fingerprint:
        raise BundleError(
            f"{bundle_dir / MANIFEST}: built for model {str(actual)[:12]}, "
            f"but the featurizer is {expected_fingerprint[:12]}; rebuild the index "
            f"with this model"
        )
    return manifest


FALLBACK_MIN_SCORE = 0.35  # for bundles built before calibration was recorded


def bundle_min_score(manifest: dict, configured: float | None = None) -> float:
    """The min_score to apply: the configured one if set, else the bundle's calibrated one."""
    if configured is not None:
        return float(configured)
    return float(manifest.get("min_score", FALLBACK_MIN_SCORE))
