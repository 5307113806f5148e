"""Content-defined chunks of large bundle files, so a one-item change moves kilobytes, not the file.

`index.faiss` and `items.sqlite` hold every item: any change rewrites them. Cut at fixed
offsets, one removed item would shift, hence change, every chunk after it; here a chunk ends
where the bytes themselves say so (a rolling hash of the last WINDOW bytes has its low bits
zero), so the cuts move with the content and only the chunks around a change differ. Cloud and
device cut alike because both use this module.

In S3 (s3_layout.py) a file of at least CHUNKED_MIN_BYTES is stored as its chunks (each a
content-addressed object) and a chunk list `{"schema": 1, "size", "sha256", "chunks":
[[sha256, size], ...]}` under the file's own sha256 with `.chunks` appended.
"""

from __future__ import annotations

import hashlib
import json
import mmap
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from components.common.errors import BundleError

CHUNKED_MIN_BYTES = 256 << 10
WINDOW = 48
BOUNDARY_MASK = (1 << 16) - 1  # about one cut every 64 KiB
MIN_CHUNK = 16 << 10
MAX_CHUNK = 256 << 10
BLOCK = 8 << 20  # bytes hashed at once (memory: about 12 x this)
CHUNK_LIST_SCHEMA = 1
# One random 32-bit value per byte value, fixed forever: changing it changes every cut.
_GEAR = np.random.default_rng(20240611).integers(0, 2**32, 256, dtype=np.uint64)


def is_chunked(size: int) -> bool:
    return size >= CHUNKED_MIN_BYTES


def _candidates(data: np.ndarray) -> np.ndarray:
    """Offsets (ends of chunks) where the sum of the last WINDOW gear values has its low
    bits zero, over the whole array, computed block by block."""
    found = []
    for start in range(0, len(data), BLOCK):
        lead = max(0, start - WINDOW + 1)
        gear = _GEAR[data[lead : start + BLOCK]]
        sums = np.cumsum(gear)
        window = sums[WINDOW - 1 :] - np.concatenate([np.zeros(1, np.uint64), sums[:-WINDOW]])
        ends = np.nonzero((window & np.uint64(BOUNDARY_MASK)) == 0)[0] + lead + WINDOW  # exclusive ends
        found.append(ends[ends > start])
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def cut(data: bytes | memoryview) -> list[tuple[int, int]]:
    """(offset, size) of each chunk of `data`, in order, covering all of it."""
    array = np.frombuffer(data, dtype=np.uint8)
    chunks, start = [], 0
    for end in _candidates(array).tolist() + [len(array)]:
        while end - start > MAX_CHUNK:
            chunks.append((start, MAX_CHUNK))
            start += MAX_CHUNK
        if end - start >= MIN_CHUNK or (end == len(array) and end > start):
            chunks.append((start, end - start))
            start = end
    return chunks


@dataclass(frozen=True)
class ChunkList:
    size: int
    sha256: str
    chunks: list[tuple[str, int]]  # (sha256, size), in order

    @classmethod
    def of(cls, data: bytes) -> "ChunkList":
        view = memoryview(data)
        chunks = [(hashlib.sha256(view[o : o + n]).hexdigest(), n) for o, n in cut(view)]
        return cls(len(data), hashlib.sha256(data).hexdigest(), chunks)

    def to_json(self) -> bytes:
        body = {"schema": CHUNK_LIST_SCHEMA, "size": self.size, "sha256": self.sha256}
        return json.dumps({**body, "chunks": [list(c) for c in self.chunks]}).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> "ChunkList":
        try:
            raw = json.loads(data)
            chunks = [(str(sha), int(size)) for sha, size in raw["chunks"]]
            parsed = cls(int(raw["size"]), str(raw["sha256"]), chunks)
        except (ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"{where}: not a chunk list ({type(exc).__name__}: {exc})") from None
        if raw.get("schema") != CHUNK_LIST_SCHEMA or sum(n for _, n in chunks) != parsed.size:
            raise BundleError(f"{where}: chunk list schema or sizes do not add up")
        return parsed


@contextmanager
def mapped(path: Path) -> Iterator[bytes | mmap.mmap]:
    """A file's bytes, memory-mapped read-only: a file of gigabytes (a million items' re-rank
    vectors) is cut and hashed through the page cache, never copied into memory whole."""
    with open(path, "rb") as handle:
        if handle.seek(0, 2) == 0:
            yield b""  # mmap refuses empty files
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            yield data


def local_chunks(paths: list[Path]) -> dict[str, tuple[Path, int, int]]:
    """{chunk sha256: (file, offset, size)} over files the device holds, cut as S3's are."""
    held: dict[str, tuple[Path, int, int]] = {}
    for path in paths:
        try:
            with mapped(path) as data:
                view = memoryview(data)
                for offset, size in cut(view):
                    digest = hashlib.sha256(view[offset : offset + size]).hexdigest()
                    held.setdefault(digest, (path, offset, size))
                view.release()
        except (OSError, ValueError):
            continue
    return held
