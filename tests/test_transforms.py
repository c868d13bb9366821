"""Image transforms and the ImageNet preprocessing built from them; the data loader's batch
transforms: their arithmetic on small hand-checkable batches, seeding, strided inputs and
argument checks."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvgg.data.transforms import (GREY_WEIGHTS, IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC,
                                     CenterCrop, ColorJitter, Compose, HueSaturationJitter,
                                     Normalize, Pad, RandomCrop, RandomHorizontalFlip,
                                     RandomErasing, RandomRotation, RandomScaleCrop, RGBShift,
                                     ToFloat, adjust_hue_saturation, bilinear_weights,
                                     center_crop, erase, erase_naive, hue_saturation_naive,
                                     normalize, resize,
                                     resize_shorter_side, rotate, rotate_naive)
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


# --- batch transforms -----------------------------------------------------------------

#: one of each random batch transform, for the properties they all share
RANDOM_TRANSFORMS = [RandomCrop(5, padding=2), RandomHorizontalFlip(), ColorJitter(0.4, 0.4),
                     RGBShift(std=0.5), RandomScaleCrop(5, 6, 9), RandomRotation(30, fill=0.5),
                     HueSaturationJitter(hue=0.2, saturation=0.5), RandomErasing(p=0.9),
                     RandomErasing(area=(0.1, 0.5), ratio=0.5, value=0.5)]
DETERMINISTIC_TRANSFORMS = [Pad(2, value=0.5), CenterCrop((4, 5)),
                            Normalize((0.1, 0.2, 0.3), (0.5, 1.0, 2.0))]


def images(seed, shape=(6, 3, 7, 8), dtype=np.float32):
    """A float batch in [0, 1] with no two equal pixels (so any reordering shows)."""
    return np.random.default_rng(seed).random(shape).astype(dtype)


def gen(seed=0):
    return np.random.default_rng(seed)


def test_to_float_scales_uint8_to_the_unit_interval():
    batch = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    out = ToFloat()(batch)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    np.testing.assert_allclose(out.ravel(), np.arange(256) / 255, rtol=1e-6)
    assert ToFloat(dtype=np.float64)(batch).dtype == np.float64
    np.testing.assert_array_equal(ToFloat(scale=2.0)(batch[:, :, :1]), 2.0 * batch[:, :, :1])
    with pytest.raises(TypeError,
                       match="ToFloat: expected integer images such as uint8, got float32"):
        ToFloat()(out)
    with pytest.raises(ValueError, match="ToFloat: dtype must be float32 or float64, got float16"):
        ToFloat(dtype=np.float16)


def test_pad_makes_mnist_32x32_with_a_constant_border():
    batch = images(0, (2, 1, 28, 28))
    out = Pad(2)(batch)
    assert out.shape == (2, 1, 32, 32)
    np.testing.assert_array_equal(out[:, :, 2:30, 2:30], batch)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert (out[:, :, border] == 0).all()
    assert (Pad(1, value=0.25)(batch)[:, :, 0] == 0.25).all()


def test_random_crop_takes_a_shifted_window_of_the_padded_image():
    n, padding, size = 40, 3, (4, 6)
    batch = np.arange(n * 2 * 5 * 7, dtype=np.float64).reshape(n, 2, 5, 7)
    out = RandomCrop(size, padding=padding)(batch, gen(7))
    assert out.shape == (n, 2, 4, 6)
    padded = np.pad(batch, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2))
    draws = gen(7)  # the same draws: every top first, then every left
    tops = draws.integers(0, 5 + 2 * padding - 4 + 1, n)
    lefts = draws.integers(0, 7 + 2 * padding - 6 + 1, n)
    for i in range(n):
        window = padded[i, :, tops[i]:tops[i] + 4, lefts[i]:lefts[i] + 6]
        np.testing.assert_array_equal(out[i], window)
    assert tops.min() == 0 and tops.max() == 7 and lefts.min() == 0 and lefts.max() == 7
    np.testing.assert_array_equal(RandomCrop((5, 7))(batch, gen(1)), batch)  # the only window


def test_random_crop_refuses_a_crop_bigger_than_the_padded_image():
    with pytest.raises(ValueError, match="RandomCrop: a 9x9 crop needs an image at least that "
                                         "big, got 8x8 after padding by 2"):
        RandomCrop(9, padding=2)(images(0, (1, 1, 4, 4)), gen())


def test_center_crop_of_a_batch_is_the_per_image_center_crop():
    batch = images(1, (3, 2, 9, 8))
    out = CenterCrop(5)(batch)
    for i in range(3):
        one = center_crop(batch[i].transpose(1, 2, 0), 5)
        np.testing.assert_array_equal(out[i], one.transpose(2, 0, 1))
    np.testing.assert_array_equal(CenterCrop((3, 8))(batch), batch[:, :, 3:6, :])
    with pytest.raises(ValueError, match="CenterCrop: a 10x10 crop needs .*got 9x8"):
        CenterCrop(10)(batch)


def test_flip_mirrors_exactly_and_twice_is_identity():
    batch = images(2, (64, 2, 3, 5))
    out = RandomHorizontalFlip()(batch, gen(3))
    mirrored = np.array([np.array_equal(o, b[..., ::-1]) for o, b in zip(out, batch)])
    kept = np.array([np.array_equal(o, b) for o, b in zip(out, batch)])
    assert (mirrored ^ kept).all()  # each sample is its original or its exact mirror
    assert 16 < mirrored.sum() < 48
    # the same generator state flips the same samples, so flipping twice restores the batch
    np.testing.assert_array_equal(RandomHorizontalFlip()(out, gen(3)), batch)
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0)(batch, gen()), batch[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(p=0.0)(batch, gen()), batch)


def test_brightness_scales_each_image_by_one_factor_in_range():
    batch = 0.2 + 0.5 * images(4, (32, 3, 4, 4), np.float64)  # in [0.2, 0.7]: no clipping at 1.4
    out = ColorJitter(brightness=0.4)(batch, gen(5))
    ratios = out / batch
    factors = ratios[:, 0, 0, 0]
    np.testing.assert_allclose(ratios, factors[:, None, None, None] * np.ones_like(batch),
                               rtol=1e-12)
    assert factors.min() >= 0.6 and factors.max() <= 1.4 and np.ptp(factors) > 0.2
    np.testing.assert_allclose(factors, gen(5).uniform(0.6, 1.4, 32), rtol=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_contrast_blends_with_the_grey_mean_and_keeps_it(channels):
    batch = 0.4 + 0.2 * images(6, (16, channels, 5, 6), np.float64)  # no clipping at contrast 1.5
    out = ColorJitter(contrast=0.5)(batch, gen(8))
    weights = np.array([0.2989, 0.587, 0.114]) if channels == 3 else np.ones(1)
    grey_mean = lambda b: np.einsum("c,nchw->n", weights, b) / (5 * 6)  # noqa: E731
    # exact for one channel; torchvision's luma weights add up to 0.9999, not 1
    np.testing.assert_allclose(grey_mean(out), grey_mean(batch),
                               rtol=1e-12 if channels == 1 else 2e-4)
    c = gen(8).uniform(0.5, 1.5, 16)[:, None, None, None]
    m = grey_mean(batch)[:, None, None, None]
    np.testing.assert_allclose(out, c * batch + (1 - c) * m, rtol=1e-12)


def test_color_jitter_stays_in_the_unit_interval():
    batch = images(9, (50, 3, 6, 6))
    out = ColorJitter(brightness=0.9, contrast=0.9)(batch, gen(10))
    assert out.min() >= 0 and out.max() <= 1 and out.dtype == np.float32
    assert (out == 1).any() and not np.array_equal(out, batch)
    np.testing.assert_array_equal(ColorJitter()(batch, gen()), batch)
    with pytest.raises(ValueError, match="ColorJitter: contrast needs grey .* got C = 2"):
        ColorJitter(contrast=0.1)(images(0, (1, 2, 3, 3)), gen())


def test_rgb_shift_adds_one_pca_colour_per_image():
    batch = images(11, (8, 3, 4, 5), np.float64)
    out = RGBShift(std=0.1)(batch, gen(12))
    shift = out - batch
    np.testing.assert_allclose(shift, shift[:, :, :1, :1] * np.ones_like(shift), atol=1e-15)
    alpha = gen(12).normal(0.0, 0.1, (8, 3))
    eigval, eigvec = np.array(IMAGENET_PCA_EIGVAL), np.array(IMAGENET_PCA_EIGVEC)
    for n in range(8):  # AlexNet: [v1 v2 v3] [alpha1 lambda1, alpha2 lambda2, alpha3 lambda3]^T
        expected = sum(alpha[n, i] * eigval[i] * eigvec[:, i] for i in range(3))
        np.testing.assert_allclose(shift[n, :, 0, 0], expected, rtol=1e-12)
    np.testing.assert_array_equal(RGBShift(std=0.0)(batch, gen()), batch)
    with pytest.raises(ValueError, match=r"RGBShift: needs RGB images \(C = 3\), got C = 1"):
        RGBShift()(images(0, (1, 1, 2, 2)), gen())


def test_normalize_per_channel():
    batch = np.ones((2, 3, 2, 2), np.float32)
    out = Normalize((1.0, 0.0, 0.5), (1.0, 2.0, 0.25))(batch)
    np.testing.assert_allclose(out[:, :, 0, 0], [[0, 0.5, 2], [0, 0.5, 2]])
    assert out.dtype == np.float32
    np.testing.assert_allclose(Normalize(0.5, 0.25)(batch[:, :1]), 2.0)
    with pytest.raises(ValueError, match="Normalize: 3 channel means and stds for a batch with 1"):
        Normalize((0, 0, 0), (1, 1, 1))(batch[:, :1])


def test_random_scale_crop_draws_a_scale_then_a_window():
    batch = images(13, (12, 3, 10, 13), np.float64)
    out = RandomScaleCrop(8, 8, 11)(batch, gen(14))
    assert out.shape == (12, 3, 8, 8)
    draws = gen(14)
    scales = draws.integers(8, 12, 12)
    targets = [resize_shorter_side(np.zeros((10, 13)), int(s)).shape[:2] for s in scales]
    tops = draws.integers(0, [h - 8 + 1 for h, _ in targets])
    lefts = draws.integers(0, [w - 8 + 1 for _, w in targets])
    for i in range(12):
        whole = resize(batch[i].transpose(1, 2, 0), targets[i]).transpose(2, 0, 1)
        np.testing.assert_allclose(out[i], whole[:, tops[i]:tops[i] + 8, lefts[i]:lefts[i] + 8],
                                   rtol=1e-12, atol=1e-14)
    assert len(set(scales.tolist())) > 1


def test_random_scale_crop_at_the_stored_size_is_a_plain_random_crop():
    batch = images(15, (5, 1, 9, 12))
    out = RandomScaleCrop(7, 9, 9)(batch, gen(16))
    draws = gen(16)
    draws.integers(9, 10, 5)
    tops, lefts = draws.integers(0, [3] * 5), draws.integers(0, [6] * 5)
    for i in range(5):  # resizing to the same size is the identity
        window = batch[i, :, tops[i]:tops[i] + 7, lefts[i]:lefts[i] + 7]
        np.testing.assert_array_equal(out[i], window)


@pytest.mark.torch
def test_random_scale_crop_resizes_as_torch_antialiased_bilinear():
    torch = pytest.importorskip("torch")
    batch = images(17, (3, 3, 37, 37), np.float64)
    for scale in (20, 37, 50):  # shrink, keep, enlarge
        out = RandomScaleCrop(scale, scale, scale)(batch, gen())  # the crop is the whole image
        expected = torch.nn.functional.interpolate(torch.from_numpy(batch), size=(scale, scale),
                                                   mode="bilinear", antialias=True,
                                                   align_corners=False).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


def test_compose_applies_in_order_with_one_generator():
    batch = images(18)
    flip, crop, normalise = (RandomHorizontalFlip(), RandomCrop(5, padding=1),
                             Normalize((0.5,) * 3, (2,) * 3))
    pipeline = Compose([flip, crop, normalise])
    rng = gen(19)
    by_hand = normalise(crop(flip(batch, rng), rng))
    np.testing.assert_array_equal(pipeline(batch, gen(19)), by_hand)
    assert repr(pipeline) == ("Compose([\n    RandomHorizontalFlip(p=0.5),\n"
                              "    RandomCrop(size=(5, 5), padding=1),\n"
                              "    Normalize(mean=[0.5, 0.5, 0.5], std=[2.0, 2.0, 2.0]),\n])")
    np.testing.assert_array_equal(Compose([])(batch, gen()), batch)
    with pytest.raises(TypeError, match="Compose: transform 1 is not callable: 3"):
        Compose([Pad(1), 3])


@pytest.mark.parametrize("transform", RANDOM_TRANSFORMS, ids=repr)
def test_random_transforms_are_seeded_and_leave_their_input_alone(transform):
    batch = images(20, (16, 3, 9, 10))
    before = batch.copy()
    first = transform(batch, gen(21))
    np.testing.assert_array_equal(batch, before)
    np.testing.assert_array_equal(transform(batch, gen(21)), first)
    assert not np.array_equal(transform(batch, gen(22)), first)
    assert first.dtype == np.float32
    assert transform(batch.astype(np.float64), gen()).dtype == np.float64
    with pytest.raises(TypeError,
                       match=f"{type(transform).__name__}: rng must be a numpy.random.Generator"):
        transform(batch, 0)


@pytest.mark.parametrize("transform", RANDOM_TRANSFORMS + DETERMINISTIC_TRANSFORMS, ids=repr)
def test_transforms_give_the_same_on_strided_views(transform):
    base = images(23, (10, 3, 11, 9))
    views = [base.transpose(0, 1, 3, 2)[:, :, :9, :],  # a transposed view
             base[::2, ::-1, 1::1, ::-1],  # steps and reversals
             np.moveaxis(np.ascontiguousarray(np.moveaxis(base, 1, -1)), -1, 1)]  # channels-last
    for view in views:
        np.testing.assert_array_equal(transform(view, gen(24)),
                                      transform(np.ascontiguousarray(view), gen(24)))


@pytest.mark.parametrize("transform", RANDOM_TRANSFORMS + DETERMINISTIC_TRANSFORMS, ids=repr)
def test_transforms_refuse_what_is_not_a_float_batch(transform):
    name = type(transform).__name__
    with pytest.raises(ValueError, match=rf"{name}: expected a batch of shape \(N, C, H, W\), "
                                         r"got shape \(3, 9, 9\)"):
        transform(images(0, (3, 9, 9)), gen())
    with pytest.raises(TypeError, match=f"{name}: expected a float batch .*got uint8"):
        transform(np.zeros((1, 3, 9, 9), np.uint8), gen())
    with pytest.raises(TypeError, match=f"{name}: expected a NumPy array"):
        transform([[[[0.0]]]], gen())


@given(n=st.integers(1, 4), channels=st.sampled_from([1, 3]), height=st.integers(3, 12),
       width=st.integers(3, 12), padding=st.integers(0, 3), seed=st.integers(0, 2**32 - 1))
def test_crops_and_flips_on_any_shape(n, channels, height, width, padding, seed):
    batch = images(seed, (n, channels, height, width))
    crop = (min(height, 3 + seed % 5), min(width, 2 + seed % 7))
    out = RandomCrop(crop, padding)(batch, gen(seed))
    assert out.shape == (n, channels) + crop
    padded = np.pad(batch, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2))
    windows = np.lib.stride_tricks.sliding_window_view(padded, crop, axis=(2, 3))
    for i in range(n):  # every sample is one window of its own padded image
        assert (windows[i].transpose(1, 2, 0, 3, 4) == out[i]).all(axis=(2, 3, 4)).any()
    scaled = RandomScaleCrop(3, 3, 3 + seed % 9)(batch, gen(seed))
    assert scaled.shape == (n, channels, 3, 3) and np.isfinite(scaled).all()
    assert 0 <= scaled.min() and scaled.max() <= 1 + 1e-6  # resizing averages: no overshoot
    flipped = RandomHorizontalFlip()(batch, gen(seed))
    np.testing.assert_array_equal(np.sort(flipped, axis=3), np.sort(batch, axis=3))


@pytest.mark.parametrize("make, error, fragment", [
    (lambda: RandomCrop(0), ValueError, "RandomCrop: size must be >= 1, got 0"),
    (lambda: RandomCrop((3, 4, 5)), ValueError,
     r"RandomCrop: size must be an int or \(height, width\)"),
    (lambda: RandomCrop(3, padding=-1), ValueError, "RandomCrop: padding must be >= 0"),
    (lambda: RandomCrop(2.5), TypeError, "RandomCrop: size must be an integer, got 2.5"),
    (lambda: Pad(True), TypeError, "Pad: padding must be an integer"),
    (lambda: RandomHorizontalFlip(1.5), ValueError,
     r"RandomHorizontalFlip: p must be in \[0, 1\], got 1.5"),
    (lambda: ColorJitter(brightness=-0.1), ValueError,
     "ColorJitter: brightness must be finite and >= 0"),
    (lambda: ColorJitter(contrast="a lot"), TypeError, "ColorJitter: contrast must be a number"),
    (lambda: RGBShift(std=float("nan")), ValueError, "RGBShift: std must be finite and >= 0"),
    (lambda: RGBShift(eigenvalues=(1, 2)), ValueError, "RGBShift: expected 3 eigenvalues"),
    (lambda: Normalize((0, 0), (1, 1, 1)), ValueError, "Normalize: mean and std must be sequences"),
    (lambda: Normalize((0,), (0,)), ValueError, "Normalize: .*std finite and > 0"),
    (lambda: RandomScaleCrop(224, 200, 300), ValueError,
     "RandomScaleCrop: scale_min must be >= 224"),
    (lambda: RandomScaleCrop(224, 256, 255), ValueError,
     "RandomScaleCrop: scale_max must be >= 256"),
    (lambda: CenterCrop(-3), ValueError, "CenterCrop: size must be >= 1"),
    (lambda: Compose(Pad(1)), TypeError, "Compose: expected a list of transforms, got Pad"),
    (lambda: RandomRotation(-5), ValueError, r"RandomRotation: degrees must be in \[0, 360\]"),
    (lambda: RandomRotation((10, -10)), ValueError,
     r"RandomRotation: degrees \(low, high\) needs low <= high, got \(10, -10\)"),
    (lambda: RandomRotation((1, 2, 3)), ValueError, r"RandomRotation: degrees must be a number d"),
    (lambda: RandomRotation(fill=float("inf")), ValueError, "RandomRotation: fill must be finite"),
    (lambda: HueSaturationJitter(hue=0.6), ValueError,
     r"HueSaturationJitter: hue must be in \[0, 0.5\], got 0.6"),
    (lambda: HueSaturationJitter(saturation=-1), ValueError,
     "HueSaturationJitter: saturation must be finite and >= 0"),
    (lambda: RandomErasing(p=-0.1), ValueError, r"RandomErasing: p must be in \[0, 1\]"),
    (lambda: RandomErasing(area=0.3), ValueError,
     r"RandomErasing: area must be a \(low, high\) pair of fractions of the image, got 0.3"),
    (lambda: RandomErasing(area=(0.5, 0.2)), ValueError,
     r"RandomErasing: area \(low, high\) needs low <= high, got \(0.5, 0.2\)"),
    (lambda: RandomErasing(area=(0.1, 2)), ValueError, r"RandomErasing: area must be in \[0, 1\]"),
    (lambda: RandomErasing(ratio=0), ValueError, r"RandomErasing: ratio must be in \(0, 1\]"),
    (lambda: RandomErasing(ratio=3.3), ValueError, r"RandomErasing: ratio must be in \[0, 1\]"),
    (lambda: RandomErasing(value="noise"), ValueError,
     r"RandomErasing: value must be 'random' \(uniform noise\) or a number in \[0, 1\], "
     "got 'noise'"),
    (lambda: RandomErasing(value=None), TypeError, "RandomErasing: value must be a number"),
    (lambda: RandomErasing(value=1.5), ValueError, r"RandomErasing: value must be in \[0, 1\]"),
])
def test_transform_arguments_are_checked(make, error, fragment):
    with pytest.raises(error, match=fragment):
        make()


# --- rotation and hue: the batch versions against the per-pixel loops -----------------------

@given(n=st.integers(1, 3), channels=st.sampled_from([1, 3]), height=st.integers(1, 9),
       width=st.integers(1, 9), fill=st.floats(-1, 2), seed=st.integers(0, 2**32 - 1),
       angle=st.floats(-360, 360, allow_nan=False))
def test_rotate_is_the_per_pixel_loop_on_any_size_and_angle(n, channels, height, width, fill,
                                                            seed, angle):
    batch = images(seed, (n, channels, height, width), np.float64)
    angles = np.array([angle] + list(np.random.default_rng(seed).uniform(-180, 180, n - 1)))
    out = rotate(batch, angles, fill)
    expected = np.stack([rotate_naive(batch[i], angles[i], fill) for i in range(n)])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rotate(batch.astype(np.float32), angles, fill), expected,
                               rtol=0, atol=2e-6)
    # each output pixel is a weighted average of image pixels and the fill
    low, high = min(batch.min(), fill), max(batch.max(), fill)
    assert (out >= low - 1e-12).all() and (out <= high + 1e-12).all()
    np.testing.assert_array_equal(rotate(batch, np.zeros(n), fill), batch)
    if height == width == 1:  # the centre of a 1x1 image is its only pixel
        np.testing.assert_allclose(out, batch, rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", [(5, 5), (6, 6), (4, 7)])
def test_rotation_by_quarter_turns_moves_whole_pixels(size):
    batch = images(30, (2, 3, *size), np.float64)
    half = rotate(batch, [180, -180], fill=0.7)
    np.testing.assert_allclose(half, batch[:, :, ::-1, ::-1], rtol=0, atol=1e-12)
    if size[0] == size[1]:  # counter-clockwise, as np.rot90 turns
        np.testing.assert_allclose(rotate(batch, [90, 90]), np.rot90(batch, axes=(2, 3)),
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(rotate(batch, [-90, 270]), np.rot90(batch, -1, axes=(2, 3)),
                                   rtol=0, atol=1e-12)


def test_rotation_blends_into_the_fill_beyond_the_image():
    batch = 0.25 + 0.5 * images(31, (1, 1, 9, 9), np.float64)  # values in [0.25, 0.75]
    out = rotate(batch, [45.0], fill=1.0)
    # the corners come from outside the image: pure fill; the centre stays put
    assert out[0, 0, 0, 0] == 1.0 and out[0, 0, -1, -1] == 1.0
    assert out[0, 0, 4, 4] == pytest.approx(batch[0, 0, 4, 4], abs=1e-12)
    with pytest.raises(ValueError, match=r"rotate: expected 1 finite angles .*got shape \(2,\)"):
        rotate(batch, [1.0, 2.0])


def test_random_rotation_draws_one_angle_per_image_in_range():
    batch = images(32, (40, 1, 8, 8))
    out = RandomRotation(15, fill=0.25)(batch, gen(33))
    angles = gen(33).uniform(-15, 15, 40)
    np.testing.assert_array_equal(out, rotate(batch, angles, 0.25))
    assert out.dtype == np.float32 and np.ptp(angles) > 15
    between = RandomRotation((10, 12))(batch, gen(34))
    np.testing.assert_array_equal(between, rotate(batch, gen(34).uniform(10, 12, 40)))
    assert repr(RandomRotation()) == "RandomRotation(degrees=(-20, 20), fill=0)"


@given(n=st.integers(1, 3), height=st.integers(1, 7), width=st.integers(1, 7),
       seed=st.integers(0, 2**32 - 1), saturation=st.floats(0, 3),
       shift=st.floats(-0.5, 0.5))
def test_hue_saturation_is_the_per_pixel_colorsys_loop(n, height, width, seed, saturation,
                                                      shift):
    batch = images(seed, (n, 3, height, width), np.float64)
    batch[0, :, 0, 0] = batch[0, 0, 0, 0]  # a grey pixel, which has no hue
    draws = np.random.default_rng(seed)
    factors = np.array([saturation] + list(draws.uniform(0, 2, n - 1)))
    shifts = np.array([shift] + list(draws.uniform(-0.5, 0.5, n - 1)))
    out = adjust_hue_saturation(batch, factors, shifts)
    expected = np.stack([hue_saturation_naive(batch[i], factors[i], shifts[i])
                         for i in range(n)])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(adjust_hue_saturation(batch.astype(np.float32), factors, shifts),
                               expected, rtol=0, atol=2e-6)


def test_a_hue_shift_turns_the_colour_wheel_and_keeps_each_pixels_extremes():
    batch = images(35, (4, 3, 5, 6), np.float64)
    ones = np.ones(4)
    third = adjust_hue_saturation(batch, ones, ones / 3)
    np.testing.assert_allclose(third, batch[:, [2, 0, 1]], rtol=0, atol=1e-12)  # red -> green
    shifted = adjust_hue_saturation(batch, ones, np.array([0.1, -0.2, 0.45, -0.05]))
    np.testing.assert_allclose(shifted.max(axis=1), batch.max(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(shifted.min(axis=1), batch.min(axis=1), rtol=0, atol=1e-12)
    assert np.abs(shifted - batch).max() > 0.1
    np.testing.assert_allclose(adjust_hue_saturation(batch, ones, 0 * ones), batch,
                               rtol=0, atol=1e-12)


def test_zero_saturation_is_the_grey_image():
    batch = images(36, (3, 3, 4, 4), np.float64)
    out = adjust_hue_saturation(batch, np.zeros(3), np.array([0.0, 0.2, -0.4]))
    grey = np.einsum("c,nchw->nhw", np.array(GREY_WEIGHTS), batch)
    for channel in range(3):  # grey has no hue, so the shift leaves it alone
        np.testing.assert_allclose(out[:, channel], grey, rtol=0, atol=1e-12)


def test_hue_saturation_jitter_draws_factors_then_shifts_and_refuses_grey_images():
    batch = images(37, (30, 3, 4, 5))
    out = HueSaturationJitter(hue=0.1, saturation=0.4)(batch, gen(38))
    draws = gen(38)
    factors, shifts = draws.uniform(0.6, 1.4, 30), draws.uniform(-0.1, 0.1, 30)
    np.testing.assert_array_equal(out, adjust_hue_saturation(batch, factors, shifts))
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1 + 1e-6
    hue_only = HueSaturationJitter(hue=0.3, saturation=0)(batch, gen(39))  # no saturation draw
    np.testing.assert_array_equal(
        hue_only, adjust_hue_saturation(batch, np.ones(30), gen(39).uniform(-0.3, 0.3, 30)))
    np.testing.assert_array_equal(HueSaturationJitter(0, 0)(batch, gen()), batch)
    with pytest.raises(ValueError, match=r"HueSaturationJitter: needs RGB images \(C = 3\), "
                                         r"got C = 1; grey images have no hue"):
        HueSaturationJitter()(images(0, (2, 1, 4, 4)), gen())
    with pytest.raises(ValueError, match=r"adjust_hue_saturation: needs RGB images"):
        adjust_hue_saturation(images(0, (1, 4, 2, 2)), [1.0], [0.0])


# --- random erasing: the batch version against the per-pixel loop --------------------------

@given(n=st.integers(0, 3), channels=st.sampled_from([1, 3]), height=st.integers(1, 9),
       width=st.integers(1, 9), seed=st.integers(0, 2**32 - 1), noise=st.booleans())
def test_erase_is_the_per_pixel_loop_on_any_size_and_rectangle(n, channels, height, width,
                                                              seed, noise):
    rng = gen([seed, 1])  # a stream apart from the images', so no paint equals a pixel
    batch = images(seed, (n, channels, height, width), np.float64)
    rows, cols = rng.integers(0, height + 1, n), rng.integers(0, width + 1, n)  # 0: nothing
    top, left = rng.integers(0, height - rows + 1), rng.integers(0, width - cols + 1)
    value = rng.random(batch.shape) if noise else float(rng.random())
    out = erase(batch, top, left, rows, cols, value)
    expected = np.stack([erase_naive(batch[i], top[i], left[i], rows[i], cols[i],
                                     value[i] if noise else value) for i in range(n)]) \
        if n else batch
    np.testing.assert_array_equal(out, expected)
    single = erase(batch.astype(np.float32), top, left, rows, cols,
                   value.astype(np.float32) if noise else value)
    assert single.dtype == np.float32
    np.testing.assert_array_equal(single, expected.astype(np.float32))
    # exactly the rectangle's pixels changed: its area, in every channel
    changed = (out != batch).all(axis=1).sum(axis=(1, 2))
    np.testing.assert_array_equal(changed, rows * cols)


def test_erase_refuses_rectangles_that_do_not_fit_and_paint_of_the_wrong_shape():
    batch = images(40, (2, 1, 5, 6))
    whole = [np.array([0, 0]), np.array([0, 0]), np.array([5, 5]), np.array([6, 6])]
    np.testing.assert_array_equal(erase(batch, *whole, 0.25), np.full(batch.shape, 0.25))
    with pytest.raises(ValueError, match="erase: every rectangle must lie inside the 5x6 images"):
        erase(batch, np.array([1, 0]), *whole[1:], 0.25)
    with pytest.raises(ValueError, match="erase: expected 2 integer tops, lefts"):
        erase(batch, np.array([0.0, 0.0]), *whole[1:])
    with pytest.raises(ValueError, match=r"erase: value must be a number or an array of the "
                                         r"batch's shape \(2, 1, 5, 6\), got shape \(5, 6\)"):
        erase(batch, *whole, np.zeros((5, 6)))


def test_random_erasing_draws_its_rectangles_then_its_noise():
    batch = images(41, (4000, 1, 28, 28))
    transform = RandomErasing()
    out = transform(batch, gen(42))
    rng = gen(42)
    top, left, rows, cols = transform.rectangles(4000, 28, 28, rng)
    np.testing.assert_array_equal(out, erase(batch, top, left, rows, cols,
                                             rng.random(batch.shape).astype(np.float32)))
    erased = rows > 0
    # about half the images, each with a rectangle of 2% to 40% of the image (up to
    # rounding) and aspect ratio in [0.3, 3.3], inside it; the rest untouched
    assert abs(erased.mean() - 0.5) < 0.03
    np.testing.assert_array_equal(out[~erased], batch[~erased])
    fraction = rows[erased] * cols[erased] / 28 ** 2
    assert fraction.min() < 0.03 and fraction.max() > 0.35
    assert fraction.min() >= 0.01 and fraction.max() <= 0.5
    ratio = rows[erased] / cols[erased]
    assert ratio.min() < 0.4 and ratio.max() > 2.5 and abs(np.log(ratio).mean()) < 0.05
    assert ((top + rows <= 28) & (left + cols <= 28)).all()
    assert top[erased].min() == 0 and (top + rows)[erased].max() == 28
    # the paint is uniform noise in [0, 1]
    paint = out[~np.isclose(out, batch)]
    assert paint.min() >= 0 and paint.max() <= 1 and abs(paint.mean() - 0.5) < 0.01
    grey = RandomErasing(p=1, value=0.5)(batch[:50], gen(43))
    assert ((grey == 0.5).sum(axis=(1, 2, 3)) > 0).all()
    assert repr(RandomErasing()) == \
        "RandomErasing(p=0.5, area=(0.02, 0.4), ratio=0.3, value='random')"
    untouched = RandomErasing(p=0)(batch[:50], gen(44))
    np.testing.assert_array_equal(untouched, batch[:50])
