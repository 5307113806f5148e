"""Hostile images for the tests that refuse them: small files that decode to huge ones."""

from __future__ import annotations

import functools
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@functools.lru_cache(maxsize=4)
def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid grey PNG of `width` x `height` black pixels: about 390 KB for 20000x20000,
    which a decoder turns into 1.2 GB of BGR pixels."""
    packer = zlib.compressobj(9)
    rows = (b"\x00" * (width + 1)) * 100  # filter byte + one byte a pixel, 100 rows at a time
    parts = [packer.compress(rows) for _ in range(height // 100)]
    parts += [packer.compress((b"\x00" * (width + 1)) * (height % 100)), packer.flush()]
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def big_clip(path: Path, width: int = 7680, height: int = 4320, frames: int = 1) -> Path:
    """An MP4 (mp4v) of black 8K frames: a few hundred KB on disk."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 1, (width, height))
    assert writer.isOpened(), "OpenCV cannot write MP4 here"
    frame = np.zeros((height, width, 3), np.uint8)
    for _ in range(frames):
        writer.write(frame)
    writer.release()
    return path
