"""The nonlinearities: relu and tanh.

relu: y = max(x, 0).

Backward: dy/dx is 1 where x > 0 and 0 where x < 0; at the kink x = 0 we take
0 (PyTorch's choice), so ``dL/dx = g * (y > 0)``. Keeping ``y`` rather than
``x`` is enough to know the sign, and ``y`` is kept alive by the next layer
anyway.

Finite differences cannot see a one-sided slope at the kink, so gradient
checks use inputs kept away from 0 (``tinyvgg.gradcheck.kink_free``).

tanh: y = (e^x - e^-x) / (e^x + e^-x).

Backward: the quotient rule gives
dy/dx = ((e^x + e^-x)^2 - (e^x - e^-x)^2) / (e^x + e^-x)^2 = 1 - y^2,
so ``dL/dx = g * (1 - y^2)``. As for relu, the output is all backward needs.
The slope is 1 at 0 and vanishes as |x| grows (tanh saturates): 1 - y^2 is
about 0.07 at |x| = 2 and 0.0002 at |x| = 5.
"""
from __future__ import annotations

import math

import numpy as np

from .. import cuda, workers
from ..tensor import Function
from . import checks


def _pointwise_cuda(kernel: str, *arrays):
    """out = kernel(arrays...) element by element, one GPU thread per element
    (kernels/activation.cu holds the activations' kernels); out is shaped like arrays[0]."""
    arrays = [cuda.contiguous(a) for a in arrays]
    out = cuda.empty_like(arrays[0])
    cuda.launch_elementwise("activation", kernel, out.dtype, out.size, *arrays, out)
    return out


def relu_cpu(x, out):
    """out = max(x, 0) for NumPy arrays (out may be x), the batch split among the workers."""
    workers.run_over_first_axis(lambda s: np.maximum(x[s], 0, out=out[s]), x)
    return out


def relu_backward_cpu(g, y):
    """g where y > 0, else 0, for NumPy arrays: relu's backward from its output y."""
    dx = np.empty_like(g)
    workers.run_over_first_axis(lambda s: np.multiply(g[s], y[s] > 0, out=dx[s]), g)
    return dx


def relu_backward_cuda(g, y):
    """g where y > 0, else 0, for CuPy arrays: relu's backward from its output y."""
    return _pointwise_cuda("relu_backward", g, y)


def relu_naive(x):
    y = np.empty(x.shape, dtype=x.dtype)
    for index in np.ndindex(*x.shape):
        y[index] = x[index] if x[index] > 0 else 0
    return y


class ReLU(Function):
    """y = max(x, 0).  Backward: dL/dx = g * [y > 0].  GPU: kernels/activation.cu."""
    name = "relu"

    @staticmethod
    def check(x):
        checks.floating("relu", input=x)

    @staticmethod
    def forward_cpu(ctx, x):
        y = relu_cpu(x, np.empty_like(x))  # keeps x's memory layout
        if ctx.needs_input_grad[0]:
            ctx.save(y=y)
        return y

    @staticmethod
    def forward_cuda(ctx, x):
        y = _pointwise_cuda("relu_forward", x)
        if ctx.needs_input_grad[0]:
            ctx.save(y=y)
        return y

    @staticmethod
    def backward_cpu(ctx, g):
        return (relu_backward_cpu(g, ctx.y),)

    @staticmethod
    def backward_cuda(ctx, g):
        return (relu_backward_cuda(g, ctx.y),)


def tanh_naive(x):
    y = np.empty(x.shape, dtype=x.dtype)
    for index in np.ndindex(*x.shape):
        y[index] = math.tanh(x[index])
    return y


class Tanh(Function):
    """y = tanh(x).  Backward: dL/dx = g * (1 - y^2).  GPU: kernels/activation.cu."""
    name = "tanh"

    @staticmethod
    def check(x):
        checks.floating("tanh", input=x)

    @staticmethod
    def forward_cpu(ctx, x):
        y = np.tanh(x)  # keeps x's memory layout
        if ctx.needs_input_grad[0]:
            ctx.save(y=y)
        return y

    @staticmethod
    def forward_cuda(ctx, x):
        y = _pointwise_cuda("tanh_forward", x)
        if ctx.needs_input_grad[0]:
            ctx.save(y=y)
        return y

    @staticmethod
    def backward_cpu(ctx, g):
        return (g * (1 - ctx.y * ctx.y),)

    @staticmethod
    def backward_cuda(ctx, g):
        return (_pointwise_cuda("tanh_backward", g, ctx.y),)
