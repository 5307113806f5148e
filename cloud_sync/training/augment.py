"""Shop-camera augmentation of BGR uint8 images, applied before the shared `preprocess` step.

A kiosk camera sees an item held at varying distance and angle, off-centre, under shop
lighting of any colour, sometimes out of focus or moving. Each transform below mimics one
of those, and all of them stay in BGR uint8 space so that the network is then fed exactly
what inference feeds it (`components.featurizer.preprocess.preprocess`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CameraAugment:
    """Random crop or zoom-out + rotation + flip, colour/lighting jitter, blur and sensor noise."""

    size: int  # output is size x size
    scale: tuple[float, float] = (0.25, 1.0)  # crop area, as a fraction of the image
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio
    zoom_out_p: float = 0.4  # share of crops larger than the photo
    zoom_out: tuple[float, float] = (1.2, 2.5)  # their area, relative to the photo's centre square
    max_rotation: float = 15.0  # degrees, either way
    brightness: float = 0.3  # multiplicative, +-
    contrast: float = 0.3
    saturation: float = 0.35
    hue: float = 6.0  # OpenCV hue units (0-180), +-
    white_balance: float = 0.1  # per-channel gain, +-
    blur_p: float = 0.3
    max_blur_sigma: float = 1.5
    noise_p: float = 0.2
    max_noise: float = 8.0  # standard deviation, 0-255 scale

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = self.crop(image, rng)
        out = self.colour(out, rng)
        if rng.random() < self.blur_p:
            out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, self.max_blur_sigma))
        if rng.random() < self.noise_p:
            noise = rng.normal(0.0, rng.uniform(1.0, self.max_noise), out.shape)
            out = np.clip(out + noise, 0, 255).astype(np.uint8)
        return out

    def crop(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random-resized crop, rotated and maybe mirrored, in one affine warp.

        Sometimes the "crop" is larger than the photo (the item held further away): the
        photo then sits, smaller and off-centre, on a plain background of a random colour,
        as an item framed by the camera with some counter or wall around it does.
        """
        h, w = image.shape[:2]
        border, fill = cv2.BORDER_REFLECT_101, (0, 0, 0)
        if rng.random() < self.zoom_out_p:
            side = min(h, w) * math.sqrt(rng.uniform(*self.zoom_out))
            crop_w = crop_h = side
            cx = w / 2 + rng.uniform(-1, 1) * max(0.0, (side - w) / 2)
            cy = h / 2 + rng.uniform(-1, 1) * max(0.0, (side - h) / 2)
            border, fill = cv2.BORDER_CONSTANT, tuple(float(v) for v in rng.integers(40, 230, 3))
        else:
            crop_w, crop_h = _crop_size(h, w, rng, self.scale, self.ratio)
            cx = rng.uniform(crop_w / 2, w - crop_w / 2)
            cy = rng.uniform(crop_h / 2, h - crop_h / 2)
        angle = math.radians(rng.uniform(-self.max_rotation, self.max_rotation))
        flip = -1.0 if rng.random() < 0.5 else 1.0
        sx, sy = crop_w / self.size, crop_h / self.size
        cos, sin = math.cos(angle), math.sin(angle)
        # output pixel (u, v) -> source pixel: centre + R(angle) @ diag(flip*sx, sy) @ (u, v) - half
        a = np.array([[cos * flip * sx, -sin * sy], [sin * flip * sx, cos * sy]])
        half = np.array([self.size / 2, self.size / 2])
        matrix = np.hstack([a, (np.array([cx, cy]) - a @ half)[:, None]])
        return cv2.warpAffine(
            image,
            matrix,
            (self.size, self.size),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=border,
            borderValue=fill,
        )

    def colour(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Brightness, contrast, saturation, white balance and hue of shop lighting."""
        out = image.astype(np.float32)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)[:, :, None]
        saturation = 1 + rng.uniform(-self.saturation, self.saturation)
        out = gray + saturation * (out - gray)
        contrast = 1 + rng.uniform(-self.contrast, self.contrast)
        out = gray.mean() + contrast * (out - gray.mean())
        gains = (1 + rng.uniform(-self.brightness, self.brightness)) * (
            1 + rng.uniform(-self.white_balance, self.white_balance, 3)
        )
        out = np.clip(out * gains.astype(np.float32), 0, 255).astype(np.uint8)
        if self.hue:
            hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV)
            shift = int(round(rng.uniform(-self.hue, self.hue)))
            hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int16) + shift) % 180).astype(np.uint8)
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return out


def _crop_size(h: int, w: int, rng: np.random.Generator, scale, ratio) -> tuple[float, float]:
    """Width and height of a crop with a random area fraction and aspect ratio that fits."""
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        crop_w, crop_h = math.sqrt(area * aspect), math.sqrt(area / aspect)
        if crop_w <= w and crop_h <= h:
            return crop_w, crop_h
    side = min(h, w)  # fall back to the centre square that inference sees
    return float(side), float(side)
