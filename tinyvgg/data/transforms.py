"""Image transforms on NumPy arrays (H, W, C), written out so their arithmetic is visible.

Resizing uses the bilinear (triangle) filter widened by the scale factor
when shrinking, as Pillow does: each output pixel averages every input
pixel under the filter, so a photo shrunk 10x does not alias. The filter is
separable, so a resize is two matrix products: ``rows @ image @ cols^T``.
"""
from __future__ import annotations

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
    height, width = image.shape[:2]
    if height <= width:
        target = (size, max(1, int(round(width * size / height))))
    else:
        target = (max(1, int(round(height * size / width))), size)
    return resize(image, target)


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
