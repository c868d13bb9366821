"""Image transforms on NumPy arrays (H, W, C), written out so their arithmetic is visible.

Resizing uses the bilinear (triangle) filter widened by the scale factor
when shrinking, as Pillow does: each output pixel averages every input
pixel under the filter, so a photo shrunk 10x does not alias. The filter is
separable, so a resize is two matrix products: ``rows @ image @ cols^T``.

Below the per-image functions are the batch transforms of the data loader
(``RandomCrop``, ``RandomScaleCrop``, ``ColorJitter``, ``RGBShift``,
``RandomRotation``, ``HueSaturationJitter``, ``RandomErasing``, ...): callables
``transform(batch, rng)`` on float (N, C, H, W) batches, random only through
the generator they are given. Rotation, hue and erasing come with a naive loop
over the pixels of one image (:func:`rotate_naive`, :func:`hue_saturation_naive`,
:func:`erase_naive`), the definition the vectorised batch versions are tested
against.
"""
from __future__ import annotations

import colorsys
import functools
import math

import numpy as np


def bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) matrix of normalised triangle-filter weights."""
    scale = in_size / out_size
    support = max(scale, 1.0)  # the triangle's half-width in input pixels
    centers = (np.arange(out_size) + 0.5) * scale
    pixels = np.arange(in_size) + 0.5
    weights = np.clip(1.0 - np.abs(pixels[None, :] - centers[:, None]) / support, 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def _check_image(op, image):
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{op}: expected an image of shape (H, W) or (H, W, C), "
                         f"got shape {image.shape}")
    return image


def resize(image, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W[, C]) image to ``size`` = (height, width); returns float64."""
    image = _check_image("resize", image)
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise ValueError(f"resize: size must be positive, got {size}")
    rows = bilinear_weights(image.shape[0], height)
    cols = bilinear_weights(image.shape[1], width)
    return np.einsum("ih,hwc,jw->ijc", rows, image.astype(np.float64), cols, optimize=True)


def resize_shorter_side(image, size: int) -> np.ndarray:
    """Scale so the shorter side is ``size`` pixels, keeping the aspect ratio
    (the paper's "isotropically rescaled" training scale S)."""
    image = _check_image("resize_shorter_side", image)
    return resize(image, _shorter_side_target(*image.shape[:2], size))


def _shorter_side_target(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) after scaling the shorter side to ``size``, keeping the aspect ratio."""
    if height <= width:
        return size, max(1, int(round(width * size / height)))
    return max(1, int(round(height * size / width))), size


def center_crop(image, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` window of an (H, W[, C]) image."""
    image = _check_image("center_crop", image)
    height, width = image.shape[:2]
    if height < size or width < size:
        raise ValueError(f"center_crop: a {size}x{size} crop needs an image at least that big, "
                         f"got {height}x{width}")
    top, left = (height - size) // 2, (width - size) // 2
    return image[top:top + size, left:left + size]


def normalize(image, mean, std) -> np.ndarray:
    """(image - mean) / std per channel, on the last axis."""
    return (np.asarray(image) - np.asarray(mean)) / np.asarray(std)


# --- batch transforms --------------------------------------------------------------
#
# The data loader's augmentation. A batch transform is a callable
# ``transform(batch, rng) -> batch`` on a float (N, C, H, W) batch with
# values in [0, 1]; ``rng`` is a numpy.random.Generator and the only source
# of randomness, so the same generator state gives the same output. Every
# sample gets its own random draw, and the draws are vectorised over the
# batch. Transforms never change their input in place.

#: eigenvalues and eigenvectors (columns) of the covariance of ImageNet's RGB
#: pixels in [0, 1], as published with AlexNet-style colour augmentation
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                       (-0.5808, -0.0045, -0.8140),
                       (-0.5836, -0.6948, 0.4203))

#: ITU-R 601 luma weights, the grey image of torchvision's contrast adjustment
GREY_WEIGHTS = (0.2989, 0.587, 0.114)


def _batch(owner: str, batch, floating: bool = True) -> np.ndarray:
    if not isinstance(batch, np.ndarray):
        raise TypeError(f"{owner}: expected a NumPy array of shape (N, C, H, W), "
                        f"got {type(batch).__name__}")
    if batch.ndim != 4:
        raise ValueError(f"{owner}: expected a batch of shape (N, C, H, W), "
                         f"got shape {batch.shape}")
    if floating and not np.issubdtype(batch.dtype, np.floating):
        raise TypeError(f"{owner}: expected a float batch (ToFloat turns uint8 images into "
                        f"floats), got {batch.dtype}")
    return batch


