"""GPU benchmark: our CUDA kernels against PyTorch + cuDNN on the same GPU, in the same run.

Per VGG-16 conv layer shape (224x224 input) at batch 32 and 64: forward and
backward (input and weight gradients) of conv3x3 with the tiled kernel (and
the naive one's forward, the bottom of the ladder), against
``torch.nn.functional.conv2d`` with cuDNN in strict FP32
(``allow_tf32=False``) and in PyTorch's default mode (TF32 allowed for
convolutions). Then the whole VGG-16 training step at 224x224 (forward,
loss, backward, SGD with momentum). Times are CUDA-event medians of
``--repeats`` runs after ``--warmup``; GFLOP/s counts 2 FLOPs per
multiply-accumulate. The ratio is tinyvgg's throughput over PyTorch's.

    python benchmarks/bench_gpu.py             # writes benchmarks/results/gpu-<device>.{json,md}
    python benchmarks/bench_gpu.py --quick     # fewer repeats and shapes
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import numpy as np

import tinyvgg as tv
from tinyvgg import backend
from tinyvgg import functional as F
from tinyvgg.fileio import atomic_write
from tinyvgg.ops.conv import conv3x3_kernel, use_conv3x3_kernel
from tinyvgg.ops.sgd import sgd_step_

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cpu import _fmt, _ratio, machine_info, torch_vgg16  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

#: the distinct conv layers of VGG-16 at 224x224: (C_in, C_out, H = W)
VGG16_CONV_SHAPES = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112),
                     (128, 256, 56), (256, 256, 56), (256, 512, 28), (512, 512, 28),
                     (512, 512, 14)]
#: how often each shape occurs in VGG-16, for sums over the network
VGG16_CONV_COUNTS = [1, 1, 1, 1, 1, 2, 1, 2, 3]


def cuda_median_ms(fn, warmup, repeats):
    """Median GPU time of ``fn`` between two CUDA events on the current stream."""
    cupy = backend.cupy_module()
    for _ in range(warmup):
        fn()
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
    return statistics.median(times)


def torch_median_ms(torch, fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def set_torch_mode(torch, strict: bool):
    """Strict FP32 (no TF32 anywhere) or PyTorch's defaults (TF32 convolutions)."""
    torch.backends.cudnn.allow_tf32 = not strict
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True


