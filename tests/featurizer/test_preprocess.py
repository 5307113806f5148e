import cv2
import numpy as np
import pytest

from components.common.errors import ImageError
from components.featurizer.preprocess import Preprocessing, preprocess, read_image, shrink, to_tensor
from tests.conftest import demo_image

PREP = Preprocessing(height=32, width=48, mean=(0, 0, 0), std=(1, 1, 1))


def test_output_is_chw_float32_at_input_size_for_any_frame_shape():
    for shape in ((480, 640, 3), (100, 30, 3), (31, 47, 3)):
        tensor = preprocess(np.zeros(shape, np.uint8), PREP)
        assert tensor.shape == (3, 32, 48) and tensor.dtype == np.float32


def test_colour_order_and_normalisation():
    blue = np.zeros((10, 10, 3), np.uint8)
    blue[:, :, 0] = 255  # OpenCV is BGR: channel 0 is blue
    rgb = preprocess(blue, Preprocessing(height=8, width=8, mean=(0, 0, 255), std=(1, 1, 255)))
    assert rgb[2].max() == pytest.approx(0.0)  # blue channel last in RGB, minus mean 255
    assert rgb[0].max() == pytest.approx(0.0)
    bgr = preprocess(
        blue, Preprocessing(height=8, width=8, color_order="BGR", mean=(0, 0, 0), std=(255, 1, 1))
    )
    assert bgr[0].min() == pytest.approx(1.0)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_the_tensor_is_exactly_pixel_minus_mean_over_std(order):
    """Bundles built earlier hold vectors of this formula: a faster tensor must give the same values."""
    prep = Preprocessing(height=24, width=24, color_order=order, mean=(120.5, 110, 100), std=(60, 57.5, 58))
    image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    crop = image[8:32, 3:27]  # a view, as the centre crop gives
    pixels = crop[:, :, ::-1] if order == "RGB" else crop
    expected = (pixels.astype(np.float32).transpose(2, 0, 1) - np.float32(prep.mean).reshape(3, 1, 1)) / (
        np.float32(prep.std).reshape(3, 1, 1)
    )
    tensor = to_tensor(crop, prep)
    assert np.array_equal(tensor, expected) and tensor.flags["C_CONTIGUOUS"]


def test_center_crop_keeps_the_middle_of_a_wide_frame():
    frame = np.zeros((100, 300, 3), np.uint8)
    frame[:, 100:200] = 200  # bright centre third
    tensor = preprocess(frame, Preprocessing(height=10, width=10, mean=(0, 0, 0), std=(1, 1, 1)))
    assert tensor.min() > 150  # only the centre survives the crop
    stretched = preprocess(
        frame, Preprocessing(height=10, width=10, mean=(0, 0, 0), std=(1, 1, 1), resize="stretch")
    )
    assert stretched.min() < 50


def test_grey_and_alpha_images_are_accepted():
    assert preprocess(np.zeros((20, 20), np.uint8), PREP).shape == (3, 32, 48)
    assert preprocess(np.zeros((20, 20, 4), np.uint8), PREP).shape == (3, 32, 48)


def test_same_pixels_from_file_or_camera_give_the_same_tensor():
    path = demo_image("dress")
    from_file = preprocess(read_image(path), PREP)
    from_camera = preprocess(cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR), PREP)
    np.testing.assert_array_equal(from_file, from_camera)


def test_not_an_image_names_the_source(tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_text("this is text")
    with pytest.raises(ImageError, match="photo.jpg: not a decodable image"):
        read_image(fake)
    with pytest.raises(ImageError, match="missing.jpg: image file not found"):
        read_image(tmp_path / "missing.jpg")


def test_bad_preprocessing_values_are_refused():
    with pytest.raises(ValueError, match="color_order"):
        Preprocessing(height=32, width=32, color_order="RGBA")
    with pytest.raises(ValueError, match="std"):
        Preprocessing(height=32, width=32, std=(1, 0, 1))


def test_shrink_scales_down_by_either_side_and_never_up():
    image = np.zeros((300, 600, 3), np.uint8)
    assert shrink(image, longest=150).shape[:2] == (75, 150)
    assert shrink(image, shortest=100).shape[:2] == (100, 200)
    assert shrink(image, longest=1000) is image and shrink(image, shortest=300) is image
