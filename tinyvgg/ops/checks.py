"""Input validation shared by the ops.

Each check raises ``ValueError`` (wrong shape or value) or ``TypeError``
(wrong dtype) with a message that names the op, what it expected and what it
got: a bad input must never turn into a wrong answer further down.
"""
from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def floating(op: str, **arrays) -> np.dtype:
    """All given arrays (None allowed) are float32 or all float64; returns that dtype."""
    present = {name: a for name, a in arrays.items() if a is not None}
    for name, a in present.items():
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{op}: {name} must be float32 or float64, got {a.dtype}")
    dtypes = {name: a.dtype for name, a in present.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n} {d}" for n, d in dtypes.items())
        raise TypeError(f"{op}: inputs must share one dtype, got {listed}; "
                        "convert them with .to(np.float32) or .to(np.float64)")
    return next(iter(dtypes.values()))


def rank(op: str, name: str, array, ndim: int, layout: str) -> None:
    if array.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {layout}, "
                         f"got {array.ndim}-D shape {tuple(array.shape)}")


def image_size(op: str, x, minimum: int) -> None:
    """H and W of an (N, C, H, W) input are at least ``minimum``; N may be 0 (an empty
    batch gives an empty result)."""
    if x.shape[2] < minimum or x.shape[3] < minimum:
        raise ValueError(f"{op}: input must be at least {minimum}x{minimum} in H and W "
                         f"(expected H, W >= {minimum}), got shape {tuple(x.shape)}")


def shape(op: str, name: str, array, expected: tuple) -> None:
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{op}: {name} must have shape {tuple(expected)}, "
                         f"got {tuple(array.shape)}")


def bias(op: str, b, out_features: int) -> None:
    if b is not None:
        shape(op, "bias", b, (out_features,))


def conv_inputs(op: str, x, weight, b, k: int) -> None:
    """The inputs of a k x k same-size convolution: x (N, C, H, W), weight (C_out, C, k, k),
    bias (C_out,) or None, all of one float dtype, with at least one pixel and channel."""
    floating(op, input=x, weight=weight, bias=b)
    rank(op, "input", x, 4, "(N, C, H, W)")
    rank(op, "weight", weight, 4, f"(C_out, C_in, {k}, {k})")
    if weight.shape[2:] != (k, k):
        raise ValueError(f"{op}: weight must have shape (C_out, C_in, {k}, {k}), "
                         f"got {tuple(weight.shape)}")
    if 0 in weight.shape[:2]:
        raise ValueError(f"{op}: weight must have at least one output and one input channel, "
                         f"got shape {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"{op}: input has {x.shape[1]} channels but the weight expects "
                         f"{weight.shape[1]} (weight shape {tuple(weight.shape)}, "
                         f"input shape {tuple(x.shape)})")
    image_size(op, x, 1)
    bias(op, b, weight.shape[0])
