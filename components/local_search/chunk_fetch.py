"""A large bundle file rebuilt from its chunk list: chunks the device already holds, in the large
files of its kept bundles, are copied from disk, the others downloaded (components/common/chunks.py).

The file is written beside its target and renamed into place; whether it is right is checked
by the caller against the manifest's sha256, as for any downloaded file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from components.common.bundle import read_manifest
from components.common.chunks import ChunkList, is_chunked, local_chunks
from components.common.errors import BundleError


class ChunkedFetcher:
    """`get(key) -> bytes` reads one S3 object; `kept_dirs` are bundles whose large files may
    hold chunks (cut once, on the first chunked file fetched)."""

    def __init__(self, get: Callable[[str], bytes], kept_dirs: list[Path]):
        self._get, self._kept_dirs = get, kept_dirs
        self._held: dict[str, tuple[Path, int, int]] | None = None

    def fetch(self, list_key: str, chunk_key: Callable[[str], str], target: Path) -> int:
        """Write the file `list_key` describes to `target`; returns the bytes downloaded."""
        listing = ChunkList.from_json(self._get(list_key), where=list_key)
        held = self._held_chunks()
        downloaded = len(list_key)  # the chunk list itself, roughly: it is small
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        with open(part, "wb") as out:
            for sha, size in listing.chunks:
                data = _read(held.get(sha), size)
                if data is None:
                    data = self._get(chunk_key(sha))
                    downloaded += len(data)
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, target)
        return downloaded

    def _held_chunks(self) -> dict[str, tuple[Path, int, int]]:
        if self._held is None:
            large = []
            for bundle_dir in {Path(p).resolve() for p in self._kept_dirs}:
                try:
                    files = read_manifest(bundle_dir)["files"]
                except (BundleError, OSError):
                    continue
                large += [bundle_dir / rel for rel, e in files.items() if is_chunked(int(e.get("size", 0)))]
            self._held = local_chunks(large)
        return self._held


def _read(where: tuple[Path, int, int] | None, size: int) -> bytes | None:
    """The held chunk's bytes, or None when it is not held or no longer readable."""
    if where is None or where[2] != size:
        return None
    path, offset, _ = where
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(size)
    except OSError:
        return None
    return data if len(data) == size else None
