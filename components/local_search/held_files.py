"""What a new bundle can take from the bundles the device holds instead of downloading it.

Whole files by sha256 (hard-linked: bundle files are never written in place), and the chunks
of large files (components/common/chunks.py): a chunked file is rebuilt from its chunk list,
chunks held in the large files of the kept bundles copied from disk, the others downloaded,
CHUNK_DOWNLOADS at a time. Whatever is taken is checked by the bundle store against the
manifest's sha256, as any downloaded file is.
"""

from __future__ import annotations

import os
import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

from components.common.bundle import read_manifest
from components.common.chunks import ChunkList, is_chunked, local_chunks
from components.common.errors import BundleError

# One GET at a time, a million items' rerank-vectors.npy (2.4 GiB, about 30,000 chunks) takes
# most of an hour at 100 ms a request; the chunks still land in the file in order.
CHUNK_DOWNLOADS = 8


def files_by_sha256(bundle_dirs: Iterable[Path]) -> dict[str, list[Path]]:
    """{sha256: files with those bytes, as their manifests say} over the given bundles; the
    bytes are checked again once linked, so a damaged kept file is only a missed reuse."""
    held: dict[str, list[Path]] = {}
    for bundle_dir in {Path(p).resolve() for p in bundle_dirs if p is not None}:
        try:
            files = read_manifest(bundle_dir)["files"]
        except (BundleError, OSError):
            continue
        for rel, entry in files.items():
            try:
                held.setdefault(str(entry["sha256"]), []).append(inside(bundle_dir, rel))
            except (BundleError, KeyError, TypeError):
                continue
    return held


def link_or_copy(source: Path, target: Path) -> bool:
    """A hard link (bundle files are never written in place, so sharing an inode is safe),
    or a copy where the source is on another file system; False when neither works."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
        return True
    except OSError:
        pass
    try:
        shutil.copyfile(source, target)
        return True
    except OSError:
        return False


def inside(root: Path, rel: str) -> Path:
    """`root/rel`, refusing manifest paths that would write outside the bundle."""
    parts = Path(rel).parts
    if not rel or Path(rel).is_absolute() or ".." in parts or "\\" in rel:
        raise BundleError(f"manifest lists an unsafe path {rel!r}")
    return root.joinpath(*parts)


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

        def chunk(sha: str, size: int) -> tuple[bytes, int]:
            """(the chunk's bytes, how many were downloaded)"""
            data = _read(held.get(sha), size)
            if data is not None:
                return data, 0
            data = self._get(chunk_key(sha))
            return data, len(data)

        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        pool = ThreadPoolExecutor(CHUNK_DOWNLOADS, thread_name_prefix="chunk")
        running: deque[Future] = deque()  # in file order; at most 2 x CHUNK_DOWNLOADS held
        try:
            with open(part, "wb") as out:
                for sha, size in listing.chunks:
                    running.append(pool.submit(chunk, sha, size))
                    if len(running) >= 2 * CHUNK_DOWNLOADS:
                        downloaded += _write(out, running.popleft())
                while running:
                    downloaded += _write(out, running.popleft())
                out.flush()
                os.fsync(out.fileno())
        finally:
            pool.shutdown(cancel_futures=True)
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


def _write(out, future: Future) -> int:
    data, downloaded = future.result()
    out.write(data)
    return downloaded


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
