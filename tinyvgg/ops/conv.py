"""conv3x3 and conv1x1: VGG's only convolutions (stride 1, output size = input size).

Forward, for a k x k kernel (k = 3 with zero padding 1, or k = 1 without)::

    y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * xp[n, c, i + u, j + v]

where ``xp`` is ``x`` zero-padded by ``k // 2`` on each side. (Like every
framework, "convolution" here is cross-correlation: the kernel is not flipped.)

Backward, with ``g = dL/dy``::

    dL/db[o]          = sum_{n, i, j} g[n, o, i, j]
    dL/dw[o, c, u, v] = sum_{n, i, j} g[n, o, i, j] * xp[n, c, i + u, j + v]
    dL/dx[n, c, p, q] = sum_{o, u, v} g[n, o, p - u + k//2, q - v + k//2] * w[o, c, u, v]

The last line is itself a same-size convolution: of ``g`` with the kernel
turned by 180 degrees and its in/out channels swapped,
``w'[c, o, u, v] = w[o, c, k-1-u, k-1-v]``. So the input gradient is computed
the way the forward pass is: im2col of ``g`` times the turned kernel's matrix.

The fast path turns the convolution into one matrix product. Each output
pixel ``(n, i, j)`` becomes a row holding the ``k*k*C`` input values it
sees ("im2col"), ordered (u, v, c), and the kernel becomes a matrix of the
same column order::

    rows  (N*H*W, k*k*C)  @  w_matrix.T  (k*k*C, Cout)  ->  (N*H*W, Cout)

The result is channels-last (NHWC) in memory; it is returned as an NCHW
view of that memory, so the next layer reads it without a transpose copy.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..tensor import Function
from . import checks
from .linear import affine_rows, affine_rows_backward


# --- naive reference: the loops a student writes first ----------------------

def conv_naive(x, weight, bias=None):
    """Same-size convolution with plain loops over every output value."""
    N, C, H, W = x.shape
    C_out, _, k, _ = weight.shape
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    y = np.zeros((N, C_out, H, W), dtype=x.dtype)
    for n in range(N):
        for o in range(C_out):
            for i in range(H):
                for j in range(W):
                    window = xp[n, :, i:i + k, j:j + k]
                    y[n, o, i, j] = np.sum(window * weight[o])
                    if bias is not None:
                        y[n, o, i, j] += bias[o]
    return y


def conv_backward_naive(x, weight, grad_out):
    """(dx, dw, db) by sending each output's gradient back through its window."""
    N, C, H, W = x.shape
    C_out, _, k, _ = weight.shape
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(weight)
    db = np.zeros(C_out, dtype=x.dtype)
    for n in range(N):
        for o in range(C_out):
            for i in range(H):
                for j in range(W):
                    g = grad_out[n, o, i, j]
                    dw[o] += g * xp[n, :, i:i + k, j:j + k]
                    dxp[n, :, i:i + k, j:j + k] += g * weight[o]
                    db[o] += g
    return dxp[:, :, pad:pad + H, pad:pad + W], dw, db


# --- fast path: im2col + one matrix product -----------------------------------

def pixel_rows(x):
    """(N, C, H, W) -> (N*H*W, C): one row per pixel (a view when x is channels-last)."""
    N, C, H, W = x.shape
    return x.transpose(0, 2, 3, 1).reshape(N * H * W, C)


def from_pixel_rows(rows, N, H, W):
    """(N*H*W, C) -> an (N, C, H, W) view of the same channels-last memory."""
    return rows.reshape(N, H, W, -1).transpose(0, 3, 1, 2)


def im2col3x3(x):
    """(N, C, H, W) -> (N*H*W, 9*C): row (n, i, j) holds the 3x3 window at (i, j),
    zero-padded at the borders, in (u, v, c) order."""
    N, C, H, W = x.shape
    padded = np.empty((N, H + 2, W + 2, C), dtype=x.dtype)
    padded[:, 0], padded[:, -1], padded[:, :, 0], padded[:, :, -1] = 0, 0, 0, 0
    padded[:, 1:-1, 1:-1, :] = x.transpose(0, 2, 3, 1)
    windows = sliding_window_view(padded, (3, 3), axis=(1, 2))  # (N, H, W, C, 3, 3)
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(N * H * W, 9 * C)


