"""linear: y = x W^T + b, with W of shape (out_features, in_features) as in PyTorch.

For x of shape (N, in) (more leading dimensions are flattened into N)::

    y[n, o] = b[o] + sum_k x[n, k] W[o, k]

Backward, with g = dL/dy of shape (N, out)::

    dL/dx = g W              (N, out) @ (out, in)
    dL/dW = g^T x            (out, N) @ (N, in)
    dL/db = sum_n g[n, :]
"""
from __future__ import annotations

import numpy as np

from ..tensor import Function
from . import checks


def linear_naive(x, weight, bias=None):
    N, K = x.shape
    out = np.zeros((N, weight.shape[0]), dtype=x.dtype)
    for n in range(N):
        for o in range(weight.shape[0]):
            for k in range(K):
                out[n, o] += x[n, k] * weight[o, k]
            if bias is not None:
                out[n, o] += bias[o]
    return out


def affine_rows(rows, weight, bias=None):
    """rows @ weight.T + bias for rows (M, in) and weight (out, in): the product every
    linear and convolution layer comes down to."""
    y = rows @ weight.T
    if bias is not None:
        y += bias
    return y


def affine_rows_backward(g_rows, rows, weight, need_rows, need_weight, need_bias):
    """(dL/drows, dL/dweight, dL/dbias) of ``affine_rows``, each None unless asked for."""
    d_rows = g_rows @ weight if need_rows else None
    d_weight = g_rows.T @ rows if need_weight else None
    d_bias = g_rows.sum(axis=0) if need_bias else None
    return d_rows, d_weight, d_bias


class Linear(Function):
    """y = x W^T + b.  Backward: dL/dx = g W, dL/dW = g^T x, dL/db = sum_n g."""
    name = "linear"

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        checks.floating("linear", input=x, weight=weight, bias=bias)
        checks.rank("linear", "weight", weight, 2, "(out_features, in_features)")
        if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
            raise ValueError(f"linear: input must end in in_features = {weight.shape[1]} "
                             f"(weight shape {tuple(weight.shape)}), got input shape "
                             f"{tuple(x.shape)}")
        checks.bias("linear", bias, weight.shape[0])
        x2d = x.reshape(-1, weight.shape[1])
        ctx.save(weight=weight, x2d=x2d)
        return affine_rows(x2d, weight, bias).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, g):
        need_x, need_w, need_b = ctx.needs(3)
        dx, dw, db = affine_rows_backward(g.reshape(-1, g.shape[-1]), ctx.x2d, ctx.weight,
                                          need_x, need_w, need_b)
        return (None if dx is None else dx.reshape(*g.shape[:-1], -1)), dw, db
