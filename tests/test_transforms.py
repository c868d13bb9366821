"""Image transforms and the ImageNet preprocessing built from them."""
import numpy as np
import pytest

from tinyvgg.data.transforms import (bilinear_weights, center_crop, normalize, resize,
                                     resize_shorter_side)
from tinyvgg.models import IMAGENET_MEAN, IMAGENET_STD, preprocess, top_k


@pytest.mark.parametrize("in_size, out_size", [(10, 3), (3, 10), (7, 7), (256, 224), (1, 5)])
def test_bilinear_weights_are_a_normalised_local_average(in_size, out_size):
    w = bilinear_weights(in_size, out_size)
    assert w.shape == (out_size, in_size) and (w >= 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    if in_size == out_size:
        np.testing.assert_array_equal(w, np.eye(in_size))


def test_resize_keeps_constants_and_linear_ramps():
    image = np.full((9, 14, 3), 77, np.uint8)
    np.testing.assert_allclose(resize(image, (5, 6)), 77.0)
    ramp = np.tile(np.arange(16, dtype=np.float64), (4, 1))
    doubled = resize(ramp, (8, 32))[:, :, 0]
    # away from the borders, sampling a linear function at the new pixel centres is exact
    np.testing.assert_allclose(doubled[:, 2:-2], np.tile((np.arange(32) + 0.5) / 2 - 0.5,
                                                         (8, 1))[:, 2:-2])


def test_shrinking_averages_instead_of_sampling():
    stripes = np.tile(np.array([0.0, 255.0]), (8, 50))  # 1-pixel stripes, 100 wide
    small = resize(stripes, (8, 10))[:, :, 0]
    np.testing.assert_allclose(small[:, 1:-1], 127.5, atol=2.0)  # no aliasing to 0 or 255


def test_resize_shorter_side_keeps_the_aspect_ratio():
    assert resize_shorter_side(np.zeros((300, 400, 3)), 256).shape == (256, 341, 3)
    assert resize_shorter_side(np.zeros((500, 100)), 50).shape == (250, 50, 1)


def test_center_crop_takes_the_middle_and_refuses_a_small_image():
    image = np.arange(5 * 6).reshape(5, 6)
    np.testing.assert_array_equal(center_crop(image, 3)[:, :, 0], image[1:4, 1:4])
    with pytest.raises(ValueError, match="center_crop: a 7x7 crop needs.*got 5x6"):
        center_crop(image, 7)


def test_transforms_reject_what_is_not_an_image():
    with pytest.raises(ValueError, match=r"resize: expected an image.*\(2, 3, 4, 5\)"):
        resize(np.zeros((2, 3, 4, 5)), (2, 2))
    with pytest.raises(ValueError, match="resize: size must be positive"):
        resize(np.zeros((4, 4)), (0, 2))
    with pytest.raises(ValueError, match=r"preprocess: expected an RGB image.*\(8, 8, 4\)"):
        preprocess(np.zeros((8, 8, 4), np.uint8))


def test_preprocess_gives_a_normalised_nchw_batch():
    image = np.empty((300, 260, 3), np.uint8)
    image[...] = (255, 128, 0)
    batch = preprocess(image)
    assert batch.shape == (1, 3, 224, 224) and batch.dtype == np.float32
    expected = (np.array([255, 128, 0]) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(batch[0, :, 100, 100], expected, rtol=1e-6)
    np.testing.assert_allclose(normalize(np.ones((2, 3)), (1, 0, 1), (1, 2, 4)),
                               [[0, 0.5, 0], [0, 0.5, 0]])


def test_top_k_orders_classes_by_probability():
    classes, probabilities = top_k(np.array([[0.0, 3.0, 1.0, 2.0]]), k=3)
    assert classes.tolist() == [[1, 3, 2]]
    exp = np.exp([0.0, 3.0, 1.0, 2.0])
    np.testing.assert_allclose(probabilities, [exp[[1, 3, 2]] / exp.sum()])
