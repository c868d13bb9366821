"""cross_entropy: softmax cross-entropy of integer labels, averaged over the batch,
optionally with label smoothing.

For logits z of shape (N, C), labels t[n] in [0, C) and smoothing e in [0, 1]
the target of row n is the distribution q[n, c] = (1 - e) [c == t[n]] + e / C
(PyTorch's ``label_smoothing``; e = 0 is the plain one-hot target)::

    L = (1/N) sum_n ( logsumexp(z[n, :]) - sum_c q[n, c] z[n, c] )
      = (1/N) sum_n ( logsumexp(z[n, :]) - (1 - e) z[n, t[n]] - (e / C) sum_c z[n, c] )
    logsumexp(z) = m + log(sum_c exp(z[c] - m)),   m = max_c z[c]

Subtracting the row maximum changes nothing mathematically but keeps exp()
from overflowing for large logits (q sums to 1, so m cancels from the
smoothed term too).

Backward: d logsumexp(z) / dz[c] = softmax(z)[c], so::

    dL/dz[n, c] = (softmax(z[n])[c] - q[n, c]) / N

Smoothing keeps the target away from a one-hot vector, which the logits can
only reach by growing without bound: with it the loss has a finite minimum,
where the label's logit leads the others by log(C (1 - e) / e + 1).

Labels may be NumPy or CuPy integer arrays on either device: they are
checked on the host (they are small) and used where the logits are.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend, cuda
from ..tensor import Function
from . import checks

XENT_THREADS = 256  # kernels/loss.cu reduces each row with a block of this size
MAX_ROW_BLOCKS = 65535  # more rows are covered by the kernel's grid-stride loop


def cross_entropy_naive(logits, labels, label_smoothing=0.0):
    N, C = logits.shape
    e = float(label_smoothing)
    total = 0.0
    for n in range(N):
        m = max(float(v) for v in logits[n])
        lse = m + math.log(sum(math.exp(float(v) - m) for v in logits[n]))
        for c in range(C):
            target = (1 - e) * (c == labels[n]) + e / C
            total += target * (lse - float(logits[n, c]))
    return np.asarray(total / N, dtype=logits.dtype)


def check_label_smoothing(label_smoothing) -> float:
    if isinstance(label_smoothing, (bool, np.bool_)) or \
            not isinstance(label_smoothing, (int, float, np.integer, np.floating)):
        raise TypeError(f"cross_entropy: label_smoothing must be a number in [0, 1], "
                        f"got {type(label_smoothing).__name__}")
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], "
                         f"got {label_smoothing}")
    return float(label_smoothing)


def check_labels(logits, labels):
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"cross_entropy: labels must be integers (class indices), "
                        f"got dtype {labels.dtype}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy: labels must have shape ({logits.shape[0]},) "
                         f"to match logits of shape {tuple(logits.shape)}, "
                         f"got {tuple(labels.shape)}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        bad = labels[(labels < 0) | (labels >= logits.shape[1])]
        raise ValueError(f"cross_entropy: labels must be in [0, {logits.shape[1]}) for "
                         f"{logits.shape[1]} classes, got {bad[:5].tolist()}")


def host_labels(logits, labels) -> np.ndarray:
    """The labels as a NumPy array, checked against the logits: both devices check them on
    the host (N integers), where the one copy a forward pass makes of them lands."""
    labels = backend.to_numpy(labels)
    check_labels(logits, labels)
    return labels


def labels_on_gpu(labels: np.ndarray):
    """Checked host labels as a contiguous int64 CuPy array (the kernels index with long long)."""
    return backend.cupy_module().asarray(np.ascontiguousarray(labels, dtype=np.int64))


def cross_entropy_gpu(logits, labels, label_smoothing=0.0):
    """(per-row losses, softmax probabilities) of contiguous CuPy logits and int64 labels."""
    rows, cols = logits.shape
    probs = cuda.empty_like(logits)
    losses = cuda.empty((rows,), logits.dtype)
    cuda.launch("loss", "softmax_xent_forward", logits.dtype, min(rows, MAX_ROW_BLOCKS),
                XENT_THREADS, (logits, labels, probs, losses, rows, cols,
                               logits.dtype.type(label_smoothing)))
    return losses, probs


def cross_entropy_backward_gpu(probs, labels, g, label_smoothing=0.0):
    """(softmax - q) * g / N for the scalar upstream gradient g (a CuPy array), where q is
    the smoothed one-hot target."""
    rows, cols = probs.shape
    dz = cuda.empty_like(probs)
    cuda.launch_elementwise("loss", "softmax_xent_backward", probs.dtype, probs.size,
                            probs, labels, cuda.contiguous(g.astype(probs.dtype, copy=False)),
                            dz, rows, cols, probs.dtype.type(label_smoothing))
    return dz


class CrossEntropy(Function):
    """L = mean_n (logsumexp(z_n) - sum_c q_nc z_nc), q_n = (1 - e) onehot(t_n) + e / C.

    Backward: dL/dz = (softmax(z) - q) / N.  GPU: kernels/loss.cu."""
    name = "cross_entropy"

    @staticmethod
    def check(logits, labels, label_smoothing=0.0):
        checks.floating("cross_entropy", logits=logits)
        checks.rank("cross_entropy", "logits", logits, 2, "(N, classes)")
        check_label_smoothing(label_smoothing)
        if logits.shape[0] == 0:
            raise ValueError("cross_entropy: the batch is empty (logits shape "
                             f"{tuple(logits.shape)}); the mean over no samples is undefined")

    @staticmethod
    def forward_cpu(ctx, logits, labels, label_smoothing=0.0):
        labels = host_labels(logits, labels)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(logits.shape[0])
        if ctx.needs_input_grad[0]:
            ctx.save(probs=np.exp(log_probs), labels=labels, label_smoothing=label_smoothing)
        losses = -log_probs[rows, labels]
        if label_smoothing:
            e = label_smoothing
            losses = (1 - e) * losses - (e / logits.shape[1]) * log_probs.sum(axis=1)
        return np.asarray(losses.mean(), dtype=logits.dtype)

    @staticmethod
    def forward_cuda(ctx, logits, labels, label_smoothing=0.0):
        labels = labels_on_gpu(host_labels(logits, labels))
        losses, probs = cross_entropy_gpu(cuda.contiguous(logits), labels, label_smoothing)
        if ctx.needs_input_grad[0]:
            ctx.save(probs=probs, labels=labels, label_smoothing=label_smoothing)
        return losses.mean().astype(logits.dtype, copy=False)

    @staticmethod
    def backward_cpu(ctx, g):
        N, C = ctx.probs.shape
        e = ctx.label_smoothing
        d = ctx.probs.copy()
        if e:
            d -= d.dtype.type(e / C)
        d[np.arange(N), ctx.labels] -= d.dtype.type(1 - e)
        d *= g / N
        return d, None

    @staticmethod
    def backward_cuda(ctx, g):
        return cross_entropy_backward_gpu(ctx.probs, ctx.labels, g, ctx.label_smoothing), None
