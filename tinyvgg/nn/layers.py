"""The layers VGG is built from, with PyTorch's parameter names and shapes."""
from __future__ import annotations

import contextlib
import contextvars

import numpy as np

from .. import choices
from .. import functional as F
from ..ops.dropout import check_p
from ..ops.lrn import check_params as check_lrn_params
from ..ops.pool import normalize_output_size
from . import init
from .module import Module, Parameter


_SHAPES_ONLY = contextvars.ContextVar("shapes_only", default=False)


@contextlib.contextmanager
def shapes_only():
    """Layers built inside hold weights of the right shapes and dtypes that take no memory:
    one zero seen through every index (a read-only broadcast), left uninitialised. Such a
    model describes a network (its layers, shapes and parameter counts; see
    ``tinyvgg.tools.summary.vgg_summary``) without the 528 MiB that VGG-16's weights take in
    float32; it is not one to run or train, and any write into its weights fails."""
    token = _SHAPES_ONLY.set(True)
    try:
        yield
    finally:
        _SHAPES_ONLY.reset(token)


def _empty(shape, dtype):
    if _SHAPES_ONLY.get():
        return np.broadcast_to(np.zeros((), dtype=np.dtype(dtype)), shape)
    return np.zeros(shape, dtype=np.dtype(dtype))


def _initialise(weight, bias):
    if not _SHAPES_ONLY.get():
        init.default_(weight, bias)


def _check_rank(layer, input_shape, ndim: int, layout: str) -> tuple:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != ndim:
        raise ValueError(f"{layer._describe()}: input must be {ndim}-D {layout}, "
                         f"got shape {shape}")
    return shape


class _SameShape:
    """For layers whose output has their input's shape."""

    def output_shape(self, input_shape) -> tuple:
        """The output's shape for an input of ``input_shape``, from the hyperparameters
        alone: elementwise or per channel, the input's own."""
        return tuple(int(s) for s in input_shape)


def _check_dtype(layer, dtype):
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"{layer}: dtype must be float32 or float64, got {np.dtype(dtype)}")


class _Conv(Module):
    kernel = 0

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"{name}: channel counts must be positive, "
                             f"got in_channels={in_channels}, out_channels={out_channels}")
        _check_dtype(name, dtype)
        self.in_channels, self.out_channels = in_channels, out_channels
        k = self.kernel
        # Stored (Cout, k, k, Cin) in memory, shown as (Cout, Cin, k, k): the memory
        # order of the im2col columns, so the convolution's matrix product reads
        # the weight (and writes its gradient) without a transposing copy.
        kernel_major = _empty((out_channels, k, k, in_channels), dtype)
        self.weight = Parameter(kernel_major.transpose(0, 3, 1, 2))
        self.bias = Parameter(_empty((out_channels,), dtype)) if bias else None
        _initialise(self.weight, self.bias)

    def output_shape(self, input_shape) -> tuple:
        """The output's shape for an input of ``input_shape``, from the hyperparameters
        alone: (N, out_channels, H, W), stride 1 and the padding that keeps the size."""
        n, c, h, w = _check_rank(self, input_shape, 4, "(N, C, H, W)")
        if c != self.in_channels:
            raise ValueError(f"{self._describe()}: input has {c} channels but the layer "
                             f"expects {self.in_channels} (input shape {(n, c, h, w)})")
        return (n, self.out_channels, h, w)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}" + ("" if self.bias is not None
                                                             else ", bias=False")


#: whether a Sequential runs a Conv3x3 and the ReLU right after it as one op
#: (F.conv3x3_relu: on the GPU the convolution's kernels apply the ReLU and its mask, so
#: the ReLU's passes over memory disappear from the step) or as the two layers they are.
#: The values and gradients are the same; the layers, their names and state_dict too.
CONV_RELU = choices.Choice("conv_relu", "conv3x3 + ReLU execution", ("fused", "separate"),
                           "fused")
use_conv_relu, using_conv_relu, conv_relu = CONV_RELU.functions()


class Conv3x3(_Conv):
    """3x3 convolution, stride 1, padding 1 (``torch.nn.Conv2d(cin, cout, 3, padding=1)``)."""
    kernel = 3

    def forward(self, x, relu: bool = False):
        """The convolution; with ``relu``, followed by a ReLU in the same op (Sequential
        asks for it when a ReLU layer comes next, see fuses_with)."""
        if relu:
            return F.conv3x3_relu(x, self.weight, self.bias)
        return F.conv3x3(x, self.weight, self.bias)

    def fuses_with(self, following: Module) -> bool:
        """Whether ``self(x, relu=True)`` may stand for ``following(self(x))``: the next
        layer is a plain ReLU, fusion is selected, and neither layer has forward hooks
        (they would see a different output)."""
        return (type(following) is ReLU and conv_relu() == "fused"
                and not self.has_forward_hooks() and not following.has_forward_hooks())


