"""Elementwise add and multiply (with NumPy broadcasting) and sum.

For z = a + b: dL/da = g and dL/db = g. For z = a * b: dL/da = g * b and
dL/db = g * a. Where an input was broadcast (a size-1 or missing axis
stretched to match), its gradient is summed over the stretched axes, since
each of its values was used once per copy.

For s = sum(x): dL/dx = g broadcast to x's shape.

For a dtype cast y = x.astype(d): dL/dx = g cast back to x's dtype.

These serve losses and penalties built from tensors; on the GPU they are
CuPy's elementwise arithmetic, as the ops' kernels are not needed for them.
"""
from __future__ import annotations

from .. import backend
from ..tensor import OPERATOR_OPS, Function
from . import checks


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes along which an input of ``shape`` was broadcast."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


class Add(Function):
    """z = a + b.  Backward: dL/da = g, dL/db = g (summed over broadcast axes)."""
    name = "add"

    @staticmethod
    def forward(ctx, a, b):
        checks.floating("add", a=a, b=b)
        ctx.save(a_shape=a.shape, b_shape=b.shape)
        return a + b

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.a_shape), unbroadcast(g, ctx.b_shape)


class Mul(Function):
    """z = a * b.  Backward: dL/da = g * b, dL/db = g * a (summed over broadcast axes)."""
    name = "mul"

    @staticmethod
    def forward(ctx, a, b):
        checks.floating("mul", a=a, b=b)
        if ctx.needs_input_grad[0]:
            ctx.save(b=b)
        if ctx.needs_input_grad[1]:
            ctx.save(a=a)
        ctx.save(a_shape=a.shape, b_shape=b.shape)
        return a * b

    @staticmethod
    def backward(ctx, g):
        need_a, need_b = ctx.needs_input_grad
        da = unbroadcast(g * ctx.b, ctx.a_shape) if need_a else None
        db = unbroadcast(g * ctx.a, ctx.b_shape) if need_b else None
        return da, db


class Sum(Function):
    """s = sum(x).  Backward: dL/dx = g everywhere."""
    name = "sum"

    @staticmethod
    def forward(ctx, x):
        ctx.save(input_shape=x.shape)
        return backend.array_module(x).asarray(x.sum(), dtype=x.dtype)

    @staticmethod
    def backward(ctx, g):
        return (backend.array_module(g).broadcast_to(g, ctx.input_shape),)


class Cast(Function):
    """y = x in another dtype.  Backward: dL/dx = g cast back to x's dtype."""
    name = "cast"

    @staticmethod
    def forward(ctx, x, dtype):
        ctx.save(input_dtype=x.dtype)
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return (g.astype(ctx.input_dtype),)


OPERATOR_OPS.update(add=Add, mul=Mul, sum=Sum, cast=Cast)  # a tensor's +, *, .sum(), .to(dtype)
