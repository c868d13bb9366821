"""dropout: inverted dropout, with ``p`` the probability of DROPPING a unit.

(PyTorch's convention. Many lecture notes, and the original dropout paper,
write ``p`` for the probability of KEEPING a unit instead: their p = 0.5 is
the same as ours, but their p = 0.8 is our p = 0.2.)

In training, each element is kept with probability ``1 - p`` and the kept
ones are scaled by ``1 / (1 - p)``::

    y = x * m / (1 - p),    m[i] in {0, 1},   E[y] = x

so nothing needs rescaling at test time, where dropout is the identity.
Backward is the same masked scaling: ``dL/dx = g * m / (1 - p)``.

The mask is a pure function of ``(seed, i)`` with ``i`` the element's index
in C order: ``m[i] = bits(seed, first + i) >= floor(p * 2**32)``, where ``bits``
is Philox-4x32-10 (``tinyvgg.random.element_bits``). An integer comparison
leaves no room for rounding, so every device draws the identical mask.
``first`` is 0 for a batch run whole; for one part of a batch split over
processes it is the index of the part's first element in the whole batch, so
every element's mask is the one it has in the whole batch, however it is split.

On the GPU (``kernels/dropout.cu``) each thread computes the Philox block
``i // 4`` of its own element ``i`` and keeps word ``i % 4``, exactly the
counter layout of ``element_bits``; the threshold is passed as a 64-bit
integer, so ``p = 1`` (threshold ``2**32``) keeps nothing there too.
"""
from __future__ import annotations

import numpy as np

from .. import cuda, random
from ..tensor import Function
from . import checks


def check_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p is the probability of dropping a unit and must be in "
                         f"[0, 1], got {p!r}")
    return float(p)


def keep_threshold(p: float) -> int:
    """Elements whose 32 random bits are >= this value are kept (p < 1)."""
    return int(p * 2**32)


def dropout_mask_naive(shape, p, seed, first=0):
    """The keep-mask, element by element, from the scalar Philox reference."""
    mask = np.empty(int(np.prod(shape, dtype=np.int64)), dtype=bool)
    for i in range(mask.size):
        mask[i] = p < 1 and random.element_bits_scalar(seed, first + i) >= keep_threshold(p)
    return mask.reshape(shape)


def dropout_mask(shape, p, seed, first=0):
    n = int(np.prod(shape, dtype=np.int64))
    if p >= 1:
        return np.zeros(shape, dtype=bool)
    return (random.element_bits(seed, n, first) >= np.uint32(keep_threshold(p))).reshape(shape)


# --- GPU paths (kernels/dropout.cu) ---------------------------------------------

def element_bits_cuda(seed: int, n: int, first: int = 0):
    """``random.element_bits(seed, first + n)[first:]`` computed on the GPU (uint32 CuPy array)."""
    bits = cuda.empty((n,), np.uint32)
    cuda.launch_elementwise("dropout", "dropout_bits", None, n,
                            np.uint64(seed), np.uint64(first), bits)
    return bits


def dropout_mask_cuda(shape, p, seed, first=0):
    """``dropout_mask(shape, p, seed, first)`` drawn on the GPU: the identical mask, as
    CuPy bools."""
    mask = cuda.empty(tuple(shape), np.bool_)
    cuda.launch_elementwise("dropout", "dropout_mask", None, mask.size,
                            np.uint64(seed), np.uint64(first), np.uint64(keep_threshold(p)),
                            mask)
    return mask


def dropout_cuda(x, p, seed, scale, first=0):
    """(x * m * scale, m) for a CuPy array, with m = ``dropout_mask_cuda(x.shape, p, seed,
    first)``."""
    x = cuda.contiguous(x)
    y = cuda.empty_like(x)
    mask = cuda.empty(x.shape, np.bool_)
    cuda.launch_elementwise("dropout", "dropout_forward", x.dtype, x.size, x, y, mask,
                            np.uint64(seed), np.uint64(first), np.uint64(keep_threshold(p)),
                            scale)
    return y, mask


def dropout_backward_cuda(g, mask, scale):
    """g * mask * scale for CuPy arrays."""
    g = cuda.contiguous(g)
    dx = cuda.empty_like(g)
    cuda.launch_elementwise("dropout", "dropout_backward", g.dtype, g.size, g, mask,
                            g.dtype.type(scale), dx)
    return dx


def _scale(x, p):
    """1 / (1 - p) in x's dtype, the kept values' factor (0 when p = 1 keeps nothing)."""
    return x.dtype.type(0 if p >= 1 else 1 / (1 - p))


class Dropout(Function):
    """y = x * m / (1 - p).  Backward: dL/dx = g * m / (1 - p).  GPU: kernels/dropout.cu."""
    name = "dropout"

    @staticmethod
    def check(x, p, seed, first=0):
        checks.floating("dropout", input=x)
        if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or first < 0:
            raise ValueError(f"dropout: first must be a non-negative integer, got {first!r}")

    @staticmethod
    def forward_cpu(ctx, x, p, seed, first=0):
        scale = _scale(x, p)
        mask = dropout_mask(x.shape, p, seed, first)
        if ctx.needs_input_grad[0]:
            ctx.save(mask=mask, scale=scale)
        return x * mask * scale

    @staticmethod
    def forward_cuda(ctx, x, p, seed, first=0):
        scale = _scale(x, p)
        y, mask = dropout_cuda(x, p, seed, scale, first)
        if ctx.needs_input_grad[0]:
            ctx.save(mask=mask, scale=scale)
        return y

    @staticmethod
    def backward_cpu(ctx, g):
        return (g * ctx.mask * ctx.scale,)

    @staticmethod
    def backward_cuda(ctx, g):
        return (dropout_backward_cuda(g, ctx.mask, ctx.scale),)
