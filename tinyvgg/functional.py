"""The ops as functions of tensors (NCHW layout, float32 or float64).

Each function is a thin wrapper: the op's math, its naive reference, its fast
version and its backward live together in one file under ``tinyvgg/ops``.
"""
from __future__ import annotations

import numpy as np

from . import backend, random
from .ops.activation import ReLU, Tanh
from .ops.arith import Add, Mul
from .ops.conv import Conv1x1, Conv3x3, Conv3x3ReLU
from .ops.dropout import Dropout, check_p
from .ops.linear import Linear
from .ops.loss import CrossEntropy
from .ops.lrn import LocalResponseNorm
from .ops.norm import BatchNorm2d
from .ops.pool import AdaptiveAvgPool2d, MaxPool2x2
from .ops.shape import Reshape
from .tensor import Tensor, as_tensor

__all__ = ["conv3x3", "conv3x3_relu", "conv1x1", "maxpool2x2", "relu", "tanh", "linear", "flatten",
           "adaptive_avg_pool2d", "batch_norm2d", "local_response_norm", "dropout",
           "cross_entropy", "add", "mul"]


def _check_tensor(op: str, name: str, value) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{op}: {name} must be a tinyvgg Tensor, got {type(value).__name__} "
                        "(wrap arrays with tinyvgg.tensor(...))")
    return value


def conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """3x3 convolution, stride 1, padding 1: (N, Cin, H, W) -> (N, Cout, H, W).

    ``weight`` is (Cout, Cin, 3, 3) and ``bias`` (Cout,), as in ``torch.nn.Conv2d``.
    """
    return Conv3x3.apply(_check_tensor("conv3x3", "input", x), weight, bias)


