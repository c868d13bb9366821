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

Synchronised batch norm: when the batch is split over several processes, each
holding some of its images, ``reduce`` (a function that sums an array over the
processes and returns the sum) makes the statistics those of the whole batch.
Forward sums each channel's values and count, then its squared deviations from
the whole batch's mean (two passes, as above); backward sums ``dbeta`` and
``dgamma``, which ``dL/dx`` needs for the whole batch, and returns each process's
own part of them as the parameters' gradients (the gradients of the parts are
summed afterwards like every other parameter's). The sums travel in float64.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend, cuda, workers
from ..tensor import Function
from . import checks
from .rows import column_sums, from_pixel_rows, pixel_rows


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


#: the block size kernels/norm.cu's per-channel reductions are written for
BATCH_NORM_REDUCE_THREADS = 256


def _update_running_statistics(running_mean, running_var, mu, var, m, momentum):
    """Move the running statistics towards the batch's, in place, on the running
    statistics' own device (the batch's C values are copied there when it differs)."""
    mu = backend.move(mu, backend.device_of(running_mean))
    var = backend.move(var, backend.device_of(running_var))
    running_mean *= 1 - momentum
    running_mean += momentum * mu
    running_var *= 1 - momentum
    running_var += momentum * var * (m / (m - 1))


