"""reshape (and flatten, a reshape that keeps the batch axis).

Reshaping moves no values, so backward reshapes the gradient back:
``dL/dx = reshape(g, x.shape)``. Values are read in logical C order
(last index fastest), whatever the memory layout, as in PyTorch: flattening
an (N, C, H, W) tensor gives features ordered (c, h, w).
"""
from __future__ import annotations

import numpy as np

from ..tensor import OPERATOR_OPS, Function


def flatten_naive(x):
    """(N, ...) -> (N, prod(...)) by copying values one by one in C order."""
    N = x.shape[0]
    per_sample = int(np.prod(x.shape[1:], dtype=np.int64))
    out = np.empty((N, per_sample), dtype=x.dtype)
    for n in range(N):
        for i, index in enumerate(np.ndindex(*x.shape[1:])):
            out[n, i] = x[(n,) + index]
    return out


class Reshape(Function):
    """y = x with another shape.  Backward: dL/dx = g reshaped back."""
    name = "reshape"

    @staticmethod
    def forward(ctx, x, shape):
        try:
            y = x.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape an input of shape {tuple(x.shape)} "
                             f"({x.size} values) to {tuple(shape)}") from None
        ctx.save(input_shape=x.shape)
        return y

    @staticmethod
    def backward(ctx, g):
        return (g.reshape(ctx.input_shape),)


OPERATOR_OPS.update(reshape=Reshape)  # a tensor's .reshape()