def _generator(owner: str, rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{owner}: rng must be a numpy.random.Generator "
                        f"(np.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


def _real(owner: str, arg: str, value, minimum=None, maximum=None) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                      np.floating)):
        raise TypeError(f"{owner}: {arg} must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or (minimum is not None and value < minimum) \
            or (maximum is not None and value > maximum):
        if maximum is not None:
            wanted = f"in [{minimum:g}, {maximum:g}]"
        else:
            wanted = "finite" if minimum is None else f"finite and >= {minimum:g}"
        raise ValueError(f"{owner}: {arg} must be {wanted}, got {value}")
    return value


def check_integer(owner: str, arg: str, value, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or an error naming ``owner`` and ``arg``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {arg} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}: {arg} must be >= {minimum}, got {value}")
    return int(value)


def _size_pair(owner: str, value) -> tuple[int, int]:
    """An int or an (h, w) pair of positive ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{owner}: size must be an int or (height, width), got {value!r}")
        return check_integer(owner, "size", value[0], 1), check_integer(owner, "size", value[1], 1)
    side = check_integer(owner, "size", value, 1)
    return side, side


def _per_sample(values: np.ndarray) -> np.ndarray:
    """(N,) values shaped to broadcast over (N, C, H, W)."""
    return values[:, None, None, None]


class Compose:
    """Apply batch transforms in order, each with the same generator."""

    def __init__(self, transforms):
        try:
            transforms = list(transforms)
        except TypeError:
            raise TypeError(f"Compose: expected a list of transforms, "
                            f"got {type(transforms).__name__}") from None
        for i, transform in enumerate(transforms):
            if not callable(transform):
                raise TypeError(f"Compose: transform {i} is not callable: {transform!r}")
        self.transforms = transforms

    def __call__(self, batch, rng=None):
        for transform in self.transforms:
            batch = transform(batch, rng)
        return batch

    def __repr__(self) -> str:
        if not self.transforms:
            return "Compose([])"
        return "Compose([\n" + "".join(f"    {t!r},\n" for t in self.transforms) + "])"


class ToFloat:
    """Integer images (uint8) to floats: ``batch * scale`` in ``dtype`` (0..255 -> 0..1)."""

    def __init__(self, scale: float = 1 / 255, dtype=np.float32):
        self.scale = _real("ToFloat", "scale", scale)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"ToFloat: dtype must be float32 or float64, got {self.dtype}")

    def __call__(self, batch, rng=None):
        batch = _batch("ToFloat", batch, floating=False)
        if not np.issubdtype(batch.dtype, np.integer):
            raise TypeError(f"ToFloat: expected integer images such as uint8, got {batch.dtype} "
                            f"(a float batch is converted already)")
        return np.multiply(batch, self.dtype.type(self.scale), dtype=self.dtype)

    def __repr__(self) -> str:
        return f"ToFloat(scale={self.scale:g}, dtype={self.dtype.name})"


class Pad:
    """Pad every image by ``padding`` pixels of ``value`` on all four sides (28 -> 32 with 2)."""

    def __init__(self, padding: int, value: float = 0.0):
        self.padding = check_integer("Pad", "padding", padding, 0)
        self.value = _real("Pad", "value", value)

    def __call__(self, batch, rng=None):
        batch = _batch("Pad", batch)
        p = self.padding
        return np.pad(batch, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=self.value)

    def __repr__(self) -> str:
        return f"Pad(padding={self.padding}, value={self.value:g})"


def _crop_windows(batch: np.ndarray, top: np.ndarray, left: np.ndarray, height: int,
                  width: int) -> np.ndarray:
    """Sample i's ``height`` x ``width`` window at (top[i], left[i]), for all i at once."""
    windows = np.lib.stride_tricks.sliding_window_view(batch, (height, width), axis=(2, 3))
    # advanced indices on axes 0, 2, 3 around the channel slice: the result is (N, C, h, w)
    return windows[np.arange(len(batch)), :, top, left]


class RandomCrop:
    """Pad by ``padding`` zeros, then crop ``size`` at a random offset per sample.

    torchvision's RandomCrop: the offsets are uniform over every position
    where the window fits (top drawn first, then left). ``size`` is an int
    or (height, width).
    """

    def __init__(self, size, padding: int = 0):
        self.size = _size_pair("RandomCrop", size)
        self.padding = check_integer("RandomCrop", "padding", padding, 0)

    def __call__(self, batch, rng):
        batch = _batch("RandomCrop", batch)
        rng = _generator("RandomCrop", rng)
        if self.padding:
            p = self.padding
            batch = np.pad(batch, ((0, 0), (0, 0), (p, p), (p, p)))
        n, _, height, width = batch.shape
        crop_h, crop_w = self.size
        if height < crop_h or width < crop_w:
            raise ValueError(f"RandomCrop: a {crop_h}x{crop_w} crop needs an image at least that "
                             f"big, got {height}x{width} after padding by {self.padding}")
        top = rng.integers(0, height - crop_h + 1, size=n)
        left = rng.integers(0, width - crop_w + 1, size=n)
        return _crop_windows(batch, top, left, crop_h, crop_w)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class CenterCrop:
    """The central ``size`` window of every image (an int or (height, width)).

    When the margin is odd, the extra pixel is left at the bottom and right,
    as :func:`center_crop` does.
    """

    def __init__(self, size):
        self.size = _size_pair("CenterCrop", size)

    def __call__(self, batch, rng=None):
        batch = _batch("CenterCrop", batch)
        height, width = batch.shape[2:]
        crop_h, crop_w = self.size
        if height < crop_h or width < crop_w:
            raise ValueError(f"CenterCrop: a {crop_h}x{crop_w} crop needs an image at least that "
                             f"big, got {height}x{width}")
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        return batch[:, :, top:top + crop_h, left:left + crop_w].copy()

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = _real("RandomHorizontalFlip", "p", p, 0.0, 1.0)

    def __call__(self, batch, rng):
        batch = _batch("RandomHorizontalFlip", batch)
        rng = _generator("RandomHorizontalFlip", rng)
        flip = rng.random(len(batch)) < self.p
        return np.where(_per_sample(flip), batch[..., ::-1], batch)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p:g})"


