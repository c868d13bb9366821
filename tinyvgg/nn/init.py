"""Weight initialisers. Each fills a tensor in place and returns it.

Why the scale matters: a layer computes sums of ``fan_in`` products, so
with weights of variance ``s^2`` the output variance is about
``fan_in * s^2`` times the input's. Keep it at 1 and activations neither
vanish nor explode through depth:

* Xavier/Glorot (tanh, linear): ``Var(w) = 2 / (fan_in + fan_out)``;
* He/Kaiming (ReLU, which zeroes half its inputs): ``Var(w) = 2 / fan_in``
  (``mode="fan_out"`` uses ``2 / fan_out``, preserving the gradients'
  variance in the backward pass instead; torchvision's VGG uses it);
* the fixed ``N(0, 0.01)`` of early deep-learning code works for shallow
  networks but shrinks activations layer after layer in deep ones.

Random numbers come from the generator set by ``tinyvgg.manual_seed``
unless a ``generator`` (``numpy.random.Generator``) is given.
"""
from __future__ import annotations

import math

import numpy as np

from .. import random


def _fill(tensor, values):
    tensor.data[...] = values
    return tensor


def _rng(generator):
    return random.default_generator() if generator is None else generator


def fans(tensor) -> tuple[int, int]:
    """(fan_in, fan_out): inputs and outputs each weight touches, kernel area included."""
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(f"init: fan_in and fan_out need a weight with at least 2 dimensions, "
                         f"got shape {shape}")
    receptive = int(np.prod(shape[2:], dtype=np.int64))
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}")


def zeros_(tensor):
    return _fill(tensor, 0)


def ones_(tensor):
    return _fill(tensor, 1)


def constant_(tensor, value: float):
    return _fill(tensor, value)


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    return _fill(tensor, _rng(generator).uniform(a, b, size=tensor.shape))


def normal_(tensor, mean: float = 0.0, std: float = 0.01, generator=None):
    """N(mean, std^2); the default N(0, 0.01) is the classic small-random init."""
    return _fill(tensor, _rng(generator).normal(mean, std, size=tensor.shape))


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    fan_in, fan_out = fans(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    fan_in, fan_out = fans(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _kaiming_std(tensor, a, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fans(tensor)[0 if mode == "fan_in" else 1]
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "relu", generator=None):
    """He init: N(0, gain^2 / fan), gain = sqrt(2) for ReLU."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "relu", generator=None):
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def default_(weight, bias=None, generator=None):
    """PyTorch's default for Conv2d and Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for the weight and the bias."""
    bound = 1.0 / math.sqrt(fans(weight)[0])
    uniform_(weight, -bound, bound, generator)
    if bias is not None:
        uniform_(bias, -bound, bound, generator)
    return weight
