"""maxpool2x2 and adaptive_avg_pool2d.

**maxpool2x2** (kernel 2, stride 2; an odd last row or column is dropped, as
with PyTorch's floor mode)::

    y[n, c, i, j] = max_{u, v in {0, 1}} x[n, c, 2i + u, 2j + v]

Backward: the max is locally the identity on its winning input and constant
in the others, so ``dL/dx`` is ``g[n, c, i, j]`` at the argmax of each window
and 0 everywhere else (including a dropped odd row or column).

Tie rule: when several values of a window are equal to its max, the first one
in row-major window order ``(0,0), (0,1), (1,0), (1,1)`` wins and alone
receives the gradient (PyTorch's rule). A NaN in a window makes the output
NaN and the first NaN takes the gradient.

**adaptive_avg_pool2d** to ``(Ho, Wo)``: output cell ``(i, j)`` averages the
rows ``floor(i*H/Ho) <= h < ceil((i+1)*H/Ho)`` and the matching columns
(PyTorch's bins, which may overlap when H is not a multiple of Ho). Each bin
is a rectangle, so the average separates into a row and a column average::

    y = P_h @ x @ P_w.T      with P_h[i, h] = 1 / len(bin_i) if h in bin_i else 0

and the backward is the transposed map, ``dL/dx = P_h.T @ g @ P_w``.

On the GPU (``kernels/pool.cu``) every thread computes one element of the
result directly: an output's max or bin average in forward, and in backward
an input's share of the gradient, read from the outputs it fed (no atomics).
"""
from __future__ import annotations

import numpy as np

from .. import cuda, workers
from ..tensor import Function
from . import checks

# The four window positions (u, v) in the order ties are broken.
WINDOW = ((0, 0), (0, 1), (1, 0), (1, 1))


# --- naive references -----------------------------------------------------------

def maxpool2x2_naive(x):
    """Returns (y, argmax) with argmax[n, c, i, j] = 2u + v of the winner."""
    N, C, H, W = x.shape
    Ho, Wo = H // 2, W // 2
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    argmax = np.empty((N, C, Ho, Wo), dtype=np.uint8)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    best, best_k = None, 0
                    for k, (u, v) in enumerate(WINDOW):
                        value = x[n, c, 2 * i + u, 2 * j + v]
                        if best is None or value > best or (np.isnan(value) and not np.isnan(best)):
                            best, best_k = value, k
                    y[n, c, i, j], argmax[n, c, i, j] = best, best_k
    return y, argmax


def maxpool2x2_backward_naive(x, grad_out):
    _, argmax = maxpool2x2_naive(x)
    dx = np.zeros_like(x)
    N, C, Ho, Wo = grad_out.shape
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    u, v = WINDOW[argmax[n, c, i, j]]
                    dx[n, c, 2 * i + u, 2 * j + v] += grad_out[n, c, i, j]
    return dx


def adaptive_avg_pool2d_naive(x, output_size):
    N, C, H, W = x.shape
    Ho, Wo = output_size
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                h0, h1 = (i * H) // Ho, -((-(i + 1) * H) // Ho)
                for j in range(Wo):
                    w0, w1 = (j * W) // Wo, -((-(j + 1) * W) // Wo)
                    total = 0.0
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            total += x[n, c, h, w]
                    y[n, c, i, j] = total / ((h1 - h0) * (w1 - w0))
    return y


# --- fast paths -------------------------------------------------------------------

def _window_views(x):
    """The four strided views x[:, :, u::2, v::2], cropped to the pooled size."""
    _, _, H, W = x.shape
    Ho, Wo = H // 2, W // 2
    return [x[:, :, u:2 * Ho:2, v:2 * Wo:2] for u, v in WINDOW]


def channels_last(x) -> bool:
    """True when x (N, C, H, W) is laid out channels-last in memory, as conv outputs are."""
    return x.ndim == 4 and x.shape[1] > 1 and x.strides[1] < x.strides[3]


def zeros_in_layout(shape, dtype, as_channels_last: bool, make=np.zeros):
    """Zeros of NCHW ``shape``, laid out channels-last in memory if asked."""
    if not as_channels_last:
        return make(shape, dtype=dtype)
    N, C, H, W = shape
    return make((N, H, W, C), dtype=dtype).transpose(0, 3, 1, 2)


