"""Decoding image bytes, shared by the featurizer (query images), the display (uploads) and the cloud side."""
from __future__ import annotations

import cv2
import numpy as np

from components.common.errors import ImageError


def decode_image(data: bytes, source: str = "image") -> np.ndarray:
    """Decode JPEG/PNG/WebP/... bytes into a BGR uint8 array; ImageError names `source`."""
    if not data:
        raise ImageError(f"{source}: empty file, not an image")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{source}: not a decodable image")
    return image
