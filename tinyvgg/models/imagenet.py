"""Classifying a photo with ImageNet weights: torchvision's evaluation preprocessing.

Resize the shorter side to 256, take the central 224x224, scale to [0, 1]
and normalise with the ImageNet channel statistics that torchvision's
pretrained VGGs were trained with.
"""
from __future__ import annotations

import numpy as np

from ..data.transforms import center_crop, normalize, resize_shorter_side

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess(image, resize_to: int = 256, crop: int = 224, dtype=np.float32) -> np.ndarray:
    """An RGB uint8 image (H, W, 3) -> a (1, 3, crop, crop) batch for a VGG."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"preprocess: expected an RGB image of shape (H, W, 3), "
                         f"got shape {image.shape}")
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    image = center_crop(resize_shorter_side(image, resize_to), crop) / scale
    image = normalize(image, IMAGENET_MEAN, IMAGENET_STD)
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=dtype)


def softmax(logits) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def top_k(logits, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(class indices, probabilities) of the ``k`` most likely classes, per row."""
    probabilities = softmax(logits)
    order = np.argsort(-probabilities, axis=-1, kind="stable")[..., :k]
    return order, np.take_along_axis(probabilities, order, axis=-1)