def empty_in_layout(shape, dtype, as_channels_last: bool):
    """Like :func:`zeros_in_layout`, uninitialised: for arrays written in full."""
    return zeros_in_layout(shape, dtype, as_channels_last, make=np.empty)


def maxpool2x2_fast(x):
    """Returns (y, argmax) like the naive version, with whole-array operations on each
    part of the images (``tinyvgg.workers``); y is laid out like x."""
    N, C, H, W = x.shape
    layout = channels_last(x)
    y = empty_in_layout((N, C, H // 2, W // 2), x.dtype, layout)
    argmax = empty_in_layout(y.shape, np.uint8, layout)

    def pool(images):
        a, b, c, d = _window_views(x[images])
        out = np.maximum(np.maximum(a, b), np.maximum(c, d), out=y[images])
        # loses[k] is 1 where position k does not hold the max (a NaN max is held by the NaNs)
        if np.isnan(out).any():
            loses_a, loses_b, loses_c = ((v != out) & (v == v) for v in (a, b, c))
        else:
            loses_a, loses_b, loses_c = (v != out for v in (a, b, c))
        loses_a, loses_b, loses_c = (m.view(np.uint8) for m in (loses_a, loses_b, loses_c))
        # The first winner: 0 if a wins, else 1 if b wins, else 2 if c wins, else 3.
        np.multiply(loses_a, 1 + loses_b * (1 + loses_c), out=argmax[images])

    workers.run_over_first_axis(pool, x)
    return y, argmax


# --- GPU paths (kernels/pool.cu) ------------------------------------------------

def maxpool2x2_cuda(x):
    """(y, argmax) of a CuPy array, with the CPU path's tie and NaN rules; argmax is uint8."""
    x = cuda.contiguous(x)
    N, C, H, W = x.shape
    y = cuda.empty((N, C, H // 2, W // 2), x.dtype)
    argmax = cuda.empty(y.shape, np.uint8)
    cuda.launch_elementwise("pool", "maxpool2x2_forward", x.dtype, y.size, x, y, argmax, H, W)
    return y, argmax


def maxpool2x2_backward_cuda(g, argmax, input_shape):
    """dL/dx of shape ``input_shape``: g at each window's argmax, 0 elsewhere."""
    g = cuda.contiguous(g)
    N, C, H, W = input_shape
    dx = cuda.empty((N, C, H, W), g.dtype)
    cuda.launch_elementwise("pool", "maxpool2x2_backward", g.dtype, dx.size, g, argmax, dx, H, W)
    return dx


def adaptive_avg_pool2d_cuda(x, output_size):
    """Average of each of PyTorch's adaptive bins, for a CuPy array."""
    x = cuda.contiguous(x)
    N, C, H, W = x.shape
    Ho, Wo = output_size
    y = cuda.empty((N, C, Ho, Wo), x.dtype)
    cuda.launch_elementwise("pool", "adaptive_avg_pool2d_forward", x.dtype, y.size,
                            x, y, H, W, Ho, Wo)
    return y


def adaptive_avg_pool2d_backward_cuda(g, input_shape):
    """dL/dx of shape ``input_shape``: each input sums g / bin area over the bins holding it."""
    g = cuda.contiguous(g)
    Ho, Wo = g.shape[2:]
    N, C, H, W = input_shape
    dx = cuda.empty((N, C, H, W), g.dtype)
    cuda.launch_elementwise("pool", "adaptive_avg_pool2d_backward", g.dtype, dx.size,
                            g, dx, H, W, Ho, Wo)
    return dx


def _check_pool_input(op, x):
    checks.floating(op, input=x)
    checks.rank(op, "input", x, 4, "(N, C, H, W)")


class MaxPool2x2(Function):
    """2x2 max pooling, stride 2 (ties: first max in row-major window order).

    Backward: g goes to the argmax of each window, 0 elsewhere.  GPU: kernels/pool.cu."""
    name = "maxpool2x2"

    @staticmethod
    def check(x):
        _check_pool_input("maxpool2x2", x)
        checks.image_size("maxpool2x2", x, 2)

    @staticmethod
    def forward_cpu(ctx, x):
        y, argmax = maxpool2x2_fast(x)
        if ctx.needs_input_grad[0]:
            ctx.save(argmax=argmax, input_shape=x.shape, input_channels_last=channels_last(x))
        return y

    @staticmethod
    def forward_cuda(ctx, x):
        y, argmax = maxpool2x2_cuda(x)
        if ctx.needs_input_grad[0]:
            ctx.save(argmax=argmax, input_shape=tuple(x.shape))
        return y

    @staticmethod
    def backward_cpu(ctx, g):
        N, C, H, W = ctx.input_shape
        # the four window views cover every input when H and W are even: no zeroing
        dx = (zeros_in_layout if H % 2 or W % 2 else empty_in_layout)(
            ctx.input_shape, g.dtype, ctx.input_channels_last)
        argmax = ctx.argmax

        def route(images):
            for k, dx_view in enumerate(_window_views(dx[images])):
                np.multiply(g[images], argmax[images] == k, out=dx_view)

        workers.run_over_first_axis(route, dx)
        return (dx,)

    @staticmethod
    def backward_cuda(ctx, g):
        return (maxpool2x2_backward_cuda(g, ctx.argmax, ctx.input_shape),)


def normalize_output_size(op, output_size):
    if isinstance(output_size, (int, np.integer)):
        output_size = (output_size, output_size)
    try:
        Ho, Wo = (int(s) for s in output_size)
    except (TypeError, ValueError):
        raise ValueError(f"{op}: output_size must be an int or a pair of ints, "
                         f"got {output_size!r}") from None
    if Ho < 1 or Wo < 1:
        raise ValueError(f"{op}: output_size must be positive, got {(Ho, Wo)}")
    return Ho, Wo


def bin_matrix(in_size, out_size, dtype):
    """P[i, h] = 1/len(bin_i) for h in bin_i: averaging over PyTorch's adaptive bins."""
    i = np.arange(out_size)
    start = (i * in_size) // out_size
    end = -((-(i + 1) * in_size) // out_size)
    h = np.arange(in_size)
    inside = (h >= start[:, None]) & (h < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def _pooled_size(ctx, x, output_size):
    """(Ho, Wo), or None when it is the input's size: then every bin is one pixel (VGG's
    7x7 pool at 224x224), the input passes through as it is and nothing is stored."""
    Ho, Wo = normalize_output_size("adaptive_avg_pool2d", output_size)
    if (Ho, Wo) == x.shape[2:]:
        ctx.save(identity=True)
        return None
    return Ho, Wo


class AdaptiveAvgPool2d(Function):
    """y = P_h @ x @ P_w^T with PyTorch's adaptive bins.

    Backward: dL/dx = P_h^T @ g @ P_w.  When the output size is the input's,
    P_h and P_w are identities and the input is passed through as it is.
    GPU: kernels/pool.cu."""
    name = "adaptive_avg_pool2d"

    @staticmethod
    def check(x, output_size):
        _check_pool_input("adaptive_avg_pool2d", x)
        checks.image_size("adaptive_avg_pool2d", x, 1)  # a bin of no pixels has no mean
        normalize_output_size("adaptive_avg_pool2d", output_size)

    @staticmethod
    def forward_cpu(ctx, x, output_size):
        size = _pooled_size(ctx, x, output_size)
        if size is None:
            return x
        Ho, Wo = size
        P_h = bin_matrix(x.shape[2], Ho, x.dtype)
        P_w = bin_matrix(x.shape[3], Wo, x.dtype)
        if ctx.needs_input_grad[0]:
            ctx.save(P_h=P_h, P_w=P_w)
        return P_h @ x @ P_w.T

    @staticmethod
    def forward_cuda(ctx, x, output_size):
        size = _pooled_size(ctx, x, output_size)
        if size is None:
            return x
        if ctx.needs_input_grad[0]:
            ctx.save(input_shape=tuple(x.shape))
        return adaptive_avg_pool2d_cuda(x, size)

    @staticmethod
    def backward_cpu(ctx, g):
        if getattr(ctx, "identity", False):
            return (g,)
        return (ctx.P_h.T @ g @ ctx.P_w,)

    @staticmethod
    def backward_cuda(ctx, g):
        if getattr(ctx, "identity", False):
            return (g,)
        return (adaptive_avg_pool2d_backward_cuda(g, ctx.input_shape),)
