"""Dense evaluation: the VGG paper's test method (Simonyan & Zisserman, section 3.2).

At test time the paper does not cut the image into 224x224 crops. It turns
the fully connected layers into convolutions: FC6, which reads the 7x7x512
feature map, is a 7x7 convolution with 4096 filters, and FC7 and FC8 are 1x1
convolutions. The network is then fully convolutional and runs on an image of
any size from 224 up. Its output is a class-score *map*: one score vector per
7x7 window of the feature map, that is, per 224x224 window of the image at a
stride of 32 pixels. The map is averaged over its positions (the paper's
"sum-pooling") into one score vector per image.

Why a fully connected layer is a convolution. FC6's weight W has shape
(4096, 512 * 7 * 7), and its columns are in the order the 7x7x512 map was
flattened, (c, u, v). So for the window whose top-left corner is (i, j)::

    y[o, i, j] = b[o] + sum_{c, u, v} W[o, (c, u, v)] * x[c, i + u, j + v]

which is a 7x7 "valid" convolution (no padding) whose kernel is W reshaped
to (4096, 512, 7, 7). The engine has no 7x7 convolution; it does not need
one. Each window is gathered into a row (a view with strides, then one copy:
the im2col of the convolution layers), and the rows are multiplied with W by
the engine's own ``F.linear``. FC7 and FC8 see one position each, so they are
``F.linear`` on the same rows.

At the training size the two evaluations agree: a 224x224 image gives a 7x7
feature map, the model's adaptive average pool to 7x7 is the identity, and
the map has one position, the model's output. On a larger image the dense
pass does the work of all the overlapping crops at once, computing their
shared convolutions a single time. It is not the same as running the crops,
though: a crop's convolutions see zero padding at its border where the
dense pass sees the neighbouring pixels.

The compact head (an average pool to 1x1, then FC layers as wide as the last
convolution) works the same way with a 1x1 window: FC6 becomes a 1x1
convolution and the training size is 32x32.

``DenseVGG`` is for inference only: it runs under ``no_grad`` and in eval
mode (dropout off, batch norm with its running statistics), and puts every
layer back into the mode it had. :func:`multi_scale_scores` is the paper's
multi-scale testing: the softmax posteriors averaged over several scales Q
and over horizontal flips.
"""
from __future__ import annotations

import numpy as np

from .. import backend, nn
from ..data.transforms import bilinear_weights
from ..tensor import Tensor, no_grad
from .imagenet import softmax

#: the layers a classifier may hold: the FC layers and what sits between them
CLASSIFIER_LAYERS = (nn.Linear, nn.ReLU, nn.Dropout)


