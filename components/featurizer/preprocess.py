"""Reading images and the one preprocessing step shared by catalog images and camera frames.

Catalog images (build-index, evaluate, fine-tune) and camera frames (the featurizer
component) must go through exactly the same function, or the vectors they produce would
not be comparable. Everything here works on OpenCV's BGR uint8 arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from components.common.errors import ImageError
from components.common.images import decode_image

RESIZE_MODES = ("center_crop", "stretch")
COLOR_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input tensor (part of the model fingerprint)."""

    height: int
    width: int
    color_order: str = "RGB"
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)  # ImageNet, 0-255 scale
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    resize: str = "center_crop"

    def __post_init__(self):
        if self.color_order not in COLOR_ORDERS:
            raise ValueError(f"color_order must be one of {COLOR_ORDERS}, not {self.color_order!r}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, not {self.resize!r}")
        if self.height < 8 or self.width < 8:
            raise ValueError(f"input size {self.height}x{self.width} is too small")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values each, std above zero")

    def as_dict(self) -> dict:
        return {
            "input_size": [self.height, self.width],
            "color_order": self.color_order,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
        }


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file from disk (BGR uint8); ImageError names the file and the reason."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    return decode_image(data, str(path))


def resize_for_input(image: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Resize (and centre-crop) a BGR image to the network's input size, still uint8 BGR."""
    h, w = image.shape[:2]
    if prep.resize == "stretch":
        return cv2.resize(image, (prep.width, prep.height), interpolation=cv2.INTER_AREA)
    scale = max(prep.height / h, prep.width / w)
    new_h, new_w = max(prep.height, round(h * scale)), max(prep.width, round(w * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    top, left = (new_h - prep.height) // 2, (new_w - prep.width) // 2
    return resized[top : top + prep.height, left : left + prep.width]


def shrink(image: np.ndarray, *, longest: int | None = None, shortest: int | None = None) -> np.ndarray:
    """Scale down (never up) so the longest (or shortest) side is at most the given pixels."""
    h, w = image.shape[:2]
    scale = longest / max(h, w) if longest is not None else shortest / min(h, w)
    if scale >= 1:
        return image
    return cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )


def to_tensor(image: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """A BGR uint8 image already at input size -> normalised CHW float32."""
    if prep.color_order == "RGB":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    # one contiguous copy, then in place: 20x faster than arithmetic on the strided view, same values
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    chw -= np.asarray(prep.mean, dtype=np.float32).reshape(3, 1, 1)
    chw /= np.asarray(prep.std, dtype=np.float32).reshape(3, 1, 1)
    return chw


def preprocess(image: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """The shared step: any BGR uint8 image (catalog photo or camera frame) -> CHW float32."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageError(f"image has shape {image.shape}, expected HxWx3")
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return to_tensor(resize_for_input(image, prep), prep)
