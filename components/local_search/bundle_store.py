"""Index bundles kept on the device, so the last good one is served at once after a restart.

    <index_dir>/
      CURRENT            {"current": <name>, "previous": <name> | null}, replaced atomically
      versions/<name>/   complete bundles that passed verification; name = <version>-<digest[:16]>
      staging/<name>/    the download in progress; files already checked are reused on resume,
                         and files the kept bundles hold (same sha256) are linked, not fetched
      rejected.json      bundles refused, by manifest digest, so they are not fetched again

A version directory only ever appears by renaming a complete staging directory (same file
system, atomic), and CURRENT only ever names such a directory, so a crash at any point
leaves the device on its last good bundle. Only `current` and `previous` (for rollback)
are kept.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable

from components.common.bundle import MANIFEST, read_manifest, sha256_file
from components.common.errors import BundleError, VisualSearchError
from components.local_search.held_files import files_by_sha256, inside, link_or_copy
from components.local_search.search import IndexBundle

log = logging.getLogger("local_search")

WORK_DIR_ENV = "VISUAL_SEARCH_WORK_DIR"
MARKER = "CURRENT"
REJECTED = "rejected.json"
MAX_REJECTED = 20


def work_dir() -> Path:
    """The component's writable directory: $VISUAL_SEARCH_WORK_DIR (the recipe sets it to
    {work:path}), else the current directory."""
    return Path(os.environ.get(WORK_DIR_ENV) or os.getcwd())


def resolve_index_dir(index_dir: str) -> Path:
    path = Path(index_dir).expanduser()
    return path if path.is_absolute() else work_dir() / path


def version_name(index_version: int, manifest_sha256: str) -> str:
    return f"{int(index_version)}-{manifest_sha256[:16]}"


class BundleStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.versions = self.root / "versions"
        self.staging = self.root / "staging"
        self.files_fetched = 0  # by stage(), over this object's life
        self.bytes_fetched = 0
        self.files_reused = 0  # left in staging by an interrupted download
        self.files_linked = 0  # taken from a kept bundle (linked, or copied across file systems)

    # --- what is served --------------------------------------------------------------
    def marker(self) -> dict:
        """{"current": name | None, "previous": name | None}."""
        path = self.root / MARKER
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return {"current": None, "previous": None}
        except (OSError, ValueError) as exc:
            log.error("%s: unreadable (%s); ignoring it", path, exc)
            return {"current": None, "previous": None}
        if not isinstance(raw, dict):
            return {"current": None, "previous": None}
        return {"current": raw.get("current") or None, "previous": raw.get("previous") or None}

    def current_dir(self) -> Path | None:
        return self._existing(self.marker()["current"])

    def previous_dir(self) -> Path | None:
        return self._existing(self.marker()["previous"])

    def find(self, index_version: int, manifest_sha256: str) -> Path | None:
        """The kept, verified bundle of this exact version and manifest, if any."""
        return self._existing(version_name(index_version, manifest_sha256))

    def open_current(self, expected_fingerprint: str | None = None) -> IndexBundle | None:
        """Open (and verify) the current bundle; if it no longer verifies, the previous one."""
        marker = self.marker()
        for role in ("current", "previous"):
            path = self._existing(marker[role])
            if path is None:
                continue
            try:
                bundle = IndexBundle.open(path, expected_fingerprint)
            except VisualSearchError as exc:
                log.error("kept %s bundle does not open (%s); not serving it", role, exc)
                continue
            if role == "previous":
                self._write_marker({"current": path.name, "previous": None})
                self.prune()
            return bundle
        return None

    def set_current(self, path: Path) -> None:
        """Make the version directory `path` current; the one it replaces becomes previous."""
        marker = self.marker()
        name = Path(path).name
        if marker["current"] == name:
            return
        previous = marker["current"] if self._existing(marker["current"]) else marker["previous"]
        self._write_marker({"current": name, "previous": previous if previous != name else None})
        self.prune()

    def prune(self) -> None:
        """Remove every version directory but current and previous."""
        keep = {v for v in self.marker().values() if v}
        if not self.versions.is_dir():
            return
        for path in self.versions.iterdir():
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
                log.info("removed old index bundle %s", path)

    # --- downloads ---------------------------------------------------------------------
    def staging_for(self, index_version: int, manifest_sha256: str) -> Path:
        """The staging directory of this bundle (kept from an interrupted download if there
        was one); staging directories of any other bundle are discarded."""
        name = version_name(index_version, manifest_sha256)
        self.staging.mkdir(parents=True, exist_ok=True)
        for path in self.staging.iterdir():
            if path.name != name:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        path = self.staging / name
        path.mkdir(exist_ok=True)
        return path

    def stage(
        self,
        index_version: int,
        manifest_sha256: str,
        where: str,
        *,
        fetch: Callable[[str, str, int | None, Path], int | None],
        check: Callable[[dict], None],
        reuse_from: Iterable[Path] = (),
    ) -> Path:
        """Download a bundle with `fetch(relative path, sha256, size, target file)`, which
        returns the bytes it downloaded (None: the whole file), and commit it; returns its
        version directory. Files an interrupted download left are reused, and files
        the bundles in `reuse_from` hold are linked, when their sha256 matches; every file is
        checked once in place (a fetched mismatch is fetched once more, then the bundle is
        refused). `check(manifest)` runs before anything big is fetched."""
        staging = self.staging_for(index_version, manifest_sha256)
        self._stage_file(fetch, staging, MANIFEST, None, manifest_sha256, where, "LATEST", {})
        manifest = read_manifest(staging)
        check(manifest)
        files = manifest["files"]
        held = files_by_sha256(reuse_from)
        missing = {e["sha256"]: e["size"] for e in files.values() if e["sha256"] not in held}
        log.info(
            "index version %s: %d files, %.1f MB; %.1f MB not on the device, from %s",
            index_version,
            len(files),
            sum(entry["size"] for entry in files.values()) / 1e6,
            sum(missing.values()) / 1e6,
            where,
        )
        for rel, entry in files.items():
            self._stage_file(fetch, staging, rel, entry["size"], entry["sha256"], where, "the manifest", held)
        return self.commit(staging, keep=set(files) | {MANIFEST})

    def _stage_file(
        self,
        fetch,
        staging: Path,
        rel: str,
        size: int | None,
        sha256: str,
        where: str,
        listed_in: str,
        held: dict[str, list[Path]],
    ) -> None:
        target = inside(staging, rel)
        if file_matches(target, size, sha256):
            self.files_reused += 1
            return
        for source in held.get(sha256, ()):
            if link_or_copy(source, target) and file_matches(target, size, sha256):
                self.files_linked += 1
                return
        for _ in range(2):  # a second try tells a glitch in transfer from a bad object at the source
            downloaded = fetch(rel, sha256, size, target)
            self.files_fetched += 1
            if downloaded is None:
                downloaded = target.stat().st_size if target.is_file() else 0
            self.bytes_fetched += downloaded
            if file_matches(target, size, sha256):
                return
        target.unlink(missing_ok=True)
        raise BundleError(f"{where}{rel}: sha256 does not match {listed_in} (corrupted or altered)")

    def discard_staging(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def commit(self, staging: Path, keep: set[str]) -> Path:
        """Move a complete staging directory into versions/ (atomic rename), dropping any
        file not in `keep` (leftovers of an interrupted download); returns its new path."""
        for path in [p for p in Path(staging).rglob("*") if p.is_file()]:
            if path.relative_to(staging).as_posix() not in keep:
                path.unlink()
        self.versions.mkdir(parents=True, exist_ok=True)
        target = self.versions / Path(staging).name
        if target.exists():  # left by a crash before CURRENT named it; the new copy is complete
            shutil.rmtree(target)
        Path(staging).rename(target)
        _fsync_dir(self.versions)
        _fsync_dir(self.staging)
        return target

    def remove(self, path: Path) -> None:
        """Drop a version directory that turned out unusable (never the current one)."""
        if Path(path).name != self.marker()["current"]:
            shutil.rmtree(path, ignore_errors=True)

    # --- refused bundles ---------------------------------------------------------------
    def rejection(self, manifest_sha256: str) -> dict | None:
        return self._rejected().get(manifest_sha256)

    def reject(
        self,
        manifest_sha256: str,
        index_version: int,
        reason: str,
        *,
        model_mismatch: bool = False,
        expected_fingerprint: str | None = None,
    ) -> None:
        """Remember a refused bundle. A model mismatch is tied to the fingerprint expected
        then: once the featurizer changes model, the bundle is worth another look."""
        rejected = self._rejected()
        rejected.pop(manifest_sha256, None)
        rejected[manifest_sha256] = {
            "index_version": index_version,
            "reason": reason,
            "at": time.time(),
            "model_mismatch": model_mismatch,
            "expected_fingerprint": expected_fingerprint,
        }
        kept = dict(list(rejected.items())[-MAX_REJECTED:])
        _write_atomic(self.root / REJECTED, json.dumps(kept, indent=1, sort_keys=True).encode())

    def _rejected(self) -> dict:
        try:
            raw = json.loads((self.root / REJECTED).read_text())
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    # --- helpers -------------------------------------------------------------------------
    def _existing(self, name: str | None) -> Path | None:
        if not name or "/" in name or name.startswith("."):
            return None
        path = self.versions / name
        return path if path.is_dir() else None

    def _write_marker(self, marker: dict) -> None:
        _write_atomic(self.root / MARKER, (json.dumps(marker, sort_keys=True) + "\n").encode())


class ModelMismatch(BundleError):
    """A bundle built for another featurizer model than the one in use."""


def check_model(manifest: dict, expected: str | None) -> None:
    actual = str(manifest["model"].get("fingerprint", ""))
    if expected and actual != expected:
        raise ModelMismatch(
            f"index version {manifest['index_version']} was built for model {actual[:12]}, "
            f"but the featurizer runs model {expected[:12]}"
        )


def file_matches(path: Path, size: int | None, sha256: str) -> bool:
    try:
        return (
            path.is_file() and (size is None or path.stat().st_size == size) and sha256_file(path) == sha256
        )
    except OSError:
        return False


def _write_atomic(path: Path, data: bytes) -> None:
    """Write beside `path`, fsync, then rename over it: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not sync directories
        pass
    finally:
        os.close(fd)
