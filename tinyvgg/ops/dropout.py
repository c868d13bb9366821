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
in C order: ``m[i] = bits(seed, i) >= floor(p * 2**32)``, where ``bits`` is
Philox-4x32-10 (``tinyvgg.random.element_bits``). An integer comparison
leaves no room for rounding, so every device draws the identical mask.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Function
from .. import random
from . import checks


def check_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p is the probability of dropping a unit and must be in "
                         f"[0, 1], got {p!r}")
    return float(p)


def keep_threshold(p: float) -> int:
    """Elements whose 32 random bits are >= this value are kept (p < 1)."""
    return int(p * 2**32)


def dropout_mask_naive(shape, p, seed):
    """The keep-mask, element by element, from the scalar Philox reference."""
    mask = np.empty(int(np.prod(shape, dtype=np.int64)), dtype=bool)
    for i in range(mask.size):
        mask[i] = p < 1 and random.element_bits_scalar(seed, i) >= keep_threshold(p)
    return mask.reshape(shape)


def dropout_mask(shape, p, seed):
    n = int(np.prod(shape, dtype=np.int64))
    if p >= 1:
        return np.zeros(shape, dtype=bool)
    return (random.element_bits(seed, n) >= np.uint32(keep_threshold(p))).reshape(shape)


class Dropout(Function):
    """y = x * m / (1 - p).  Backward: dL/dx = g * m / (1 - p)."""
    name = "dropout"

    @staticmethod
    def forward(ctx, x, p, seed):
        checks.floating("dropout", input=x)
        scale = x.dtype.type(0 if p >= 1 else 1 / (1 - p))
        mask = dropout_mask(x.shape, p, seed)
        if ctx.needs_input_grad[0]:
            ctx.save(mask=mask, scale=scale)
        return x * mask * scale

    @staticmethod
    def backward(ctx, g):
        return (g * ctx.mask * ctx.scale,)
