"""Image work around the CNN: the item's crop, thumbnails, query images, distinct clip frames."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import cv2
import numpy as np

from components.common.images import decode_image
from components.common.messages import MessageError, QueryMessage
from components.featurizer.preprocess import shrink
from components.featurizer.query_files import read_query_file

CROP_MARGIN = 0.12  # of the item's box on each side: the catalog photos show some background


def distinct_frames(vectors: np.ndarray, max_similarity: float) -> list[int]:
    """Indices of the frames kept: the first, then each one not too similar to the last kept."""
    kept: list[int] = []
    for i, vector in enumerate(vectors):
        if not kept or float(vector @ vectors[kept[-1]]) <= max_similarity:
            kept.append(i)
    return kept


def load_query_image(query: QueryMessage, upload_dir: Path) -> np.ndarray:
    """The query's picture: a file in `upload_dir` (QueryFileRefused for any other), or its image_b64."""
    if query.image_path:
        return decode_image(read_query_file(query.image_path, upload_dir), query.image_path)
    try:
        data = base64.b64decode(query.image_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MessageError(f"image_b64 is not base64 ({exc})") from None
    return decode_image(data, f"query {query.query_id} image_b64")


def crop_to_box(frame: np.ndarray, box: tuple[float, float, float, float], margin: float = CROP_MARGIN):
    """The item's box (fractions of the frame) plus a margin; the whole frame if the box is tiny."""
    height, width = frame.shape[:2]
    x, y, w, h = box
    left, right = (
        max(0, int((x - margin * w) * width)),
        min(width, int(np.ceil((x + w + margin * w) * width))),
    )
    top, bottom = (
        max(0, int((y - margin * h) * height)),
        min(height, int(np.ceil((y + h + margin * h) * height))),
    )
    if right - left < 32 or bottom - top < 32:
        return frame
    return frame[top:bottom, left:right]


def thumbnail_b64(image: np.ndarray, longest_px: int, quality: int = 70) -> str:
    if longest_px <= 0:
        return ""
    ok, data = cv2.imencode(".jpg", shrink(image, longest=longest_px), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return base64.b64encode(data.tobytes()).decode("ascii") if ok else ""
