"""The bundle's thumbnails: JPEGs of at most 224 px, so the kiosk shows pictures offline.

Rows are featurized out of order (reused rows first, then batches, or by Ray workers), so a
thumbnail is first written under its catalog row's position and renamed to
`thumbnails/<faiss_id>.jpg` once the usable rows are known.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from components.common.bundle import THUMBNAIL_DIR
from components.featurizer.preprocess import shrink

THUMBNAIL_MAX_SIDE = 224
THUMBNAIL_JPEG_QUALITY = 82


def encode_thumbnail(image: np.ndarray) -> bytes:
    """A decoded BGR image as thumbnail JPEG bytes (the same image gives the same bytes)."""
    small = shrink(image, longest=THUMBNAIL_MAX_SIDE)
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, THUMBNAIL_JPEG_QUALITY])
    if not ok:
        raise ValueError("OpenCV could not encode a thumbnail")
    return data.tobytes()


class PendingThumbnails:
    def __init__(self, bundle_dir: Path):
        self.folder = Path(bundle_dir) / THUMBNAIL_DIR
        self.folder.mkdir(exist_ok=True)

    def _pending(self, row: int) -> Path:
        return self.folder / f".row-{row}.jpg"

    def put(self, row: int, jpeg: bytes) -> None:
        """The thumbnail of catalog row `row` (its position in the catalog's items)."""
        self._pending(row).write_bytes(jpeg)

    def link(self, row: int, source: Path) -> None:
        """The thumbnail of catalog row `row` is the file `source` (bundle files are never
        written in place, so a hard link is safe; a copy across file systems)."""
        try:
            os.link(source, self._pending(row))
        except OSError:
            shutil.copyfile(source, self._pending(row))

    def finish(self, rows: list[int]) -> list[str]:
        """Name the thumbnail of rows[i] `thumbnails/<i>.jpg`, drop the others; returns the
        relative paths, i-th for rows[i]."""
        paths = []
        for faiss_id, row in enumerate(rows):
            rel = f"{THUMBNAIL_DIR}/{faiss_id}.jpg"
            self._pending(row).rename(self.folder.parent / rel)
            paths.append(rel)
        for left in self.folder.glob(".row-*.jpg"):
            left.unlink()
        return paths
