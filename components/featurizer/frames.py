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
from components.featurizer.settings import TriggerSettings
from components.featurizer.trigger import changed_mask, small_view

MAX_ITEM_FRACTION = 0.5  # of the view an item may cover (see trigger.py: beyond it, another scene)
CROP_MARGIN = 0.12  # of the item's box on each side: the catalog photos show some background


def distinct_frames(vectors: np.ndarray, max_similarity: float) -> list[int]:
    """Indices of the frames kept: the first, then each one not too similar to the last kept."""
    kept: list[int] = []
    for i, vector in enumerate(vectors):
        if not kept or float(vector @ vectors[kept[-1]]) <= max_similarity:
            kept.append(i)
    return kept


def frames_with_item(frames: list[np.ndarray], settings: TriggerSettings) -> list[int]:
    """Indices of the clip frames that show an item, by the camera trigger's presence test.

    As the kiosk camera does, a clip is taken to start on the empty scene, seen from a fixed
    camera, with items covering less than half of it. The first frame is that empty scene when
    the last frame shows the same scene (the clip starts and ends empty), some frame differs
    from it (an item came in) and none differs over more than half of the view (a cut to
    another scene, not an item). Otherwise the empty scene is not known and every frame is
    kept; local_search's min_score still drops frames that match nothing."""
    views = [small_view(frame) for frame in frames]
    if len(views) < 3:
        return list(range(len(views)))
    changed = [float(changed_mask(view, views[0], settings.pixel_threshold).mean()) for view in views]
    with_item = [i for i, fraction in enumerate(changed) if fraction > settings.present_fraction]
    ends_empty = len(views) - 1 not in with_item
    if not ends_empty or not with_item or max(changed) > MAX_ITEM_FRACTION:
        return list(range(len(views)))
    return with_item


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
