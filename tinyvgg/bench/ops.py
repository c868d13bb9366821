"""Every op of VGG-16, forward and backward, beside PyTorch's on the same data, on the CPU
(``benchmarks/bench_cpu.py``): the shapes of VGG-16 on CIFAR-size input (32x32, batch 64,
float32), times in ms."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..tensor import tensor
from .ladder import BATCH, VGG16_CIFAR_CONVS, conv_cost, distinct_layers, random_like
from .reference import FIND, torch_for
from .timing import ratio, time_forward_backward


def op_cases(torch=None):
    """(name, forward FLOPs, backward FLOPs, input arrays, tinyvgg's op, PyTorch's op)."""
    rng = np.random.default_rng(0)

    def randn(*shape):
        """Random float32 values; activations (4-D, more than 3 channels) come channels-last
        in memory, as conv outputs are in tinyvgg, so each op sees what it sees in a network."""
        values = rng.standard_normal(shape).astype(np.float32)
        if len(shape) == 4 and shape[1] > 3:
            values = np.ascontiguousarray(values.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        return values

    labels = rng.integers(0, 10, BATCH)
    cases = []
    for c_in, c_out, hw in distinct_layers(VGG16_CIFAR_CONVS)[0]:
        cost = conv_cost(BATCH, c_in, c_out, hw)
        cases.append((f"conv3x3 {c_in}->{c_out} @{hw}x{hw}", cost["fwd_flops"], cost["bwd_flops"],
                      [randn(BATCH, c_in, hw, hw), randn(c_out, c_in, 3, 3) * 0.05, randn(c_out)],
                      F.conv3x3,
                      lambda x, w, b: torch.nn.functional.conv2d(x, w, b, padding=1)))
    cases.append(("conv1x1 256->256 @8x8", 2 * BATCH * 64 * 256 * 256, 4 * BATCH * 64 * 256 * 256,
                  [randn(BATCH, 256, 8, 8), randn(256, 256, 1, 1) * 0.05, randn(256)],
                  F.conv1x1, lambda x, w, b: torch.nn.functional.conv2d(x, w, b)))
    for c, hw in ((64, 32), (256, 8)):
        cases.append((f"maxpool2x2 {c} @{hw}x{hw}", 0, 0, [randn(BATCH, c, hw, hw)],
                      F.maxpool2x2, lambda x: torch.nn.functional.max_pool2d(x, 2, 2)))
        cases.append((f"relu {c} @{hw}x{hw}", 0, 0, [randn(BATCH, c, hw, hw)],
                      F.relu, None if torch is None else torch.relu))
    cases.append(("batch_norm2d 64 @32x32", 0, 0,
                  [randn(BATCH, 64, 32, 32), 1 + randn(64) * 0.1, randn(64)],
                  lambda x, w, b: F.batch_norm2d(x, None, None, w, b, training=True),
                  lambda x, w, b: torch.nn.functional.batch_norm(x, None, None, w, b,
                                                                 training=True)))
    cases.append(("adaptive_avg_pool2d 512 @7x7->1", 0, 0, [randn(BATCH, 512, 7, 7)],
                  lambda x: F.adaptive_avg_pool2d(x, 1),
                  lambda x: torch.nn.functional.adaptive_avg_pool2d(x, 1)))
    for n_in, n_out in ((512, 512), (512, 10)):
        flops = 2 * BATCH * n_in * n_out
        cases.append((f"linear {n_in}->{n_out}", flops, 2 * flops,
                      [randn(BATCH, n_in), randn(n_out, n_in) * 0.05, randn(n_out)],
                      F.linear, None if torch is None else torch.nn.functional.linear))
    cases.append(("dropout p=0.5 (64x512)", 0, 0, [randn(BATCH, 512)],
                  lambda x: F.dropout(x, 0.5, seed=1),
                  lambda x: torch.nn.functional.dropout(x, 0.5, training=True)))
    cases.append(("cross_entropy (64x10)", 0, 0, [randn(BATCH, 10)],
                  lambda z: F.cross_entropy(z, labels),
                  lambda z: torch.nn.functional.cross_entropy(z, torch.from_numpy(labels))))
    return cases


def _needs_grad(array):
    """Everything but the image input (3 channels) gets a gradient, as in training."""
    return not (array.ndim == 4 and array.shape[1] == 3)


def op_line(r) -> str:
    """One op's times (and PyTorch's, with the ratios) on one line, for the log."""
    parts = [f"{r['op']:<34}", f"fwd {r['tinyvgg_fwd_ms']:8.2f} ms",
             f"bwd {r['tinyvgg_bwd_ms']:8.2f} ms"]
    if "torch_fwd_ms" in r:
        parts.append(f"torch fwd {r['torch_fwd_ms']:8.2f} bwd {r['torch_bwd_ms']:8.2f}")
        parts.append(f"ratio fwd {ratio(r['tinyvgg_fwd_ms'], r['torch_fwd_ms']):.2f} "
                     f"bwd {ratio(r['tinyvgg_bwd_ms'], r['torch_bwd_ms']):.2f}")
    return "  ".join(parts)


def bench_ops(warmup, repeats, log=print, torch=FIND) -> list[dict]:
    """Each op's forward and backward ms, and PyTorch's when it is installed."""
    torch = torch_for("cpu", torch)
    rows = []
    for name, fwd_flops, bwd_flops, arrays, ours, theirs in op_cases(torch):
        grad_rng = np.random.default_rng(1)
        ours_f, ours_b = time_forward_backward(
            lambda: [tensor(a, requires_grad=_needs_grad(a)) for a in arrays], ours,
            lambda out: random_like(out.data, grad_rng), warmup, repeats)
        row = dict(op=name, fwd_flops=fwd_flops, bwd_flops=bwd_flops,
                   tinyvgg_fwd_ms=1e3 * ours_f, tinyvgg_bwd_ms=1e3 * ours_b)
        if torch is not None:
            th_f, th_b = time_forward_backward(
                lambda: [torch.tensor(np.ascontiguousarray(a), requires_grad=_needs_grad(a))
                         for a in arrays], theirs,
                lambda out: torch.randn(out.shape), warmup, repeats)
            row.update(torch_fwd_ms=1e3 * th_f, torch_bwd_ms=1e3 * th_b)
        rows.append(row)
        log(op_line(row))
    return rows
