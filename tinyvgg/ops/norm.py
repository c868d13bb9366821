"""batch_norm2d: per-channel normalisation of (N, C, H, W) input.

Training mode, for each channel c over its m = N*H*W values::

    mu = mean(x),  var = mean((x - mu)^2)         (biased: divide by m)
    x_hat = (x - mu) / sqrt(var + eps)
    y = gamma * x_hat + beta

and the running statistics move towards the batch ones:
``running = (1 - momentum) * running + momentum * batch``, using the
unbiased variance ``var * m / (m - 1)`` (as PyTorch does).
Evaluation mode uses the running mean and variance in place of mu and var.

Backward in training mode (mu and var depend on x, which adds two terms)::

    dL/dbeta  = sum g,            dL/dgamma = sum g * x_hat
    dx_hat    = g * gamma
    dL/dx     = (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)) / sqrt(var + eps)

In evaluation mode mu and var are constants: ``dL/dx = g * gamma / sqrt(var + eps)``.
"""
from __future__ import annotations

import math

import numpy as np

from ..tensor import Function
from . import checks

AXES = (0, 2, 3)


def _per_channel(v):
    return v.reshape(1, -1, 1, 1)


def batch_norm2d_naive(x, gamma, beta, eps):
    """Training-mode forward with loops over each channel's values."""
    N, C, H, W = x.shape
    y = np.empty_like(x)
    for c in range(C):
        values = [float(x[n, c, h, w]) for n in range(N) for h in range(H) for w in range(W)]
        mu = sum(values) / len(values)
        var = sum((v - mu) ** 2 for v in values) / len(values)
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    x_hat = (x[n, c, h, w] - mu) / math.sqrt(var + eps)
                    y[n, c, h, w] = x_hat * (1 if gamma is None else gamma[c]) + \
                        (0 if beta is None else beta[c])
    return y


def _check(x, gamma, beta, running_mean, running_var, training):
    op = "batch_norm2d"
    checks.floating(op, input=x, weight=gamma, bias=beta)
    checks.rank(op, "input", x, 4, "(N, C, H, W)")
    C = x.shape[1]
    for name, v in (("weight", gamma), ("bias", beta),
                    ("running_mean", running_mean), ("running_var", running_var)):
        if v is not None:
            checks.shape(op, name, v, (C,))
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: evaluation mode needs running_mean and running_var")
    if training and x.size // C <= 1:
        raise ValueError(f"{op}: training mode needs more than one value per channel to "
                         f"compute a variance, got input shape {tuple(x.shape)}")


class BatchNorm2d(Function):
    name = "batch_norm2d"

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, training, momentum, eps):
        _check(x, gamma, beta, running_mean, running_var, training)
        if training:
            mu, var = x.mean(axis=AXES), x.var(axis=AXES)
            if running_mean is not None:
                m = x.size // x.shape[1]
                running_mean *= 1 - momentum
                running_mean += momentum * mu
                running_var *= 1 - momentum
                running_var += momentum * var * (m / (m - 1))
        else:
            mu, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        inv_std = (1 / np.sqrt(var + eps)).astype(x.dtype)
        x_hat = (x - _per_channel(mu)) * _per_channel(inv_std)
        y = x_hat if gamma is None else x_hat * _per_channel(gamma)
        if beta is not None:
            y = y + _per_channel(beta)
        if any(ctx.needs_input_grad):
            ctx.save(x_hat=x_hat, inv_std=inv_std, gamma=gamma, training=training)
        return y

    @staticmethod
    def backward(ctx, g):
        need_x, need_gamma, need_beta = ctx.needs_input_grad[:3]
        x_hat, inv_std, gamma = ctx.x_hat, ctx.inv_std, ctx.gamma
        dgamma = (g * x_hat).sum(axis=AXES) if need_gamma else None
        dbeta = g.sum(axis=AXES) if need_beta else None
        dx = None
        if need_x:
            dx_hat = g if gamma is None else g * _per_channel(gamma)
            if ctx.training:
                dx = (dx_hat - dx_hat.mean(axis=AXES, keepdims=True)
                      - x_hat * (dx_hat * x_hat).mean(axis=AXES, keepdims=True))
                dx *= _per_channel(inv_std)
            else:
                dx = dx_hat * _per_channel(inv_std)
        return dx, dgamma, dbeta, None, None