def per_channel(fn, out, *operands):
    """``fn(*operands, out=out)`` for operands that are pixel rows (M, C) or per-channel
    vectors (C,), on blocks of rows split over the cores (``tinyvgg.workers``); returns
    ``out``, (M, C). ``fn`` works value by value, like a ufunc.

    NumPy's inner loop runs along the last axis, only C values long, and with VGG-11's
    16 channels (the MNIST model) its per-loop cost is most of a pass. So C-contiguous
    rows are seen as (M/k, k*C), k a divisor of M, with every vector tiled k times: inner
    loops of up to 1024 values, over which the fixed cost of starting one is spread
    instead of over C."""
    M, C = out.shape
    rows = [out] + [a for a in operands if a.ndim == 2]
    k = math.gcd(M, max(1, 1024 // max(1, C))) \
        if all(a.flags.c_contiguous for a in rows) else 1

    def wide(a):
        return a.reshape(M // k, k * C) if a.ndim == 2 else np.tile(a, k)

    out_wide, operands_wide = wide(out), [wide(a) for a in operands]

    def block(s):
        fn(*[a[s] if a.ndim == 2 else a for a in operands_wide], out=out_wide[s])

    workers.run(block, M // k, workers.min_items(values_per_item=k * C))
    return out


def _scale_shift(x_hat, gamma, beta, out):
    np.multiply(x_hat, gamma, out=out)
    out += beta


def _input_grad(g, x_hat, dgamma_mean, dbeta_mean, scale, out):
    np.multiply(x_hat, dgamma_mean, out=out)
    np.subtract(g, out, out=out)
    out -= dbeta_mean
    out *= scale


def _whole_batch_mean(reduce, local_sums, m, dtype):
    """(values per channel, mean per channel) of the whole batch split over processes,
    from this process's per-channel sums and ``m`` values per channel."""
    xp = backend.array_module(local_sums)
    message = xp.concatenate([local_sums.astype(np.float64), xp.full(1, m, np.float64)])
    whole = reduce(message)
    count = int(round(float(whole[-1])))
    if count <= 1:
        raise ValueError(f"batch_norm2d: training mode needs more than one value per channel "
                         f"to compute a variance, got {count} in the whole batch")
    return count, (whole[:-1] / count).astype(dtype)


def _whole_batch_sum(reduce, local, dtype):
    """The sum over the processes of a per-channel vector, in ``dtype``."""
    return reduce(local.astype(np.float64)).astype(dtype)


def _whole_batch_sums(ctx, dbeta, dgamma):
    """(dbeta, dgamma) summed over the whole batch: this process's own without a
    ``reduce``, else the sums over the processes (in one message)."""
    if ctx.reduce is None:
        return dbeta, dgamma
    xp = backend.array_module(dbeta)
    both = _whole_batch_sum(ctx.reduce, xp.concatenate([dbeta, dgamma]), dbeta.dtype)
    C = dbeta.shape[0]
    return both[:C], both[C:]


def _on_gpu(array, dtype=None):
    """A C-contiguous CuPy copy or view of a per-channel vector given as NumPy or CuPy."""
    if array is None:
        return None
    return cuda.contiguous(backend.cupy_module().asarray(array, dtype=dtype))


class BatchNorm2d(Function):
    """y = gamma * (x - mu) / sqrt(var + eps) + beta, per channel.  GPU: kernels/norm.cu.

    Backward (training): dL/dx = gamma / sqrt(var + eps) * (g - mean(g) - x_hat * mean(g * x_hat)).

    Works on pixel rows (N*H*W, C), a view of channels-last input such as a
    conv's output, so that every per-channel sum is a fast reduction down
    contiguous columns and the result stays channels-last for the next layer.
    The sums run whole, on one core; the passes over the values are split
    over the cores by blocks of rows (:func:`per_channel`).
    On the GPU it works on the NCHW array directly, one block per channel for
    the sums."""
    name = "batch_norm2d"

    @staticmethod
    def check(x, gamma, beta, running_mean, running_var, training, momentum, eps,
              reduce=None):
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
        if reduce is not None and not callable(reduce):
            raise TypeError(f"{op}: reduce must be a function that sums an array over the "
                            f"processes, got {type(reduce).__name__}")
        if training and reduce is None and x.size // C <= 1:
            raise ValueError(f"{op}: training mode needs more than one value per channel to "
                             f"compute a variance, got input shape {tuple(x.shape)}")

    @staticmethod
    def forward_cpu(ctx, x, gamma, beta, running_mean, running_var, training, momentum, eps,
                    reduce=None):
        N, _, H, W = x.shape
        rows = pixel_rows(x)
        m, C = rows.shape
        centered = np.empty((m, C), dtype=x.dtype)
        count = m  # values per channel in the whole batch
        if training and reduce is not None:  # the statistics of the whole, split batch
            count, mu = _whole_batch_mean(reduce, column_sums(rows), m, x.dtype)
            per_channel(np.subtract, centered, rows, mu)
            var = _whole_batch_sum(reduce, np.einsum("mc,mc->c", centered, centered),
                                   x.dtype) / x.dtype.type(count)
            if running_mean is not None:
                _update_running_statistics(running_mean, running_var, mu, var, count,
                                           momentum)
        elif training:
            mu = column_sums(rows) / m
            per_channel(np.subtract, centered, rows, mu)
            var = np.einsum("mc,mc->c", centered, centered) / m  # two passes: no cancellation
            if running_mean is not None:
                _update_running_statistics(running_mean, running_var, mu, var, m, momentum)
        else:
            mu, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
            per_channel(np.subtract, centered, rows, mu)
        inv_std = (1 / np.sqrt(var + eps)).astype(x.dtype)
        x_hat = per_channel(np.multiply, centered, centered, inv_std)
        y = np.empty((m, C), dtype=x.dtype)
        if gamma is None and beta is None:
            y[...] = x_hat
        elif beta is None:
            per_channel(np.multiply, y, x_hat, gamma)
        else:
            per_channel(_scale_shift, y, x_hat, gamma, beta)
        if any(ctx.needs_input_grad):
            ctx.save(x_hat=x_hat, inv_std=inv_std, gamma=gamma, training=training,
                     reduce=reduce, m=count)
        return from_pixel_rows(y, N, H, W)

    @staticmethod
    def forward_cuda(ctx, x, gamma, beta, running_mean, running_var, training, momentum, eps,
                     reduce=None):
        N, C, H, W = x.shape
        x, gamma, beta = cuda.contiguous(x), _on_gpu(gamma), _on_gpu(beta)
        m = N * H * W
        if training and reduce is not None:  # the statistics of the whole, split batch
            channels = (0, 2, 3)
            m, mu = _whole_batch_mean(reduce, x.sum(axis=channels, dtype=np.float64), m,
                                      x.dtype)
            deviations = x - mu.reshape(1, C, 1, 1)
            var = _whole_batch_sum(reduce, (deviations * deviations).sum(
                axis=channels, dtype=np.float64), x.dtype) / x.dtype.type(m)
            inv_std = (1 / backend.cupy_module().sqrt(var + x.dtype.type(eps))).astype(x.dtype)
            if running_mean is not None:
                _update_running_statistics(running_mean, running_var, mu, var, m, momentum)
        elif training:
            mu, var, inv_std = (cuda.empty((C,), x.dtype) for _ in range(3))
            if C:
                cuda.launch("norm", "batch_norm_statistics", x.dtype, C,
                            BATCH_NORM_REDUCE_THREADS, (x, mu, var, inv_std, eps, N, C, H * W))
            if running_mean is not None:
                _update_running_statistics(running_mean, running_var, mu, var, N * H * W,
                                           momentum)
        else:
            var = _on_gpu(running_var, x.dtype)
            mu, inv_std = _on_gpu(running_mean, x.dtype), cuda.empty((C,), x.dtype)
            cuda.launch_elementwise("norm", "batch_norm_inverse_std", x.dtype, C,
                                    var, inv_std, eps)
        x_hat = cuda.empty_like(x) if any(ctx.needs_input_grad) else None
        y = cuda.empty_like(x)
        cuda.launch_elementwise("norm", "batch_norm_forward", x.dtype, x.size,
                                x, mu, inv_std, gamma, beta, x_hat, y, C, H * W)
        if x_hat is not None:
            ctx.save(x_hat=x_hat, inv_std=inv_std, gamma=gamma, training=training,
                     reduce=reduce, m=m)
        return y

    @staticmethod
    def backward_cpu(ctx, g):
        need_x, need_gamma, need_beta = ctx.needs(3)
        N, _, H, W = g.shape
        g_rows, x_hat, inv_std, gamma = pixel_rows(g), ctx.x_hat, ctx.inv_std, ctx.gamma
        # Both sums are needed for dx in training mode anyway.
        dbeta = column_sums(g_rows) if need_beta or (need_x and ctx.training) else None
        dgamma = np.einsum("mc,mc->c", g_rows, x_hat) \
            if need_gamma or (need_x and ctx.training) else None
        dx = None
        if need_x:
            scale = inv_std if gamma is None else gamma * inv_std
            dx = np.empty(g_rows.shape, dtype=g.dtype)
            if ctx.training:
                # mean(dx_hat) = gamma * dbeta / m and mean(dx_hat * x_hat) = gamma * dgamma / m
                whole_dbeta, whole_dgamma = _whole_batch_sums(ctx, dbeta, dgamma)
                per_channel(_input_grad, dx, g_rows, x_hat, whole_dgamma / ctx.m,
                            whole_dbeta / ctx.m, scale)
            else:
                per_channel(np.multiply, dx, g_rows, scale)
            dx = from_pixel_rows(dx, N, H, W)
        return (dx, dgamma if need_gamma else None, dbeta if need_beta else None, None, None)

    @staticmethod
    def backward_cuda(ctx, g):
        need_x, need_gamma, need_beta = ctx.needs(3)
        N, C, H, W = g.shape
        g, x_hat, inv_std, gamma = cuda.contiguous(g), ctx.x_hat, ctx.inv_std, ctx.gamma
        dbeta = dgamma = dx = None
        if need_beta or need_gamma or (need_x and ctx.training):
            dbeta, dgamma = cuda.empty((C,), g.dtype), cuda.empty((C,), g.dtype)
            if C:
                cuda.launch("norm", "batch_norm_backward_sums", g.dtype, C,
                            BATCH_NORM_REDUCE_THREADS, (g, x_hat, dbeta, dgamma, N, C, H * W))
        if need_x:
            dx = cuda.empty_like(g)
            if ctx.training:
                whole_dbeta, whole_dgamma = _whole_batch_sums(ctx, dbeta, dgamma)
                cuda.launch_elementwise("norm", "batch_norm_backward_input", g.dtype,
                                        g.size, g, x_hat, inv_std, gamma, whole_dbeta,
                                        whole_dgamma, dx, ctx.m, C, H * W)
            else:
                cuda.launch_elementwise("norm", "batch_norm_backward_input_eval", g.dtype,
                                        g.size, g, inv_std, gamma, dx, C, H * W)
        return (dx, dgamma if need_gamma else None, dbeta if need_beta else None, None, None)