def conv3x3_relu(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """relu(conv3x3(x, weight, bias)) as one op: the same values and gradients, without
    the ReLU's own pass over memory (on the GPU the convolution's kernels apply it)."""
    return Conv3x3ReLU.apply(_check_tensor("conv3x3_relu", "input", x), weight, bias)


def conv1x1(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """1x1 convolution: (N, Cin, H, W) -> (N, Cout, H, W), ``weight`` (Cout, Cin, 1, 1)."""
    return Conv1x1.apply(_check_tensor("conv1x1", "input", x), weight, bias)


def maxpool2x2(x: Tensor) -> Tensor:
    """2x2 max pooling, stride 2: (N, C, H, W) -> (N, C, H // 2, W // 2).

    Ties go to the first maximum in row-major window order (PyTorch's rule).
    """
    return MaxPool2x2.apply(_check_tensor("maxpool2x2", "input", x))


def relu(x: Tensor) -> Tensor:
    """max(x, 0), with gradient 0 at x = 0."""
    return ReLU.apply(_check_tensor("relu", "input", x))


def tanh(x: Tensor) -> Tensor:
    """The hyperbolic tangent, with gradient 1 - tanh(x)^2."""
    return Tanh.apply(_check_tensor("tanh", "input", x))


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b with ``weight`` of shape (out_features, in_features)."""
    return Linear.apply(_check_tensor("linear", "input", x), weight, bias)


def flatten(x: Tensor, start_dim: int = 1) -> Tensor:
    """Merge the axes from ``start_dim`` on into one, in C order ((c, h, w) for NCHW)."""
    x = _check_tensor("flatten", "input", x)
    if not -x.ndim <= start_dim < x.ndim:
        raise ValueError(f"flatten: start_dim must index one of the input's {x.ndim} axes, "
                         f"got {start_dim}")
    start_dim %= x.ndim
    return Reshape.apply(x, shape=x.shape[:start_dim] + (-1,))


def adaptive_avg_pool2d(x: Tensor, output_size) -> Tensor:
    """Average pooling to ``output_size`` (an int or (Ho, Wo)) with PyTorch's bins."""
    return AdaptiveAvgPool2d.apply(_check_tensor("adaptive_avg_pool2d", "input", x),
                                   output_size=output_size)


def batch_norm2d(x: Tensor, running_mean=None, running_var=None, weight: Tensor | None = None,
                 bias: Tensor | None = None, training: bool = True, momentum: float = 0.1,
                 eps: float = 1e-5, reduce=None) -> Tensor:
    """Batch normalisation over (N, H, W) for each channel.

    In training mode the batch statistics are used and ``running_mean`` /
    ``running_var`` (arrays or tensors of shape (C,), optional) are updated in
    place; in evaluation mode the running statistics are used. ``reduce``, for a
    batch split over processes, sums an array over them and returns the sum: the
    statistics are then the whole batch's (synchronised batch norm).
    """
    def raw(v):
        return v.data if isinstance(v, Tensor) else v
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"batch_norm2d: momentum must be in [0, 1], got {momentum}")
    if eps <= 0:
        raise ValueError(f"batch_norm2d: eps must be positive, got {eps}")
    return BatchNorm2d.apply(_check_tensor("batch_norm2d", "input", x), weight, bias,
                             raw(running_mean), raw(running_var), training=bool(training),
                             momentum=float(momentum), eps=float(eps), reduce=reduce)


def local_response_norm(x: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> Tensor:
    """Divide each value by ``(k + alpha/size * s)^beta``, where ``s`` sums the squares
    of ``size`` neighbouring channels at the same pixel (AlexNet's LRN).

    Channel c's window is c - size//2 .. c + (size-1)//2, zero-padded at both
    ends, with the defaults of ``torch.nn.functional.local_response_norm``.
    """
    return LocalResponseNorm.apply(_check_tensor("local_response_norm", "input", x),
                                   size=size, alpha=alpha, beta=beta, k=k)


def dropout(x: Tensor, p: float = 0.5, training: bool = True, seed: int | None = None) -> Tensor:
    """Inverted dropout: zero each element with probability ``p``, scale the rest by 1/(1-p).

    ``p`` is the probability of DROPPING (PyTorch's convention); many lecture
    notes use the probability of keeping instead. Outside training this is
    the identity. The mask is a pure function of ``seed`` and the element
    index (Philox-4x32-10), so a seed gives the same mask on every device;
    without a seed one is drawn from ``tinyvgg.manual_seed``'s generator.
    When the batch is one part of a larger batch split over processes
    (``tinyvgg.random.set_first_sample``), each element is numbered by its place in
    the whole batch, so its mask does not depend on how the batch is split.
    """
    x = _check_tensor("dropout", "input", x)
    p = check_p(p)
    if not training or p == 0.0:
        return x
    seed = random.next_seed() if seed is None else random.check_seed("dropout", seed)
    first = random.first_sample() * (x.size // x.shape[0]) if x.ndim and x.shape[0] else 0
    return Dropout.apply(x, p=p, seed=seed, first=first)


def cross_entropy(logits: Tensor, labels, label_smoothing: float = 0.0) -> Tensor:
    """Mean softmax cross-entropy of (N, C) logits and N integer labels in [0, C).

    ``label_smoothing`` e moves e of each target's weight from the label to all C
    classes evenly, as PyTorch's argument of that name does."""
    labels = labels.data if isinstance(labels, Tensor) else labels
    return CrossEntropy.apply(_check_tensor("cross_entropy", "logits", logits),
                              _as_labels(labels), label_smoothing=label_smoothing)


def _as_labels(labels):
    if isinstance(labels, Tensor):
        labels = labels.data
    if backend.device_of_or_none(labels) == "cuda":
        return labels  # checked by the op, which copies the few labels to the host
    array = np.asarray(labels)
    if array.dtype == object:
        raise TypeError("cross_entropy: labels must be an integer array")
    return array


def add(a: Tensor, b) -> Tensor:
    return Add.apply(a, as_tensor(b, a))


def mul(a: Tensor, b) -> Tensor:
    return Mul.apply(a, as_tensor(b, a))
