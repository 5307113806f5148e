"""Decoding image bytes, shared by the featurizer (query images), the display (uploads) and the cloud side.

Decompression bombs: a few hundred KB of PNG can claim 20000x20000 pixels (1.2 GB once
decoded). Every image's pixel size is read from its header BEFORE it is decoded, and one
larger than `MAX_IMAGE_PIXELS` is refused with `ImageTooLarge`; video clips are checked the
same way against `MAX_VIDEO_PIXELS` before their first frame is decoded (`check_video`).
Only formats whose header is read here are decoded: JPEG, PNG, WebP, BMP, TIFF and PNM.
"""

from __future__ import annotations

import re
import struct

import cv2
import numpy as np

from components.common.errors import ImageError

MAX_IMAGE_PIXELS = 50_000_000  # 50 megapixels: above any phone's default photo; 150 MB once decoded
MAX_VIDEO_FRAME = (3840, 2160)  # 4K UHD: video clips' frames may hold as many pixels (8.3 megapixels)
MAX_VIDEO_PIXELS = MAX_VIDEO_FRAME[0] * MAX_VIDEO_FRAME[1]
FORMATS = "JPEG, PNG, WebP, BMP, TIFF or PNM"


class ImageTooLarge(ImageError):
    """An image (or video frame) with more pixels than the limit: refused before decoding."""


def decode_image(data: bytes, source: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode JPEG/PNG/WebP/BMP/TIFF/PNM bytes into a BGR uint8 array; ImageError names `source`.

    The size is read from the header first: more than `max_pixels` raises ImageTooLarge
    without decoding anything."""
    if not data:
        raise ImageError(f"{source}: empty file, not an image")
    size = image_size(data)
    if size is None:
        raise ImageError(f"{source}: not a decodable image (not {FORMATS}, or its header is damaged)")
    check_pixels(*size, source=source, max_pixels=max_pixels)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{source}: not a decodable image")
    return image


def check_pixels(
    width: int, height: int, *, source: str, max_pixels: int = MAX_IMAGE_PIXELS, what: str = "image"
) -> None:
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{source}: the {what} is {width}x{height} pixels ({width * height / 1e6:.1f} "
            f"megapixels); the limit is {max_pixels / 1e6:.3g} megapixels"
        )


def check_video(capture: "cv2.VideoCapture", source: str, max_pixels: int = MAX_VIDEO_PIXELS) -> None:
    """Refuse (ImageTooLarge) an opened clip whose frames are larger than `max_pixels`,
    before any frame is decoded."""
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    check_pixels(width, height, source=source, max_pixels=max_pixels, what="video's frame size")


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a JPEG, PNG, WebP, BMP, TIFF or PNM file, without
    decoding it; None for another format or a header cut short."""
    try:
        for reader in (_jpeg, _png, _webp, _bmp, _tiff, _pnm):
            size = reader(data)
            if size is not None:
                return size
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _png(data: bytes):
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes):
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


def _webp(data: bytes):
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk, body = data[12:16], data[20:]
    if chunk == b"VP8X":  # extended: the canvas size (what the decoder allocates)
        return 1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little")
    if chunk == b"VP8 " and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", body[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and body[:1] == b"\x2f":
        bits = int.from_bytes(body[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


def _bmp(data: bytes):
    if data[:2] != b"BM":
        return None
    if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 core header
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)


def _tiff(data: bytes):
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(data[:4])
    if order is None:
        return None
    offset = struct.unpack(order + "I", data[4:8])[0]
    count = struct.unpack(order + "H", data[offset : offset + 2])[0]
    found = {}
    for n in range(count):
        tag, kind = struct.unpack(order + "HH", data[offset + 2 + 12 * n : offset + 6 + 12 * n])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            value = data[offset + 10 + 12 * n : offset + 14 + 12 * n]
            found[tag] = struct.unpack(
                order + ("H" if kind == 3 else "I"), value[:2] if kind == 3 else value
            )[0]
    return (found[256], found[257]) if len(found) == 2 else None


_PNM = re.compile(rb"P[1-6](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)")


def _pnm(data: bytes):
    match = _PNM.match(data[:1024])
    return (int(match[1]), int(match[2])) if match else None
