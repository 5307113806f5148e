"""Decoding image bytes (uploads, query images, catalog photos)."""

import struct

import cv2
import numpy as np
import pytest

from components.common.errors import ImageError
from components.common.images import MAX_IMAGE_PIXELS, ImageTooLarge, check_video, decode_image, image_size
from tests.support.images import big_clip, png_bomb


def test_an_encoded_image_decodes_to_bgr_uint8():
    image = np.zeros((12, 20, 3), np.uint8)
    image[:, :, 2] = 255  # red in BGR
    decoded = decode_image(cv2.imencode(".png", image)[1].tobytes())
    assert decoded.dtype == np.uint8 and decoded.shape == (12, 20, 3)
    np.testing.assert_array_equal(decoded, image)


def test_empty_or_undecodable_bytes_name_the_source():
    with pytest.raises(ImageError, match="upload: empty file"):
        decode_image(b"", "upload")
    with pytest.raises(ImageError, match="the uploaded file: not a decodable image"):
        decode_image(b"\xff\xd8\xff\xe0 garbage", "the uploaded file")


# ---- decompression bombs (issue 14, item 3) ------------------------------------------------
ENCODINGS = {
    "jpeg": (".jpg", []),
    "progressive jpeg": (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    "png": (".png", []),
    "webp lossy": (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
    "webp lossless": (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
    "bmp": (".bmp", []),
    "tiff": (".tiff", []),
    "ppm": (".ppm", []),
    "pgm": (".pgm", []),
}


@pytest.mark.parametrize("name", ENCODINGS)
def test_the_pixel_size_is_read_from_the_header_of_every_format_decoded(name):
    ext, params = ENCODINGS[name]
    image = np.random.default_rng(0).integers(0, 255, (23, 37, 3), dtype=np.uint8)
    data = cv2.imencode(ext, image[:, :, 0] if ext == ".pgm" else image, params)[1].tobytes()
    assert image_size(data) == (37, 23)
    assert decode_image(data).shape == (23, 37, 3)


@pytest.fixture
def no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("cv2.imdecode was called: the image was decoded before its size was checked")

    monkeypatch.setattr(cv2, "imdecode", refuse)


def test_a_png_bomb_is_refused_from_its_header_without_decoding(no_decoding):
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 500_000
    with pytest.raises(
        ImageTooLarge,
        match=r"upload: the image is 20000x20000 pixels \(400.0 megapixels\); " r"the limit is 50 megapixels",
    ):
        decode_image(bomb, "upload")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is rewritten to claim another size."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_lossless_claiming(width: int, height: int) -> bytes:
    bits = (width - 1) | (height - 1) << 14
    body = b"\x2f" + bits.to_bytes(4, "little") + b"\x00" * 16
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(body)) + b"WEBPVP8L" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    "bomb", [jpeg_claiming(65000, 60000), webp_lossless_claiming(16384, 16384)], ids=["jpeg", "webp"]
)
def test_other_formats_claiming_too_many_pixels_are_refused(bomb, no_decoding):
    with pytest.raises(ImageTooLarge, match="megapixels"):
        decode_image(bomb, "catalog photo")


def test_just_under_the_limit_is_checked_but_not_refused():
    assert image_size(jpeg_claiming(10000, 5000)) == (10000, 5000)
    assert 10000 * 5000 <= MAX_IMAGE_PIXELS


@pytest.mark.parametrize("ext", [".sr", ".hdr", ".pfm"])
def test_formats_whose_header_is_not_read_are_refused_by_name(ext, no_decoding):
    data = cv2.imencode(ext, np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageError, match="not a decodable image \\(not JPEG, PNG, WebP, BMP, TIFF or PNM"):
        decode_image(data, "photo")


def test_headers_cut_short_are_not_read():
    data = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    for cut in (4, 12, 20):
        assert image_size(data[:cut]) is None
    assert image_size(jpeg_claiming(100, 100)[:30]) is None


def test_an_8k_clip_is_refused_before_its_first_frame_is_decoded(tmp_path):
    clip = big_clip(tmp_path / "8k.mp4")
    capture = cv2.VideoCapture(str(clip))
    try:
        with pytest.raises(
            ImageTooLarge,
            match=r"clip: the video's frame size is 7680x4320 pixels \(33.2 megapixels\);"
            r" the limit is 8.29 megapixels",
        ):
            check_video(capture, "clip")
    finally:
        capture.release()
