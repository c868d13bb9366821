"""CPU benchmark: every op, forward and backward, and VGG-16 steps, against PyTorch.

Op shapes are those of VGG-16 on CIFAR-size input (32x32, batch 64, float32);
the whole network runs at that size (a training step) and at ImageNet size
(the full 138M-parameter VGG-16, 224x224, batch 2, forward and backward).
Each measurement is the median of ``--repeats`` runs after ``--warmup`` runs;
PyTorch (oneDNN) runs in the same process on the same inputs, and the ratio
column is tinyvgg's throughput over PyTorch's (1.0 = same speed, higher is
faster). Absolute times on a shared machine are noise; the ratio is the
number to read.

    python benchmarks/bench_cpu.py            # writes runs/bench/cpu-<machine>.{json,md}
    python benchmarks/bench_cpu.py --quick    # fewer repeats, for a smoke run
    python benchmarks/bench_cpu.py --out benchmarks/results/cpu-<machine>   # the committed results
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

import tinyvgg as tv
from tinyvgg import functional as F
from tinyvgg.bench import (DEFAULT_OUT, VGG16_CIFAR_CONVS, bench_training_step, machine_info,
                           time_forward_backward, torch_vgg16)
from tinyvgg.bench import fmt as _fmt
from tinyvgg.bench import ratio as _ratio
from tinyvgg.io.fileio import FolderNotWritableError, atomic_write, writable_folder

try:
    import torch
except ImportError:  # the benchmark still runs, without the comparison
    torch = None

#: the results committed with the code, written there only on purpose (``--out``)
RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 64

__all__ = ["machine_info", "torch_vgg16", "_fmt", "_ratio"]  # also used by bench_gpu.py


# --- per-op cases: each returns (tinyvgg forward, torch forward) on the same data ----------

def op_cases():
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
    seen = set()
    for c_in, c_out, hw in VGG16_CIFAR_CONVS:
        if (c_in, c_out, hw) in seen:
            continue
        seen.add((c_in, c_out, hw))
        flops = 2 * BATCH * hw * hw * c_out * c_in * 9
        backward_flops = flops if c_in == 3 else 2 * flops  # the image needs no gradient
        cases.append((f"conv3x3 {c_in}->{c_out} @{hw}x{hw}", flops, backward_flops,
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
                      F.relu, torch.relu))
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
                      F.linear, torch.nn.functional.linear))
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


def _like(array, rng):
    """Random values in ``array``'s memory layout, as the gradient arriving in training is."""
    grad = np.empty_like(array)
    grad[...] = rng.standard_normal(array.shape)
    return grad


def bench_ops(warmup, repeats):
    rows = []
    for name, fwd_flops, bwd_flops, arrays, ours, theirs in op_cases():
        grad_rng = np.random.default_rng(1)
        ours_f, ours_b = time_forward_backward(
            lambda: [tv.tensor(a, requires_grad=_needs_grad(a)) for a in arrays], ours,
            lambda out: _like(out.data, grad_rng), warmup, repeats)
        row = dict(op=name, fwd_flops=fwd_flops, bwd_flops=bwd_flops,
                   tinyvgg_fwd_ms=1e3 * ours_f, tinyvgg_bwd_ms=1e3 * ours_b)
        if torch is not None:
            th_f, th_b = time_forward_backward(
                lambda: [torch.tensor(np.ascontiguousarray(a), requires_grad=_needs_grad(a))
                         for a in arrays], theirs,
                lambda out: torch.randn(out.shape), warmup, repeats)
            row.update(torch_fwd_ms=1e3 * th_f, torch_bwd_ms=1e3 * th_b)
        rows.append(row)
        print(_op_line(row), flush=True)
    return rows


# --- the training step ---------------------------------------------------------------------

def bench_imagenet_step(warmup, repeats):
    """Forward and backward of the full VGG-16 (138M parameters) on two 224x224 images."""
    return bench_training_step(warmup, repeats, head="imagenet", batch=2, size=224,
                               num_classes=1000, lr=None)


def _step_ms(step):
    """(tinyvgg ms, PyTorch ms or None) of a bench_training_step result (the default rung)."""
    ours = 1e3 * next(iter(step["tinyvgg"].values()))["seconds"]
    return ours, (1e3 * step["torch"]["seconds"] if "torch" in step else None)


def _gflops(flops, ms):
    return flops / ms / 1e6 if flops else None


# --- reporting -------------------------------------------------------------------------------

def _op_line(r):
    parts = [f"{r['op']:<34}", f"fwd {r['tinyvgg_fwd_ms']:8.2f} ms", f"bwd {r['tinyvgg_bwd_ms']:8.2f} ms"]
    if "torch_fwd_ms" in r:
        parts.append(f"torch fwd {r['torch_fwd_ms']:8.2f} bwd {r['torch_bwd_ms']:8.2f}")
        parts.append(f"ratio fwd {_ratio(r['tinyvgg_fwd_ms'], r['torch_fwd_ms']):.2f} "
                     f"bwd {_ratio(r['tinyvgg_bwd_ms'], r['torch_bwd_ms']):.2f}")
    return "  ".join(parts)