def bench_conv(torch, batch, c_in, c_out, size, warmup, repeats):
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal((batch, c_in, size, size)).astype(np.float32)
    w_host = (rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(np.float32)
    g_host = rng.standard_normal((batch, c_out, size, size)).astype(np.float32)
    x = tv.tensor(x_host, requires_grad=c_in != 3, device="cuda")
    w = tv.tensor(w_host, requires_grad=True, device="cuda")
    b = tv.tensor(np.zeros(c_out, np.float32), requires_grad=True, device="cuda")
    g = backend.move(g_host, "cuda")
    macs = batch * size * size * c_out * c_in * 9
    row = dict(shape=f"{c_in}->{c_out} @{size}x{size}", batch=batch, fwd_flops=2 * macs,
               bwd_flops=2 * macs * (2 if c_in != 3 else 1))

    def ours_forward():
        return F.conv3x3(x, w, b)

    y = ours_forward()

    def ours_backward():
        x.grad = w.grad = b.grad = None
        y.backward(g, retain_graph=True)
    before = conv3x3_kernel()
    try:
        use_conv3x3_kernel("tiled")
        row["tinyvgg_fwd_ms"] = cuda_median_ms(ours_forward, warmup, repeats)
        row["tinyvgg_bwd_ms"] = cuda_median_ms(ours_backward, warmup, repeats)
        use_conv3x3_kernel("naive")
        row["naive_fwd_ms"] = cuda_median_ms(ours_forward, 1, max(3, repeats // 3))
    finally:
        use_conv3x3_kernel(before)
    if torch is not None:
        tx = torch.tensor(x_host, device="cuda", requires_grad=c_in != 3)
        tw = torch.tensor(w_host, device="cuda", requires_grad=True)
        tb = torch.zeros(c_out, device="cuda", requires_grad=True)
        tg = torch.tensor(g_host, device="cuda")
        for mode, strict in (("strict", True), ("tf32", False)):
            set_torch_mode(torch, strict)
            ty = torch.nn.functional.conv2d(tx, tw, tb, padding=1)
            row[f"torch_{mode}_fwd_ms"] = torch_median_ms(
                torch, lambda: torch.nn.functional.conv2d(tx, tw, tb, padding=1), warmup, repeats)
            row[f"torch_{mode}_bwd_ms"] = torch_median_ms(
                torch, lambda: ty.backward(tg, retain_graph=True), warmup, repeats)
    return row


def bench_training_step(torch, batch, warmup, repeats, lr=0.01, momentum=0.9):
    """VGG-16 at 224x224: forward, loss, backward, SGD with momentum, on both engines."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
    labels = rng.integers(0, 1000, batch)
    model = tv.models.vgg16().to("cuda")
    params = model.parameters()
    velocities = [backend.cupy_module().zeros_like(p.data) for p in params]
    x = tv.tensor(images, device="cuda")
    labels_gpu = backend.move(labels, "cuda")
    first = [True]

    def ours():
        loss = F.cross_entropy(model(x), labels_gpu)
        model.zero_grad()
        loss.backward()
        for p, v in zip(params, velocities):
            sgd_step_(p.data, p.grad, v, lr, momentum=momentum, first_step=first[0])
        first[0] = False
    summary = tv.summary(model, (batch, 3, 224, 224))
    convs = sum(r.macs for r in summary.rows if r.kind.startswith("conv"))
    flops = 2 * (3 * convs - summary.rows[1].macs + 3 * (summary.macs - convs))
    row = dict(model="VGG-16 (torchvision)", batch=batch, input="3x224x224", flops=flops,
               tinyvgg_ms=cuda_median_ms(ours, warmup, repeats),
               tinyvgg_peak_bytes=backend.cupy_module().get_default_memory_pool().total_bytes())
    del model, params, velocities
    backend.cupy_module().get_default_memory_pool().free_all_blocks()
    if torch is not None:
        reference = torch_vgg16("imagenet", 1000).cuda()
        optimiser = torch.optim.SGD(reference.parameters(), lr=lr, momentum=momentum)
        tx = torch.tensor(images, device="cuda")
        ty = torch.tensor(labels, device="cuda")

        def theirs():
            loss = torch.nn.functional.cross_entropy(reference(tx), ty)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        for mode, strict in (("strict", True), ("tf32", False)):
            set_torch_mode(torch, strict)
            torch.cuda.reset_peak_memory_stats()
            row[f"torch_{mode}_ms"] = torch_median_ms(torch, theirs, warmup, repeats)
            row[f"torch_{mode}_peak_bytes"] = torch.cuda.max_memory_allocated()
    return row


def markdown(report):
    m = report["machine"]
    lines = [f"# GPU benchmark: tinyvgg kernels vs PyTorch {m['torch']} + cuDNN", "",
             f"{report['device']}; CuPy {report['cupy']}; cuDNN {report['cudnn']}; "
             f"commit {m['commit']}; {m['date']}.", "",
             f"CUDA-event medians of {report['repeats']} runs after {report['warmup']} warm-up. "
             "Ratio = tinyvgg throughput / PyTorch throughput (1.0 = parity, higher is "
             "better). Strict = FP32 with TF32 off; tf32 = PyTorch's default for convolutions."]
    for step in report["steps"]:
        lines += ["", f"## VGG-16 training step, 224x224, batch {step['batch']}", "",
                  "| | ms / step | images / s | TFLOP/s | peak memory GiB |", "|---|---|---|---|---|"]
        for who, key in (("tinyvgg", "tinyvgg"), ("PyTorch strict FP32", "torch_strict"),
                         ("PyTorch TF32 (default)", "torch_tf32")):
            ms = step.get(f"{key}_ms")
            if ms:
                lines.append(f"| {who} | {ms:.1f} | {step['batch'] / ms * 1e3:.1f} | "
                             f"{step['flops'] / ms / 1e9:.2f} | "
                             f"{step.get(f'{key}_peak_bytes', 0) / 2**30:.1f} |")
        lines += ["", f"Ratio vs strict FP32: "
                      f"{_fmt(_ratio(step['tinyvgg_ms'], step.get('torch_strict_ms')), '.2f')}; "
                      f"vs TF32: {_fmt(_ratio(step['tinyvgg_ms'], step.get('torch_tf32_ms')), '.2f')}."]
    lines += ["", "## conv3x3 per VGG-16 layer shape", "",
              "| batch | layer | tinyvgg fwd ms (GFLOP/s) | bwd ms (GFLOP/s) | naive fwd ms | "
              "cuDNN strict fwd / bwd ms | cuDNN TF32 fwd / bwd ms | ratio strict fwd / bwd |",
              "|---|---|---|---|---|---|---|---|"]
    for r in report["convs"]:
        lines.append(
            f"| {r['batch']} | {r['shape']} | {r['tinyvgg_fwd_ms']:.2f} "
            f"({r['fwd_flops'] / r['tinyvgg_fwd_ms'] / 1e6:.0f}) | {r['tinyvgg_bwd_ms']:.2f} "
            f"({r['bwd_flops'] / r['tinyvgg_bwd_ms'] / 1e6:.0f}) | {r['naive_fwd_ms']:.2f} | "
            f"{_fmt(r.get('torch_strict_fwd_ms'), '.2f')} / {_fmt(r.get('torch_strict_bwd_ms'), '.2f')} | "
            f"{_fmt(r.get('torch_tf32_fwd_ms'), '.2f')} / {_fmt(r.get('torch_tf32_bwd_ms'), '.2f')} | "
            f"{_fmt(_ratio(r['tinyvgg_fwd_ms'], r.get('torch_strict_fwd_ms')), '.2f')} / "
            f"{_fmt(_ratio(r['tinyvgg_bwd_ms'], r.get('torch_strict_bwd_ms')), '.2f')} |")
    for batch, total in report["conv_totals"].items():
        lines += ["", f"Batch {batch}, all 13 conv layers, forward + backward: tinyvgg "
                      f"{total['tinyvgg_ms']:.1f} ms, cuDNN strict {_fmt(total.get('torch_strict_ms'), '.1f')} ms "
                      f"(ratio {_fmt(_ratio(total['tinyvgg_ms'], total.get('torch_strict_ms')), '.2f')})."]
    return "\n".join(lines) + "\n"


def conv_totals(rows):
    totals = {}
    for r in rows:
        count = VGG16_CONV_COUNTS[[f"{a}->{b} @{s}x{s}" for a, b, s in VGG16_CONV_SHAPES]
                                  .index(r["shape"])]
        t = totals.setdefault(str(r["batch"]), {"tinyvgg_ms": 0.0})
        t["tinyvgg_ms"] += count * (r["tinyvgg_fwd_ms"] + r["tinyvgg_bwd_ms"])
        if "torch_strict_fwd_ms" in r:
            t["torch_strict_ms"] = t.get("torch_strict_ms", 0.0) + count * (
                r["torch_strict_fwd_ms"] + r["torch_strict_bwd_ms"])
    return totals


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--step-batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="3 repeats, batch 32 only")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.batches = 3, 1, [32]
    try:
        cupy = backend.cupy_module()
    except backend.DeviceUnavailableError as error:
        parser.exit(2, f"bench_gpu: {error}\n")
    try:
        import torch
        if not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None
    if torch is None:
        print("PyTorch with CUDA is not available: timing tinyvgg alone", file=sys.stderr)
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    report = dict(machine=machine_info(), device=name, cupy=cupy.__version__,
                  cudnn=None if torch is None else torch.backends.cudnn.version(),
                  repeats=args.repeats, warmup=args.warmup, convs=[], steps=[])
    for batch in args.batches:
        for c_in, c_out, size in VGG16_CONV_SHAPES:
            row = bench_conv(torch, batch, c_in, c_out, size, args.warmup, args.repeats)
            report["convs"].append(row)
            print(f"batch {batch} conv3x3 {row['shape']}: fwd {row['tinyvgg_fwd_ms']:.2f} ms, "
                  f"bwd {row['tinyvgg_bwd_ms']:.2f} ms, cuDNN strict "
                  f"{_fmt(row.get('torch_strict_fwd_ms'), '.2f')} / "
                  f"{_fmt(row.get('torch_strict_bwd_ms'), '.2f')} ms", flush=True)
    report["conv_totals"] = conv_totals(report["convs"])
    step = bench_training_step(torch, args.step_batch, args.warmup, args.repeats)
    report["steps"].append(step)
    print(f"VGG-16 step, batch {step['batch']}: tinyvgg {step['tinyvgg_ms']:.1f} ms, PyTorch "
          f"strict {_fmt(step.get('torch_strict_ms'), '.1f')} ms, "
          f"TF32 {_fmt(step.get('torch_tf32_ms'), '.1f')} ms", flush=True)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    stem = args.out or RESULTS / f"gpu-{slug}"
    atomic_write(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    atomic_write(stem.with_suffix(".md"), markdown(report))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
