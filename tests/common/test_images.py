"""Decoding image bytes (uploads, query images, catalog photos)."""
import cv2
import numpy as np
import pytest

from components.common.errors import ImageError
from components.common.images import decode_image


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