def kernel_matrix(weight):
    """(Cout, C, k, k) -> (Cout, k*k*C), columns in the (u, v, c) order of im2col.

    A view, without copying, when the weight is stored (Cout, k, k, C) in
    memory, as ``tinyvgg.nn``'s conv layers store it."""
    C_out = weight.shape[0]
    return weight.transpose(0, 2, 3, 1).reshape(C_out, -1)


def turned_kernel_rows(w_matrix):
    """The (9*Cout, C) matrix M with im2col(g) @ M = dL/dx, built from kernel_matrix(w).

    Row (u, v, o), column c holds w'[c, o, u, v] = w[o, c, 2-u, 2-v]: the
    kernel turned by 180 degrees with in and out channels swapped.
    """
    C_out = w_matrix.shape[0]
    turned = w_matrix.reshape(C_out, 3, 3, -1)[:, ::-1, ::-1, :]
    return turned.transpose(1, 2, 0, 3).reshape(9 * C_out, -1)


def _check_conv(op, x, weight, bias, k):
    checks.floating(op, input=x, weight=weight, bias=bias)
    checks.rank(op, "input", x, 4, "(N, C, H, W)")
    checks.rank(op, "weight", weight, 4, f"(C_out, C_in, {k}, {k})")
    if weight.shape[2:] != (k, k):
        raise ValueError(f"{op}: weight must have shape (C_out, C_in, {k}, {k}), "
                         f"got {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"{op}: input has {x.shape[1]} channels but the weight expects "
                         f"{weight.shape[1]} (weight shape {tuple(weight.shape)}, "
                         f"input shape {tuple(x.shape)})")
    checks.bias(op, bias, weight.shape[0])


class Conv3x3(Function):
    """3x3 convolution, stride 1, zero padding 1.

    Backward: dL/db = sum of g over (n, i, j); dL/dw = g^T @ im2col(x);
    dL/dx = conv3x3(g) with the kernel turned 180 degrees, in/out swapped."""
    name = "conv3x3"

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        _check_conv("conv3x3", x, weight, bias, 3)
        N, _, H, W = x.shape
        w_matrix, rows = kernel_matrix(weight), im2col3x3(x)
        if ctx.needs_input_grad[0]:
            ctx.save(w_matrix=w_matrix)
        if ctx.needs_input_grad[1]:
            ctx.save(rows=rows)
        return from_pixel_rows(affine_rows(rows, w_matrix, bias), N, H, W)

    @staticmethod
    def backward(ctx, g):
        need_x, need_w, need_b = ctx.needs(3)
        N, C_out, H, W = g.shape
        g_rows = pixel_rows(g)
        dx = dw = db = None
        if need_x:  # a 3x3 convolution of g with the turned kernel
            dx = from_pixel_rows(im2col3x3(g) @ turned_kernel_rows(ctx.w_matrix), N, H, W)
        if need_w:  # columns (u, v, c) back to (Cout, C, 3, 3)
            dw = (g_rows.T @ ctx.rows).reshape(C_out, 3, 3, -1).transpose(0, 3, 1, 2)
        if need_b:
            db = g_rows.sum(axis=0)
        return dx, dw, db


class Conv1x1(Function):
    """1x1 convolution: a linear map of the channels applied at every pixel.

    Backward, on pixel rows: dL/dx = g @ W, dL/dw = g^T @ x, dL/db = sum of g."""
    name = "conv1x1"

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        _check_conv("conv1x1", x, weight, bias, 1)
        N, _, H, W = x.shape
        w_matrix, rows = kernel_matrix(weight), pixel_rows(x)
        ctx.save(w_matrix=w_matrix, rows=rows)
        return from_pixel_rows(affine_rows(rows, w_matrix, bias), N, H, W)

    @staticmethod
    def backward(ctx, g):
        need_x, need_w, need_b = ctx.needs(3)
        N, C_out, H, W = g.shape
        dx_rows, dw, db = affine_rows_backward(pixel_rows(g), ctx.rows, ctx.w_matrix,
                                               need_x, need_w, need_b)
        dx = None if dx_rows is None else from_pixel_rows(dx_rows, N, H, W)
        dw = None if dw is None else dw.reshape(C_out, -1, 1, 1)
        return dx, dw, db