def _step_table(s):
    ips = lambda ms: s["batch"] / ms * 1e3  # noqa: E731
    ours, theirs = _step_ms(s)
    lines = [f"{s['model']}.", "",
             "| | ms / step | images / s | GFLOP/s (forward + backward FLOPs) |",
             "|---|---|---|---|",
             f"| tinyvgg | {ours:.1f} | {ips(ours):.1f} | "
             f"{_fmt(_gflops(s['approx_flops'], ours), '.1f')} |"]
    if theirs is not None:
        lines += [f"| PyTorch | {theirs:.1f} | {ips(theirs):.1f} | "
                  f"{_fmt(_gflops(s['approx_flops'], theirs), '.1f')} |", "",
                  f"**Ratio: {_ratio(ours, theirs):.2f}x PyTorch's throughput.**"]
    return lines


def markdown(report):
    m = report["machine"]
    lines = [f"# CPU benchmark: tinyvgg vs PyTorch {m['torch'] or '(not installed)'}", "",
             f"{m['cpu']}, {m['cores']} cores; NumPy {m['numpy']} ({m['numpy_blas']}); "
             f"tinyvgg threads {m.get('tinyvgg_cpu_threads', '?')}; "
             f"PyTorch threads {m['torch_threads']}; commit {m['commit']}; {m['date']}.", "",
             f"Median of {report['repeats']} runs after {report['warmup']} warm-up runs. "
             "Ratio = tinyvgg throughput / PyTorch throughput (higher is better, 1.0 = parity)."]
    for key, title in (("training_step", "VGG-16 training step (32x32, batch 64, float32, "
                                         "forward + backward + SGD update)"),
                       ("imagenet_step", "Full VGG-16 at ImageNet size (224x224, batch 2, "
                                         "float32, forward + backward)")):
        if key in report:
            lines += ["", f"## {title}", ""] + _step_table(report[key])
    lines += ["", "## Ops (batch 64)", "",
              "| op | tinyvgg fwd ms | bwd ms | GFLOP/s fwd / bwd | PyTorch fwd ms | bwd ms "
              "| ratio fwd | ratio bwd |", "|---|---|---|---|---|---|---|---|"]
    for r in report["ops"]:
        gf = (f"{_fmt(_gflops(r['fwd_flops'], r['tinyvgg_fwd_ms']), '.0f')} / "
              f"{_fmt(_gflops(r['bwd_flops'], r['tinyvgg_bwd_ms']), '.0f')}")
        lines.append(
            f"| {r['op']} | {r['tinyvgg_fwd_ms']:.2f} | {r['tinyvgg_bwd_ms']:.2f} | {gf} | "
            f"{_fmt(r.get('torch_fwd_ms'), '.2f')} | {_fmt(r.get('torch_bwd_ms'), '.2f')} | "
            f"{_fmt(_ratio(r['tinyvgg_fwd_ms'], r.get('torch_fwd_ms')), '.2f')} | "
            f"{_fmt(_ratio(r['tinyvgg_bwd_ms'], r.get('torch_bwd_ms')), '.2f')} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="3 repeats, 1 warm-up")
    parser.add_argument("--no-ops", action="store_true", help="only the whole-network steps")
    parser.add_argument("--no-imagenet", action="store_true",
                        help="skip the full VGG-16 at 224x224")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"file stem for the results (default {DEFAULT_OUT}/cpu-<machine>)")
    args = parser.parse_args(argv)
    try:  # before the measurements, not after
        writable_folder(args.out.parent if args.out else DEFAULT_OUT)
    except FolderNotWritableError as error:
        parser.exit(2, f"bench_cpu: --out: {error}\n")
    if args.quick:
        args.repeats, args.warmup = 3, 1
    if torch is None:
        print("PyTorch is not installed: timing tinyvgg alone (pip install torch for the "
              "comparison)", file=sys.stderr)
    report = dict(machine=machine_info(), repeats=args.repeats, warmup=args.warmup)
    report["ops"] = [] if args.no_ops else bench_ops(args.warmup, args.repeats)
    report["training_step"] = bench_training_step(args.warmup, args.repeats)
    if not args.no_imagenet:
        report["imagenet_step"] = bench_imagenet_step(args.warmup, args.repeats)
    for key in ("training_step", "imagenet_step"):
        if key in report:
            step = report[key]
            ours, theirs = _step_ms(step)
            print(f"{step['model']}, {step['input']}, batch {step['batch']}: tinyvgg "
                  f"{ours:.1f} ms" + (f", PyTorch {theirs:.1f} ms, ratio "
                                      f"{_ratio(ours, theirs):.2f}"
                                      if theirs is not None else ""), flush=True)
    machine = re.sub(r"[^a-z0-9]+", "-", report["machine"]["cpu"].lower()).strip("-")
    stem = args.out or DEFAULT_OUT / f"cpu-{machine}-{report['machine']['cores']}cores"
    atomic_write(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    atomic_write(stem.with_suffix(".md"), markdown(report))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