def _check_model(model) -> tuple[int, int]:
    """(window, channels of the last convolution) of a VGG-like model; a clear error if
    ``model`` lacks torchvision's features -> avgpool -> classifier layout."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"DenseVGG: expected a VGG model (tinyvgg.models.vgg(...)), "
                        f"got {type(model).__name__}")
    missing = [name for name in ("features", "avgpool", "classifier")
               if not isinstance(getattr(model, name, None), nn.Module)]
    if missing:
        raise ValueError(f"DenseVGG: expected a VGG with features, avgpool and classifier "
                         f"(torchvision's layout), but {type(model).__name__} has no "
                         f"{', '.join(missing)}")
    pool = model.avgpool
    if not isinstance(pool, nn.AdaptiveAvgPool2d) or pool.output_size[0] != pool.output_size[1]:
        raise ValueError(f"DenseVGG: expected avgpool to be a square AdaptiveAvgPool2d "
                         f"(7x7 for the ImageNet head, 1x1 for the compact one), got {pool!r}")
    window = pool.output_size[0]
    convs = [m for m in model.features.children() if isinstance(m, (nn.Conv3x3, nn.Conv1x1))]
    if not convs:
        raise ValueError("DenseVGG: the model's features hold no convolution")
    channels = convs[-1].out_channels
    layers = list(model.classifier.children())
    strangers = [type(m).__name__ for m in layers if not isinstance(m, CLASSIFIER_LAYERS)]
    if not layers or not isinstance(layers[0], nn.Linear) or strangers:
        kinds = ", ".join(type(m).__name__ for m in layers) or "nothing"
        raise ValueError(f"DenseVGG: expected a classifier of Linear layers with ReLU and "
                         f"Dropout between them, starting with a Linear, got {kinds}")
    expected = channels * window * window
    if layers[0].in_features != expected:
        raise ValueError(f"DenseVGG: the classifier's first Linear must read the "
                         f"{channels}x{window}x{window} = {expected} values of the pooled "
                         f"features, but it reads {layers[0].in_features}")
    return window, channels


def window_rows(feature_map: Tensor, window: int) -> tuple[Tensor, tuple[int, int, int]]:
    """Every ``window`` x ``window`` patch of an (N, C, H, W) map as a row of C*window^2
    values in (c, u, v) order, with (N, h, w) = (N, H - window + 1, W - window + 1).

    The patches are first a strided *view* of the map (no copy: patch (n, i, j)
    starts at the memory of pixel (i, j) and steps through it with the map's
    own strides), then copied once into contiguous rows."""
    data = feature_map.data
    xp = backend.array_module(data)
    n, c, height, width = data.shape
    h, w = height - window + 1, width - window + 1
    s_n, s_c, s_h, s_w = data.strides
    patches = xp.lib.stride_tricks.as_strided(
        data, shape=(n, h, w, c, window, window), strides=(s_n, s_h, s_w, s_c, s_h, s_w))
    rows = xp.ascontiguousarray(patches).reshape(n * h * w, c * window * window)
    return Tensor(rows), (n, h, w)


class _EvalMode:
    """Switch a module tree to eval mode, then give every layer back its own mode."""

    def __init__(self, module):
        self.modes = [(m, m.training) for _, m in module.named_modules()]
        self.module = module

    def __enter__(self):
        self.module.eval()

    def __exit__(self, *exc):
        for module, mode in self.modes:
            module.training = mode
        return False


class DenseVGG(nn.Module):
    """A VGG with its fully connected layers applied as convolutions (inference only).

    ``DenseVGG(model)`` shares the model's ``features`` and ``classifier`` (no
    copy; the ``state_dict`` names are the model's). Calling it on (N, C, H, W)
    images of at least the training size returns the class-score map,
    (N, classes, H_feat - window + 1, W_feat - window + 1), where H_feat is
    the feature map's height (H // 32 for five pools) and the window 7 for the
    ImageNet head, 1 for the compact one. :meth:`class_scores` averages the map.
    """

    def __init__(self, model):
        super().__init__()
        self.window, self.channels = _check_model(model)
        self.features = model.features
        self.classifier = model.classifier
        self.pools = sum(isinstance(m, nn.MaxPool2x2) for m in model.features.children())
        first = next(m for m in model.features.children()
                     if isinstance(m, (nn.Conv3x3, nn.Conv1x1)))
        self.in_channels = first.in_channels
        #: the smallest input whose feature map holds one window (224 for the ImageNet head)
        self.training_size = self.window * 2 ** self.pools

    def map_shape(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the score map for an image of ``height`` x ``width``."""
        scale = 2 ** self.pools
        return height // scale - self.window + 1, width // scale - self.window + 1

    def _check_input(self, x) -> Tensor:
        if not isinstance(x, Tensor):
            if backend.device_of_or_none(x) is None:
                raise TypeError(f"DenseVGG: expected a tinyvgg Tensor or an array of images, "
                                f"got {type(x).__name__}")
            x = Tensor(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DenseVGG: expected images of shape (N, {self.in_channels}, H, W), "
                             f"got shape {x.shape}")
        height, width = x.shape[2:]
        if height < self.training_size or width < self.training_size:
            raise ValueError(
                f"DenseVGG: input of {height}x{width} is smaller than the training size "
                f"{self.training_size}x{self.training_size}: FC6 as a {self.window}x{self.window} "
                f"convolution needs a feature map of at least {self.window}x{self.window}")
        return x

    def forward(self, x) -> Tensor:
        x = self._check_input(x)
        with no_grad(), _EvalMode(self):
            features = self.features(x)
            rows, (n, h, w) = window_rows(features, self.window)
            scores = self.classifier(rows)  # FC6 on every window, FC7 and FC8 on every row
        xp = backend.array_module(scores.data)
        score_map = scores.data.reshape(n, h, w, -1).transpose(0, 3, 1, 2)
        return Tensor(xp.ascontiguousarray(score_map))

    def class_scores(self, x) -> Tensor:
        """(N, classes): the score map averaged over its positions."""
        return Tensor(self(x).data.mean(axis=(2, 3)))

    def extra_repr(self):
        return f"window={self.window}, training_size={self.training_size}"


def resize_images(images, size: int):
    """(N, C, H, W) images rescaled so the shorter side is ``size``, keeping the aspect ratio
    (the paper's isotropic rescaling), on the images' own device.

    The filter is the training transforms' bilinear triangle (widened when
    shrinking, so nothing aliases; ``tinyvgg.data.transforms.bilinear_weights``),
    separable, so a resize is two matrix products: ``rows @ image @ cols^T``.
    Returns ``images`` itself when the size does not change."""
    xp = backend.array_module(images)
    _, _, height, width = images.shape
    if size < 1:
        raise ValueError(f"resize_images: size must be positive, got {size}")
    if height <= width:
        target = size, max(1, int(round(width * size / height)))
    else:
        target = max(1, int(round(height * size / width))), size
    if target == (height, width):
        return images
    rows = xp.asarray(bilinear_weights(height, target[0]), dtype=images.dtype)
    cols = xp.asarray(bilinear_weights(width, target[1]), dtype=images.dtype)
    return xp.matmul(xp.matmul(rows, images), cols.T)


def multi_scale_scores(model, images, sizes, flip: bool = True) -> np.ndarray:
    """The paper's multi-scale dense evaluation: softmax posteriors averaged over the
    scales Q in ``sizes`` (the shorter side, e.g. {S - 32, S, S + 32}) and, with
    ``flip``, over each image and its mirror. ``model`` is a VGG or a DenseVGG;
    ``images`` an (N, C, H, W) Tensor or array. Returns (N, classes) NumPy float64."""
    dense = model if isinstance(model, DenseVGG) else DenseVGG(model)
    data = images.data if isinstance(images, Tensor) else images
    if backend.device_of_or_none(data) is None:
        raise TypeError(f"multi_scale_scores: expected images as a Tensor or an array, "
                        f"got {type(images).__name__}")
    if getattr(data, "ndim", 0) != 4:
        raise ValueError(f"multi_scale_scores: expected images of shape (N, C, H, W), "
                         f"got shape {tuple(data.shape)}")
    sizes = [int(s) for s in np.atleast_1d(sizes)]
    if not sizes:
        raise ValueError("multi_scale_scores: give at least one size")
    xp = backend.array_module(data)
    total, views = 0.0, 0
    for size in sizes:
        scaled = resize_images(data, size)
        for mirrored in ((False, True) if flip else (False,)):
            batch = xp.ascontiguousarray(scaled[..., ::-1]) if mirrored else scaled
            total = total + softmax(backend.to_numpy(dense.class_scores(Tensor(batch)).data))
            views += 1
    return total / views
