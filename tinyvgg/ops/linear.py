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
        y = x2d @ weight.T
        if bias is not None:
            y += bias
        if ctx.needs_input_grad[0]:
            ctx.save(weight=weight)
        if ctx.needs_input_grad[1]:
            ctx.save(x2d=x2d)
        return y.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, g):
        need_x, need_w, need_b = (ctx.needs_input_grad + (False,))[:3]  # bias is optional
        g2d = g.reshape(-1, g.shape[-1])
        dx = dw = db = None
        if need_x:
            dx = (g2d @ ctx.weight).reshape(*g.shape[:-1], -1)
        if need_w:
            dw = g2d.T @ ctx.x2d
        if need_b:
            db = g2d.sum(axis=0)
        return dx, dw, db