class ColorJitter:
    """Random brightness, then contrast, per image (torchvision's formulas).

    Brightness multiplies the image by b ~ U[max(0, 1 - brightness), 1 + brightness];
    contrast blends it with the mean m of its grey image (luma weights
    0.2989, 0.587, 0.114; a one-channel image is its own grey):
    ``c * x + (1 - c) * m`` with c drawn likewise from ``contrast``. Each
    step clips to [0, 1]. A zero strength skips its step and its draw.
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0):
        self.brightness = _real("ColorJitter", "brightness", brightness, 0.0)
        self.contrast = _real("ColorJitter", "contrast", contrast, 0.0)

    def __call__(self, batch, rng):
        batch = _batch("ColorJitter", batch)
        rng = _generator("ColorJitter", rng)
        n, channels = batch.shape[:2]
        dtype = batch.dtype
        if self.contrast > 0 and channels not in (1, 3):
            raise ValueError(f"ColorJitter: contrast needs grey (C = 1) or RGB (C = 3) images, "
                             f"got C = {channels}")
        out = batch
        if self.brightness > 0:
            b = rng.uniform(max(0.0, 1 - self.brightness), 1 + self.brightness, n).astype(dtype)
            out = np.clip(out * _per_sample(b), 0, 1)
        if self.contrast > 0:
            c = rng.uniform(max(0.0, 1 - self.contrast), 1 + self.contrast, n).astype(dtype)
            if channels == 1:
                grey = out[:, 0]
            else:
                grey = np.tensordot(np.asarray(GREY_WEIGHTS, dtype), out, axes=([0], [1]))
            mean = grey.mean(axis=(1, 2))
            out = np.clip(_per_sample(c) * out + _per_sample((1 - c) * mean), 0, 1)
        return out if out is not batch else batch.copy()

    def __repr__(self) -> str:
        return f"ColorJitter(brightness={self.brightness:g}, contrast={self.contrast:g})"


class RGBShift:
    """AlexNet's colour augmentation, as in the VGG paper: shift each image's colours
    along the principal components of ImageNet's pixels.

    Every pixel of image n gets ``sum_i alpha_i * lambda_i * v_i`` added,
    with alpha_i ~ N(0, std) drawn per image, lambda_i the eigenvalues and
    v_i the eigenvectors (columns of ``eigenvectors``) of the RGB covariance.
    The defaults are ImageNet's, for images in [0, 1]; the result is not
    clipped. Needs RGB images.
    """

    def __init__(self, std: float = 0.1, eigenvalues=IMAGENET_PCA_EIGVAL,
                 eigenvectors=IMAGENET_PCA_EIGVEC):
        self.std = _real("RGBShift", "std", std, 0.0)
        self.eigenvalues = np.array(eigenvalues, dtype=np.float64)
        self.eigenvectors = np.array(eigenvectors, dtype=np.float64)
        if self.eigenvalues.shape != (3,) or self.eigenvectors.shape != (3, 3):
            raise ValueError(f"RGBShift: expected 3 eigenvalues and a 3x3 matrix of "
                             f"eigenvectors, got shapes {self.eigenvalues.shape} and "
                             f"{self.eigenvectors.shape}")
        if not (np.isfinite(self.eigenvalues).all() and np.isfinite(self.eigenvectors).all()):
            raise ValueError("RGBShift: eigenvalues and eigenvectors must be finite")

    def __call__(self, batch, rng):
        batch = _batch("RGBShift", batch)
        rng = _generator("RGBShift", rng)
        if batch.shape[1] != 3:
            raise ValueError(f"RGBShift: needs RGB images (C = 3), got C = {batch.shape[1]}")
        alpha = rng.normal(0.0, self.std, size=(len(batch), 3))
        shift = (alpha * self.eigenvalues) @ self.eigenvectors.T  # (N, 3): one RGB offset per image
        return batch + shift.astype(batch.dtype)[:, :, None, None]

    def __repr__(self) -> str:
        return f"RGBShift(std={self.std:g})"


class Normalize:
    """(x - mean) / std per channel; the paper's mean subtraction is std = 1."""

    def __init__(self, mean, std):
        self.mean = np.atleast_1d(np.array(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.array(std, dtype=np.float64))
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
            raise ValueError(f"Normalize: mean and std must be sequences of one value per "
                             f"channel, of the same length, got shapes {self.mean.shape} and "
                             f"{self.std.shape}")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all()) \
                or (self.std <= 0).any():
            raise ValueError(f"Normalize: mean must be finite and std finite and > 0, "
                             f"got mean {self.mean.tolist()} and std {self.std.tolist()}")

    def __call__(self, batch, rng=None):
        batch = _batch("Normalize", batch)
        if batch.shape[1] != len(self.mean):
            raise ValueError(f"Normalize: {len(self.mean)} channel means and stds for a batch "
                             f"with {batch.shape[1]} channels")
        mean = self.mean.astype(batch.dtype)[None, :, None, None]
        std = self.std.astype(batch.dtype)[None, :, None, None]
        return (batch - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


@functools.lru_cache(maxsize=256)
def _resize_weights(in_size: int, out_size: int, dtype: str) -> np.ndarray:
    weights = bilinear_weights(in_size, out_size).astype(dtype)
    weights.flags.writeable = False  # shared between calls and threads
    return weights


class RandomScaleCrop:
    """The VGG paper's multi-scale training: rescale, then crop at random.

    Per sample, a training scale S is drawn uniformly from the integers in
    [scale_min, scale_max], the image is resized so that its shorter side
    is S (keeping the aspect ratio; antialiased bilinear, as
    :func:`resize_shorter_side`), and a ``crop`` x ``crop`` window is taken at
    a random offset. Only the rows and columns of the window are computed.
    Draws: all scales, then all tops, then all lefts. The paper's settings
    are crop 224 with S in [256, 512]; scale_min = scale_max is single-scale
    training.
    """

    def __init__(self, crop: int, scale_min: int, scale_max: int):
        self.crop = check_integer("RandomScaleCrop", "crop", crop, 1)
        self.scale_min = check_integer("RandomScaleCrop", "scale_min", scale_min, self.crop)
        self.scale_max = check_integer("RandomScaleCrop", "scale_max", scale_max, self.scale_min)

    def __call__(self, batch, rng):
        batch = _batch("RandomScaleCrop", batch)
        rng = _generator("RandomScaleCrop", rng)
        n, channels, height, width = batch.shape
        scales = rng.integers(self.scale_min, self.scale_max + 1, size=n)
        targets = np.array([_shorter_side_target(height, width, int(s)) for s in scales],
                           dtype=np.int64).reshape(n, 2)
        tops = rng.integers(0, targets[:, 0] - self.crop + 1)
        lefts = rng.integers(0, targets[:, 1] - self.crop + 1)
        out = np.empty((n, channels, self.crop, self.crop), batch.dtype)
        dtype = batch.dtype.name
        for i in range(n):
            rows = _resize_weights(height, int(targets[i, 0]), dtype)[tops[i]:tops[i] + self.crop]
            cols = _resize_weights(width, int(targets[i, 1]), dtype)[lefts[i]:lefts[i] + self.crop]
            out[i] = rows @ batch[i] @ cols.T
        return out

    def __repr__(self) -> str:
        return (f"RandomScaleCrop(crop={self.crop}, scale_min={self.scale_min}, "
                f"scale_max={self.scale_max})")


# --- rotation ------------------------------------------------------------------------
#
# Output pixel (y, x) of an image rotated by theta (counter-clockwise as seen on the
# screen, about the centre (cy, cx) = ((H - 1) / 2, (W - 1) / 2)) shows the input at
#
#     sx = cx + (x - cx) cos(theta) - (y - cy) sin(theta)
#     sy = cy + (x - cx) sin(theta) + (y - cy) cos(theta)
#
# read bilinearly from its four neighbouring pixels; a neighbour outside the image
# counts as ``fill`` (as if the image lay on an endless sheet of that value), so the
# edge of the rotated image blends into the fill instead of jumping to it.

def rotate_naive(image, angle: float, fill: float = 0.0) -> np.ndarray:
    """One (C, H, W) image rotated by ``angle`` degrees, pixel by pixel: the definition
    that :func:`rotate` computes for whole batches. Returns float64."""
    image = np.asarray(image, dtype=np.float64)
    channels, height, width = image.shape
    cy, cx = (height - 1) / 2, (width - 1) / 2
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    out = np.empty(image.shape)
    for y in range(height):
        for x in range(width):
            sx = cx + (x - cx) * cos - (y - cy) * sin
            sy = cy + (x - cx) * sin + (y - cy) * cos
            x0, y0 = math.floor(sx), math.floor(sy)
            for c in range(channels):
                total = 0.0
                for yy, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
                    for xx, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
                        inside = 0 <= yy < height and 0 <= xx < width
                        total += wy * wx * (image[c, yy, xx] if inside else fill)
                out[c, y, x] = total
    return out


def rotate(batch, angles, fill: float = 0.0) -> np.ndarray:
    """Rotate image n of a float (N, C, H, W) batch by ``angles[n]`` degrees
    (counter-clockwise, about its centre, bilinear; pixels from outside the image
    are ``fill``), all images at once. Returns the batch's dtype."""
    batch = _batch("rotate", batch)
    n, channels, height, width = batch.shape
    angles = np.asarray(angles, dtype=np.float64)
    if angles.shape != (n,) or not np.isfinite(angles).all():
        raise ValueError(f"rotate: expected {n} finite angles in degrees, one per image, "
                         f"got shape {angles.shape}")
    fill = _real("rotate", "fill", fill)
    theta = np.deg2rad(angles)[:, None, None]
    cy, cx = (height - 1) / 2, (width - 1) / 2
    dy = (np.arange(height) - cy)[None, :, None]
    dx = (np.arange(width) - cx)[None, None, :]
    sx = cx + dx * np.cos(theta) - dy * np.sin(theta)  # (N, H, W)
    sy = cy + dx * np.sin(theta) + dy * np.cos(theta)
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = (sx - x0).astype(batch.dtype), (sy - y0).astype(batch.dtype)
    # a border of fill one pixel wide: every neighbour outside the image is clipped onto it
    padded = np.pad(batch, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=fill)
    flat = padded.reshape(n, channels, (height + 2) * (width + 2))

    def neighbour(yy, xx):
        rows = np.clip(yy, -1, height).astype(np.intp) + 1
        cols = np.clip(xx, -1, width).astype(np.intp) + 1
        index = (rows * (width + 2) + cols).reshape(n, 1, height * width)
        return np.take_along_axis(flat, index, axis=2).reshape(n, channels, height, width)

    fx, fy = fx[:, None], fy[:, None]
    top = (1 - fx) * neighbour(y0, x0) + fx * neighbour(y0, x0 + 1)
    bottom = (1 - fx) * neighbour(y0 + 1, x0) + fx * neighbour(y0 + 1, x0 + 1)
    return (1 - fy) * top + fy * bottom


def _ordered_pair(owner: str, arg: str, pair, minimum: float, maximum: float):
    """A (low, high) pair of numbers in [minimum, maximum] with low <= high."""
    low = _real(owner, arg, pair[0], minimum, maximum)
    high = _real(owner, arg, pair[1], minimum, maximum)
    if low > high:
        raise ValueError(f"{owner}: {arg} (low, high) needs low <= high, got {pair!r}")
    return low, high


def _angle_range(owner: str, degrees) -> tuple[float, float]:
    """``degrees`` as (low, high): a number d is (-d, d)."""
    if isinstance(degrees, (tuple, list)):
        if len(degrees) != 2:
            raise ValueError(f"{owner}: degrees must be a number d (angles in [-d, d]) or a "
                             f"(low, high) pair, got {degrees!r}")
        return _ordered_pair(owner, "degrees", degrees, -360.0, 360.0)
    high = _real(owner, "degrees", degrees, 0.0, 360.0)
    return -high, high


class RandomRotation:
    """Rotate each image by an angle drawn uniformly from [-degrees, degrees] (or from
    [low, high] for a pair), counter-clockwise about its centre, bilinear, with
    ``fill`` where the rotated image shows what lay outside the original (0: black,
    MNIST's background). One draw per image, for every image, even when the range is
    a single angle. See :func:`rotate` and :func:`rotate_naive`."""

    def __init__(self, degrees=20.0, fill: float = 0.0):
        self.degrees = _angle_range("RandomRotation", degrees)
        self.fill = _real("RandomRotation", "fill", fill)

    def __call__(self, batch, rng):
        batch = _batch("RandomRotation", batch)
        rng = _generator("RandomRotation", rng)
        angles = rng.uniform(*self.degrees, size=len(batch))
        return rotate(batch, angles, self.fill)

    def __repr__(self) -> str:
        low, high = self.degrees
        return f"RandomRotation(degrees=({low:g}, {high:g}), fill={self.fill:g})"


# --- hue and saturation ------------------------------------------------------------------
#
# torchvision's definitions. Saturation blends each pixel with its own grey value
# (luma weights, as for contrast): s * x + (1 - s) * grey, clipped to [0, 1]; s = 0 is
# the grey image, s = 1 the image itself. Hue turns every pixel's colour around the
# colour wheel: to HSV (hue h in [0, 1), saturation, value = the largest channel),
# h -> (h + shift) mod 1, and back. A shift of 1/3 takes red to green and green to
# blue: (r, g, b) -> (b, r, g). A hue shift keeps each pixel's largest and smallest
# channel; grey pixels (all channels equal) have no hue and stay as they are.

def hue_saturation_naive(image, saturation: float, hue_shift: float) -> np.ndarray:
    """One RGB (3, H, W) image with its saturation scaled by ``saturation``, then its
    hue turned by ``hue_shift`` (in turns), pixel by pixel through the standard
    library's colorsys: the definition that :func:`adjust_hue_saturation` computes for
    whole batches. Returns float64."""
    image = np.asarray(image, dtype=np.float64)
    out = np.empty(image.shape)
    for y in range(image.shape[1]):
        for x in range(image.shape[2]):
            r, g, b = image[:, y, x]
            grey = GREY_WEIGHTS[0] * r + GREY_WEIGHTS[1] * g + GREY_WEIGHTS[2] * b
            r, g, b = (min(max(saturation * v + (1 - saturation) * grey, 0.0), 1.0)
                       for v in (r, g, b))
            h, s, v = colorsys.rgb_to_hsv(r, g, b)
            out[:, y, x] = colorsys.hsv_to_rgb((h + hue_shift) % 1.0, s, v)
    return out


def _rgb_to_hsv(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in [0, 1), saturation and value, each (N, H, W), of an RGB (N, 3, H, W) batch."""
    r, g, b = batch[:, 0], batch[:, 1], batch[:, 2]
    value = batch.max(axis=1)
    chroma = value - batch.min(axis=1)
    grey = chroma == 0  # no hue: it is 0 by convention, as colorsys has it
    safe = np.where(grey, 1, chroma)
    saturation = np.where(value > 0, chroma / np.where(value > 0, value, 1), 0)
    # the sector of the colour wheel is set by the largest channel (red wins ties, then green)
    hue = np.where(value == r, (g - b) / safe,
                   np.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = np.where(grey, 0, (hue / 6) % 1.0)
    return hue.astype(batch.dtype), saturation.astype(batch.dtype), value


def _hsv_to_rgb(hue, saturation, value) -> np.ndarray:
    """The RGB (N, 3, H, W) batch of (N, H, W) hue, saturation and value.

    Channel c is ``v - v s clip(min(k, 4 - k), 0, 1)`` with ``k = (n_c + 6 h) mod 6``
    and n = 5, 3, 1 for red, green, blue: each channel's piecewise-linear profile
    around the wheel, with no branch per sector."""
    offsets = np.array([5, 3, 1], dtype=hue.dtype)[None, :, None, None]
    k = (offsets + 6 * hue[:, None]) % 6
    ramp = np.clip(np.minimum(k, 4 - k), 0, 1)
    return value[:, None] * (1 - saturation[:, None] * ramp)


def adjust_hue_saturation(batch, saturation, hue_shift) -> np.ndarray:
    """Scale the saturation of image n of an RGB float (N, 3, H, W) batch by
    ``saturation[n]``, then turn its hue by ``hue_shift[n]`` (in turns), all images at
    once; see :func:`hue_saturation_naive`. Returns the batch's dtype."""
    batch = _batch("adjust_hue_saturation", batch)
    n, channels = batch.shape[:2]
    if channels != 3:
        raise ValueError(f"adjust_hue_saturation: needs RGB images (C = 3), got C = {channels}")
    dtype = batch.dtype
    factors, shifts = (np.asarray(v, dtype=np.float64) for v in (saturation, hue_shift))
    if factors.shape != (n,) or shifts.shape != (n,) or not (
            np.isfinite(factors).all() and np.isfinite(shifts).all()):
        raise ValueError(f"adjust_hue_saturation: expected {n} finite saturation factors and "
                         f"hue shifts, one per image, got shapes {factors.shape} and "
                         f"{shifts.shape}")
    # written out rather than a tensordot, whose BLAS call may round differently for a
    # strided view than for a contiguous copy of it
    w = np.asarray(GREY_WEIGHTS, dtype)
    grey = (w[0] * batch[:, 0] + w[1] * batch[:, 1] + w[2] * batch[:, 2])[:, None]
    s = _per_sample(factors.astype(dtype))
    out = np.clip(s * batch + (1 - s) * grey, 0, 1)
    hue, sat, value = _rgb_to_hsv(out)
    hue = (hue + shifts.astype(dtype)[:, None, None]) % 1
    return _hsv_to_rgb(hue, sat, value)


class HueSaturationJitter:
    """Random saturation, then hue, per image of an RGB batch (torchvision's formulas).

    The saturation factor is drawn from U[max(0, 1 - saturation), 1 + saturation],
    the hue shift from U[-hue, hue] (in turns of the colour wheel: 0.5 is half way
    round, the most there is); the defaults are the training-tricks lecture's
    ``ColorJitter(hue=.05, saturation=.05)``. Draws: every factor, then every shift; a zero
    strength skips its step and its draw. Grey images have neither hue nor
    saturation: a batch with one channel is refused rather than passed through, so
    that a pipeline that names this transform never silently does nothing.
    See :func:`adjust_hue_saturation` and :func:`hue_saturation_naive`.
    """

    def __init__(self, hue: float = 0.05, saturation: float = 0.05):
        self.hue = _real("HueSaturationJitter", "hue", hue, 0.0, 0.5)
        self.saturation = _real("HueSaturationJitter", "saturation", saturation, 0.0)

    def __call__(self, batch, rng):
        batch = _batch("HueSaturationJitter", batch)
        rng = _generator("HueSaturationJitter", rng)
        n, channels = batch.shape[:2]
        if channels != 3:
            raise ValueError(f"HueSaturationJitter: needs RGB images (C = 3), got C = "
                             f"{channels}; grey images have no hue or saturation to change")
        factors, shifts = np.ones(n), np.zeros(n)
        if self.saturation > 0:
            factors = rng.uniform(max(0.0, 1 - self.saturation), 1 + self.saturation, n)
        if self.hue > 0:
            shifts = rng.uniform(-self.hue, self.hue, n)
        if self.saturation == 0 and self.hue == 0:
            return batch.copy()
        return adjust_hue_saturation(batch, factors, shifts)

    def __repr__(self) -> str:
        return f"HueSaturationJitter(hue={self.hue:g}, saturation={self.saturation:g})"


# --- random erasing ---------------------------------------------------------------------
#
# Zhong et al., "Random Erasing Data Augmentation" (2017): with probability p, a
# rectangle of each image is painted over, so the network must recognise a shirt from
# what is left of it, as from a partly hidden one. The rectangle covers a fraction
# s ~ U[area] of the image, with aspect ratio (height / width) r drawn log-uniformly
# from [ratio, 1 / ratio], so tall and wide rectangles are equally likely:
#     height = round(sqrt(s H W r)),  width = round(sqrt(s H W / r)),
# each clipped to the image (the paper draws again instead; clipping keeps one draw per
# image, so the generator's stream does not depend on the images' sizes). Its corner is
# uniform over the places where it fits. The paint is uniform noise in [0, 1], the
# paper's choice for Fashion-MNIST and CIFAR, or one grey value.

def erase_naive(image, top: int, left: int, height: int, width: int, value) -> np.ndarray:
    """One (C, H, W) image with rows top..top+height-1 and columns left..left+width-1
    painted with ``value`` (a number, or a (C, H, W) array whose pixels are used there),
    pixel by pixel: the definition that :func:`erase` computes for whole batches.
    Returns float64."""
    image = np.asarray(image, dtype=np.float64)
    paint = np.broadcast_to(np.asarray(value, dtype=np.float64), image.shape)
    out = image.copy()
    for y in range(image.shape[1]):
        for x in range(image.shape[2]):
            if top <= y < top + height and left <= x < left + width:
                out[:, y, x] = paint[:, y, x]
    return out


def erase(batch, top, left, height, width, value=0.0) -> np.ndarray:
    """Paint image n of a float (N, C, H, W) batch with ``value`` on the rectangle of
    rows ``top[n]`` to ``top[n] + height[n] - 1`` and columns ``left[n]`` to
    ``left[n] + width[n] - 1`` (an empty rectangle, height or width 0, leaves it as it
    was), all images at once. ``value`` is a number or an array of the batch's shape,
    whose pixels are used inside the rectangles. Returns the batch's dtype."""
    batch = _batch("erase", batch)
    n, _, rows, cols = batch.shape
    corners = [np.asarray(v) for v in (top, left, height, width)]
    if any(v.shape != (n,) or not np.issubdtype(v.dtype, np.integer) for v in corners):
        raise ValueError(f"erase: expected {n} integer tops, lefts, heights and widths, one "
                         f"per image, got shapes {[v.shape for v in corners]}")
    top, left, height, width = corners
    if (top < 0).any() or (left < 0).any() or (height < 0).any() or (width < 0).any() \
            or (top + height > rows).any() or (left + width > cols).any():
        raise ValueError(f"erase: every rectangle must lie inside the {rows}x{cols} images")
    if np.ndim(value) == 0:
        value = _real("erase", "value", value)
    elif np.shape(value) != batch.shape:
        raise ValueError(f"erase: value must be a number or an array of the batch's shape "
                         f"{batch.shape}, got shape {np.shape(value)}")
    y = np.arange(rows)[None, :, None]
    x = np.arange(cols)[None, None, :]
    inside = ((y >= top[:, None, None]) & (y < (top + height)[:, None, None])
              & (x >= left[:, None, None]) & (x < (left + width)[:, None, None]))
    return np.where(inside[:, None], np.asarray(value, dtype=batch.dtype), batch)


class RandomErasing:
    """Paint a random rectangle of each image with probability ``p`` (Zhong et al.):
    covering a fraction of the image drawn from U[area], with aspect ratio log-uniform
    in [ratio, 1 / ratio], at a uniform place, painted with uniform noise in [0, 1]
    (``value="random"``) or with one value. The defaults are the paper's (p = 0.5,
    area (0.02, 0.4), ratio 0.3).

    Draws, for every image whether erased or not: whether, area, log ratio, top,
    left; then, for noise, one (N, C, H, W) array. See :func:`erase` and
    :func:`erase_naive`."""

    def __init__(self, p: float = 0.5, area=(0.02, 0.4), ratio: float = 0.3,
                 value="random"):
        owner = "RandomErasing"
        self.p = _real(owner, "p", p, 0.0, 1.0)
        if not isinstance(area, (tuple, list)) or len(area) != 2:
            raise ValueError(f"{owner}: area must be a (low, high) pair of fractions of the "
                             f"image, got {area!r}")
        self.area = _ordered_pair(owner, "area", area, 0.0, 1.0)
        self.ratio = _real(owner, "ratio", ratio, 0.0, 1.0)
        if self.ratio == 0:
            raise ValueError(f"{owner}: ratio must be in (0, 1], got 0.0")
        if isinstance(value, str) and value != "random":
            raise ValueError(f"{owner}: value must be 'random' (uniform noise) or a number in "
                             f"[0, 1], got {value!r}")
        self.value = value if isinstance(value, str) else _real(owner, "value", value, 0.0, 1.0)

    def rectangles(self, n: int, rows: int, cols: int, rng):
        """(top, left, height, width) of the rectangles of n images of rows x cols pixels;
        height and width are 0 for an image left as it is."""
        erased = rng.random(n) < self.p
        area = rng.uniform(*self.area, size=n) * rows * cols
        log_ratio = rng.uniform(math.log(self.ratio), -math.log(self.ratio), size=n)
        height = np.clip(np.rint(np.sqrt(area * np.exp(log_ratio))), 1, rows).astype(np.intp)
        width = np.clip(np.rint(np.sqrt(area * np.exp(-log_ratio))), 1, cols).astype(np.intp)
        top = np.floor(rng.random(n) * (rows - height + 1)).astype(np.intp)
        left = np.floor(rng.random(n) * (cols - width + 1)).astype(np.intp)
        return top, left, np.where(erased, height, 0), np.where(erased, width, 0)

    def __call__(self, batch, rng):
        batch = _batch("RandomErasing", batch)
        rng = _generator("RandomErasing", rng)
        n, _, rows, cols = batch.shape
        top, left, height, width = self.rectangles(n, rows, cols, rng)
        value = rng.random(batch.shape).astype(batch.dtype) \
            if self.value == "random" else self.value
        return erase(batch, top, left, height, width, value)

    def __repr__(self) -> str:
        value = repr(self.value) if isinstance(self.value, str) else f"{self.value:g}"
        return (f"RandomErasing(p={self.p:g}, area=({self.area[0]:g}, {self.area[1]:g}), "
                f"ratio={self.ratio:g}, value={value})")
