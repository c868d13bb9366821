"""local_response_norm: each value divided by a power of the energy of its neighbouring channels.

For (N, C, H, W) input and a window of ``n = size`` channels, channel c sees
the channels ``W(c) = c - n//2 .. c + (n-1)//2`` that lie in [0, C) (the rest
count as zeros; for even n the window reaches one channel further back than
forward)::

    d_c = k + (alpha / n) * sum_{c' in W(c)} x_{c'}^2
    y_c = x_c * d_c^(-beta)

at every (n, h, w) separately, as in ``torch.nn.functional.local_response_norm``.
``k > 0`` and ``alpha >= 0`` keep ``d`` positive, so any real beta is allowed.

Backward, with ``g = dL/dy``: ``d_c`` depends on ``x_j`` for every ``j`` in
``W(c)``, with ``dd_c/dx_j = (2 alpha / n) x_j``, so::

    dy_c/dx_j = [c = j] d_c^(-beta) - beta x_c d_c^(-beta-1) (2 alpha / n) x_j [j in W(c)]
    dL/dx_j   = g_j d_j^(-beta) - (2 alpha beta / n) x_j * sum_{c : j in W(c)} g_c x_c d_c^(-beta-1)

``j in W(c)`` means ``j - (n-1)//2 <= c <= j + n//2``: the backward sum runs
over the forward window turned around, which differs from it when n is even.
"""
from __future__ import annotations

import math

import numpy as np

from .. import cuda
from ..tensor import Function
from . import checks


def local_response_norm_naive(x, size, alpha, beta, k):
    """Forward with loops over every output value and its channel window."""
    N, C, H, W = x.shape
    y = np.empty(x.shape, dtype=x.dtype)
    for n, c, h, w in np.ndindex(N, C, H, W):
        first, last = max(c - size // 2, 0), min(c + (size - 1) // 2, C - 1)
        energy = sum(float(x[n, j, h, w]) ** 2 for j in range(first, last + 1))
        d = k + alpha / size * energy
        y[n, c, h, w] = x[n, c, h, w] * d ** -beta
    return y


def local_response_norm_backward_naive(x, grad_out, size, alpha, beta, k):
    """dL/dx by sending each output's gradient back to every input of its window.

    Goes forwards through the windows, so it does not rely on the turned-around
    window the fast backward uses."""
    N, C, H, W = x.shape
    dx = np.zeros(x.shape, dtype=x.dtype)
    for n, c, h, w in np.ndindex(N, C, H, W):
        first, last = max(c - size // 2, 0), min(c + (size - 1) // 2, C - 1)
        energy = sum(float(x[n, j, h, w]) ** 2 for j in range(first, last + 1))
        d = k + alpha / size * energy
        g, x_c = float(grad_out[n, c, h, w]), float(x[n, c, h, w])
        dx[n, c, h, w] += g * d ** -beta
        for j in range(first, last + 1):
            x_j = float(x[n, j, h, w])
            dx[n, j, h, w] -= g * beta * x_c * d ** (-beta - 1) * 2 * alpha / size * x_j
    return dx


def channel_window_sums(a, before, after):
    """s[:, c] = sum of a[:, c'] over c - before <= c' <= c + after, c' in [0, C).

    Adds shifted slices of the channel axis, which works on any memory layout
    and keeps a's. A running (cumulative) sum would take fewer passes for long
    windows, but differences of a growing sum of squares lose the precision of
    small windows far along the axis."""
    C = a.shape[1]
    s = a.copy(order="K")
    for offset in range(1, min(before, C - 1) + 1):
        s[:, offset:] += a[:, :C - offset]
    for offset in range(1, min(after, C - 1) + 1):
        s[:, :C - offset] += a[:, offset:]
    return s


def _real(op, name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"{op}: {name} must be a finite real number, got {value!r}")
    return float(value)


def check_params(op: str, size, alpha, beta, k) -> tuple[int, float, float, float]:
    """(size, alpha, beta, k) as (int, float, float, float); a ValueError naming ``op`` if bad."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"{op}: size (the number of channels in a window) must be a "
                         f"positive integer, got {size!r}")
    alpha, beta, k = _real(op, "alpha", alpha), _real(op, "beta", beta), _real(op, "k", k)
    if alpha < 0:
        raise ValueError(f"{op}: alpha must be >= 0, got {alpha!r}")
    if k <= 0:
        raise ValueError(f"{op}: k must be positive so that the divisor "
                         f"k + alpha/size * sum(x^2) stays positive, got {k!r}")
    return int(size), alpha, beta, k


class LocalResponseNorm(Function):
    """y_c = x_c * d_c^(-beta),  d_c = k + alpha/size * (sum of x^2 over the window of c).
    GPU: kernels/lrn.cu.

    Backward: dL/dx_j = g_j d_j^(-beta) - (2 alpha beta / size) x_j * (sum of
    g_c x_c d_c^(-beta-1) over the channels c whose window holds j)."""
    name = "local_response_norm"

    @staticmethod
    def check(x, size, alpha, beta, k):
        op = "local_response_norm"
        checks.floating(op, input=x)
        checks.rank(op, "input", x, 4, "(N, C, H, W)")

    @staticmethod
    def forward_cpu(ctx, x, size, alpha, beta, k):
        size, alpha, beta, k = check_params(LocalResponseNorm.name, size, alpha, beta, k)
        d = channel_window_sums(np.square(x), size // 2, (size - 1) // 2)
        d *= alpha / size
        d += k
        scale = np.power(d, -beta)
        y = np.multiply(x, scale, out=scale)
        if ctx.needs_input_grad[0]:
            ctx.save(x=x, d=d, size=size, alpha=alpha, beta=beta)
        return y

    @staticmethod
    def forward_cuda(ctx, x, size, alpha, beta, k):
        size, alpha, beta, k = check_params(LocalResponseNorm.name, size, alpha, beta, k)
        _, C, H, W = x.shape
        x = cuda.contiguous(x)
        y = cuda.empty_like(x)
        d = cuda.empty_like(x) if ctx.needs_input_grad[0] else None
        cuda.launch_elementwise("lrn", "lrn_forward", x.dtype, x.size, x, y, d, size,
                                alpha / size, beta, k, C, H * W)
        if d is not None:
            ctx.save(x=x, d=d, size=size, alpha=alpha, beta=beta)
        return y

    @staticmethod
    def backward_cpu(ctx, g):
        x, d, size, alpha, beta = ctx.x, ctx.d, ctx.size, ctx.alpha, ctx.beta
        dx = np.power(d, -beta)
        dx *= g
        through_d = dx * x
        through_d /= d
        cross = channel_window_sums(through_d, (size - 1) // 2, size // 2)
        cross *= x
        cross *= 2 * alpha * beta / size
        dx -= cross
        return (dx,)

    @staticmethod
    def backward_cuda(ctx, g):
        x, d, size, alpha, beta = ctx.x, ctx.d, ctx.size, ctx.alpha, ctx.beta
        _, C, H, W = x.shape
        g = cuda.contiguous(g)
        dx = cuda.empty_like(g)
        cuda.launch_elementwise("lrn", "lrn_backward", g.dtype, g.size, g, x, d, dx, size,
                                beta, 2 * alpha * beta / size, C, H * W)
        return (dx,)