class Conv1x1(_Conv):
    """1x1 convolution (``torch.nn.Conv2d(cin, cout, 1)``)."""
    kernel = 1

    def forward(self, x):
        return F.conv1x1(x, self.weight, self.bias)


class Linear(Module):
    """y = x W^T + b, W of shape (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype=np.float32):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear: feature counts must be positive, got "
                             f"in_features={in_features}, out_features={out_features}")
        _check_dtype("Linear", dtype)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_empty((out_features, in_features), dtype))
        self.bias = Parameter(_empty((out_features,), dtype)) if bias else None
        _initialise(self.weight, self.bias)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def output_shape(self, input_shape) -> tuple:
        """The output's shape for an input of ``input_shape``: the last axis becomes
        out_features."""
        shape = tuple(int(s) for s in input_shape)
        if not shape or shape[-1] != self.in_features:
            raise ValueError(f"{self._describe()}: input must end in in_features = "
                             f"{self.in_features}, got input shape {shape}")
        return shape[:-1] + (self.out_features,)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}" + \
            ("" if self.bias is not None else ", bias=False")


class MaxPool2x2(Module):
    """2x2 max pooling, stride 2 (``torch.nn.MaxPool2d(2, 2)``)."""

    def forward(self, x):
        return F.maxpool2x2(x)

    def output_shape(self, input_shape) -> tuple:
        """The output's shape for an input of ``input_shape``: H and W halved, rounded down."""
        n, c, h, w = _check_rank(self, input_shape, 4, "(N, C, H, W)")
        if h < 2 or w < 2:
            raise ValueError(f"{self._describe()}: input must be at least 2x2 in H and W, "
                             f"got shape {(n, c, h, w)}")
        return (n, c, h // 2, w // 2)


class ReLU(_SameShape, Module):
    def forward(self, x):
        return F.relu(x)


class Tanh(_SameShape, Module):
    def forward(self, x):
        return F.tanh(x)


class Flatten(Module):
    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim)

    def output_shape(self, input_shape) -> tuple:
        """The output's shape for an input of ``input_shape``: the axes from start_dim on
        merged into one."""
        shape = tuple(int(s) for s in input_shape)
        if not -len(shape) <= self.start_dim < len(shape):
            raise ValueError(f"{self._describe()}: start_dim must index one of the input's "
                             f"{len(shape)} axes, got input shape {shape}")
        start = self.start_dim % len(shape)
        return shape[:start] + (int(np.prod(shape[start:], dtype=np.int64)),)

    def extra_repr(self):
        return f"start_dim={self.start_dim}"


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = normalize_output_size("AdaptiveAvgPool2d", output_size)

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def output_shape(self, input_shape) -> tuple:
        """The output's shape for an input of ``input_shape``: (N, C) and output_size."""
        n, c, _, _ = _check_rank(self, input_shape, 4, "(N, C, H, W)")
        return (n, c) + tuple(self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Dropout(_SameShape, Module):
    """Inverted dropout in training mode, identity in eval mode; ``p`` = drop probability."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_p(p)

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training)

    def extra_repr(self):
        return f"p={self.p}"


class BatchNorm2d(Module):
    """Batch norm over (N, H, W) per channel, with running statistics for eval mode.

    ``reduce`` (None, or a function that sums an array over processes) makes a batch
    split over processes normalise with the whole batch's statistics (synchronised batch
    norm; ``tinyvgg.train.distributed`` sets it)."""

    reduce = None

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, dtype=np.float32):
        super().__init__()
        if num_features < 1:
            raise ValueError(f"BatchNorm2d: num_features must be positive, got {num_features}")
        _check_dtype("BatchNorm2d", dtype)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, dtype=dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype=dtype)) if affine else None
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
        self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def forward(self, x):
        y = F.batch_norm2d(x, self.running_mean, self.running_var, self.weight, self.bias,
                           training=self.training, momentum=self.momentum, eps=self.eps,
                           reduce=self.reduce)
        if self.training:
            self.num_batches_tracked += 1
        return y

    def output_shape(self, input_shape) -> tuple:
        """The output's shape for an input of ``input_shape``: the input's, whose channels
        are the num_features normalised."""
        shape = _check_rank(self, input_shape, 4, "(N, C, H, W)")
        if shape[1] != self.num_features:
            raise ValueError(f"{self._describe()}: input has {shape[1]} channels but the "
                             f"layer normalises {self.num_features} (input shape {shape})")
        return shape

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class LocalResponseNorm(_SameShape, Module):
    """Local response normalisation across ``size`` neighbouring channels
    (``torch.nn.LocalResponseNorm``); no parameters."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = check_lrn_params(
            "LocalResponseNorm", size, alpha, beta, k)

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
