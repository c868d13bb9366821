"""GPU benchmark: every step of our kernel ladders against PyTorch + cuDNN, in the same run.

For each distinct conv layer of VGG-16 at 224x224 (batch 64 by default), every
conv3x3 forward kernel (``tinyvgg.ops.conv_cuda.CONV3X3_KERNELS``: naive, tiled,
register, implicit-gemm, tf32-mma, winograd4x4) is timed on the forward pass and on the
input gradient (the same kernel on the turned weights; not for the first
layer, whose input needs no gradient), and every weight-gradient kernel
(``CONV3X3_WGRAD_KERNELS``) on dL/dw. cuDNN does the same three jobs through
``torch.nn.functional.conv2d`` and ``torch.ops.aten.convolution_backward``,
once in strict FP32 (``torch.backends.cudnn.allow_tf32 = False``,
``torch.backends.cuda.matmul.allow_tf32 = False``) and once with TF32
allowed. Then the matrix-product ladder (``tinyvgg.ops.linear.GEMM_KERNELS``)
on VGG-16's three fully connected layers (forward, input and weight
gradients) against ``torch.matmul``, and the whole VGG-16 training step at
224x224 with the kernels selected at the time (defaults, or the
TINYVGG_*_KERNEL environment variables).

Times are CUDA-event medians of ``--repeats`` runs after ``--warmup`` (the
naive kernels get a third of the repeats); GFLOP/s counts 2 FLOPs per
multiply-add. The ratio is our throughput over cuDNN's (1.0 = parity,
higher is faster): float32 kernels against strict FP32 cuDNN, the TF32
kernel only against TF32 cuDNN. Every kernel's result is also compared with
strict FP32 cuDNN's (the ``error`` fields: largest difference over the
largest value), so a fast wrong kernel shows.

    python benchmarks/bench_gpu.py             # writes runs/bench/gpu-<device>.{json,md}
    python benchmarks/bench_gpu.py --out benchmarks/results/gpu-<device>   # the committed results
    python benchmarks/bench_gpu.py --quick     # 3 repeats, no training step
    python benchmarks/bench_gpu.py --parts step --out /tmp/step   # the training step alone
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
from tinyvgg.bench import DEFAULT_OUT
from tinyvgg.io.fileio import FolderNotWritableError, atomic_write, writable_folder
from tinyvgg.io.plotting import pyplot, save_png
from tinyvgg.ops import conv_cuda as conv, linear
from tinyvgg.ops.sgd import sgd_step_

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cpu import _fmt, _ratio, machine_info, torch_vgg16  # noqa: E402

#: the distinct conv layers of VGG-16 at 224x224: (C_in, C_out, H = W)
VGG16_CONV_SHAPES = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112),
                     (128, 256, 56), (256, 256, 56), (256, 512, 28), (512, 512, 28),
                     (512, 512, 14)]
#: how often each shape occurs in VGG-16, for sums over the network
VGG16_CONV_COUNTS = [1, 1, 1, 1, 1, 2, 1, 2, 3]
#: VGG-16's fully connected layers: (in_features, out_features)
VGG16_FC_SHAPES = [(25088, 4096), (4096, 4096), (4096, 1000)]
#: the three jobs of a layer: forward, input gradient, weight gradient
JOBS = ("fwd", "dx", "dw")
PARTS = ("conv", "linear", "step")  # the per-layer conv ladder, the gemm ladder, the VGG step
SLOW_KERNELS = ("naive",)  # timed with a third of the repeats


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


TORCH_MODES = ("strict", "tf32")


def set_torch_mode(torch, mode: str):
    """"strict": FP32 everywhere (no TF32); "tf32": TF32 for convolutions and matmuls."""
    tf32 = mode == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def measure_peaks(torch, warmup, repeats, size=8192, copy_bytes=2**30):
    """The device's ceilings, measured here: a size^3 float32 matrix product through
    cuBLAS (torch.matmul, strict FP32 and TF32; CuPy's matmul without PyTorch) in TFLOP/s,
    and a device-to-device copy in GB/s counting bytes read plus bytes written."""
    cupy = backend.cupy_module()
    peaks = {}
    if torch is not None:
        a, b = (torch.randn(size, size, device="cuda") for _ in range(2))
        for mode in TORCH_MODES:
            set_torch_mode(torch, mode)
            ms = torch_median_ms(torch, lambda: a @ b, warmup, repeats)
            peaks[f"gemm_{mode}_tflops"] = 2 * size ** 3 / ms / 1e9
        a = b = None
        torch.cuda.empty_cache()
    else:
        a, b = (cupy.random.standard_normal((size, size), dtype=cupy.float32) for _ in range(2))
        ms = cuda_median_ms(lambda: a @ b, warmup, repeats)
        peaks["gemm_strict_tflops"] = 2 * size ** 3 / ms / 1e9
    source = cupy.random.standard_normal(copy_bytes // 4, dtype=cupy.float32)
    target = cupy.empty_like(source)
    ms = cuda_median_ms(lambda: cupy.copyto(target, source), warmup, repeats)
    peaks["copy_gbs"] = 2 * copy_bytes / ms / 1e6
    return peaks


def relative_error(ours, reference) -> float:
    """max |ours - reference| / max |reference|, on the GPU (CuPy arrays or torch tensors)."""
    cupy = backend.cupy_module()
    ours, reference = cupy.asarray(ours), cupy.asarray(reference)
    scale = float(cupy.abs(reference).max())
    return float(cupy.abs(ours - reference).max()) / max(scale, 1e-30)


def _selected(use, current, name, fn):
    """fn() with the kernel ``name`` selected, the previous choice restored after."""
    before = current()
    use(name)
    try:
        return fn()
    finally:
        use(before)


def bench_conv(torch, batch, c_in, c_out, size, warmup, repeats):
    """Every conv3x3 ladder step (and cuDNN) on one layer shape: ms, GFLOP/s, errors."""
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal((batch, c_in, size, size)).astype(np.float32)
    w_host = (rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(np.float32)
    b_host = rng.standard_normal(c_out).astype(np.float32)
    g_host = rng.standard_normal((batch, c_out, size, size)).astype(np.float32)
    x, w, b, g = (backend.move(a, "cuda") for a in (x_host, w_host, b_host, g_host))
    flops = 2 * batch * size * size * c_out * c_in * 9  # the same for each of the three jobs
    jobs = ("fwd", "dw") if c_in == 3 else JOBS  # the first layer's input needs no gradient
    row = dict(shape=f"{c_in}->{c_out} @{size}x{size}", c_in=c_in, c_out=c_out, size=size,
               batch=batch, flops=flops, jobs=list(jobs), ms={}, error={}, torch_ms={})

    reference = {}
    if torch is not None:
        tx, tw, tb, tg = (torch.as_tensor(a, device="cuda")
                          for a in (x_host, w_host, b_host, g_host))

        def torch_jobs():
            grads = torch.ops.aten.convolution_backward
            return {"fwd": lambda: torch.nn.functional.conv2d(tx, tw, tb, padding=1),
                    "dx": lambda: grads(tg, tx, tw, None, [1, 1], [1, 1], [1, 1], False, [0, 0],
                                        1, [True, False, False])[0],
                    "dw": lambda: grads(tg, tx, tw, None, [1, 1], [1, 1], [1, 1], False, [0, 0],
                                        1, [False, True, False])[1]}
        for mode in TORCH_MODES:
            set_torch_mode(torch, mode)
            fns = torch_jobs()
            row["torch_ms"][mode] = {job: torch_median_ms(torch, fns[job], warmup, repeats)
                                     for job in jobs}
            if mode == "strict":
                reference = {job: fns[job]() for job in jobs}
        torch.cuda.synchronize()

    forward_jobs = {"fwd": lambda: conv.conv3x3_cuda(x, w, b),
                    "dx": lambda: conv.conv3x3_input_grad_cuda(g, w)}
    for kernel in conv.CONV3X3_KERNELS:
        n = max(2, repeats // 3) if kernel in SLOW_KERNELS else repeats
        for job in (j for j in jobs if j in forward_jobs):
            fn = forward_jobs[job]
            row["ms"].setdefault(job, {})[kernel] = _selected(
                conv.use_conv3x3_kernel, conv.conv3x3_kernel, kernel,
                lambda: cuda_median_ms(fn, min(warmup, n), n))
            if job in reference:
                result = _selected(conv.use_conv3x3_kernel, conv.conv3x3_kernel, kernel, fn)
                row["error"].setdefault(job, {})[kernel] = relative_error(result, reference[job])
    for kernel in conv.CONV3X3_WGRAD_KERNELS:
        def fn():
            return conv.conv3x3_weight_grad_cuda(x, g)
        row["ms"].setdefault("dw", {})[kernel] = _selected(
            conv.use_conv3x3_wgrad_kernel, conv.conv3x3_wgrad_kernel, kernel,
            lambda: cuda_median_ms(fn, warmup, repeats))
        if "dw" in reference:
            result = _selected(conv.use_conv3x3_wgrad_kernel,
                               conv.conv3x3_wgrad_kernel, kernel, fn)
            row["error"].setdefault("dw", {})[kernel] = relative_error(result, reference["dw"])
    return row


def bench_linear(torch, batch, in_features, out_features, warmup, repeats):
    """Every gemm ladder step (and torch.matmul) on one fully connected layer."""
    rng = np.random.default_rng(1)
    x_host = rng.standard_normal((batch, in_features)).astype(np.float32)
    w_host = rng.standard_normal((out_features, in_features)) / np.sqrt(in_features)
    w_host = w_host.astype(np.float32)
    g_host = rng.standard_normal((batch, out_features)).astype(np.float32)
    x, w, g = (backend.move(a, "cuda") for a in (x_host, w_host, g_host))
    flops = 2 * batch * in_features * out_features
    row = dict(shape=f"{in_features}->{out_features}", batch=batch, flops=flops, jobs=list(JOBS),
               ms={}, error={}, torch_ms={})
    ours = {"fwd": lambda: linear.gemm_gpu(x, w, trans_b=True),   # x W^T
            "dx": lambda: linear.gemm_gpu(g, w),                  # g W
            "dw": lambda: linear.gemm_gpu(g, x, trans_a=True)}    # g^T x
    reference = {}
    if torch is not None:
        tx, tw, tg = (torch.as_tensor(a, device="cuda") for a in (x_host, w_host, g_host))
        theirs = {"fwd": lambda: tx @ tw.T, "dx": lambda: tg @ tw, "dw": lambda: tg.T @ tx}
        for mode in TORCH_MODES:
            set_torch_mode(torch, mode)
            row["torch_ms"][mode] = {job: torch_median_ms(torch, theirs[job], warmup, repeats)
                                     for job in JOBS}
            if mode == "strict":
                reference = {job: theirs[job]() for job in JOBS}
        torch.cuda.synchronize()
    for kernel in linear.GEMM_KERNELS:
        n = max(2, repeats // 3) if kernel in SLOW_KERNELS else repeats
        for job, fn in ours.items():
            row["ms"].setdefault(job, {})[kernel] = _selected(
                linear.use_gemm_kernel, linear.gemm_kernel, kernel,
                lambda: cuda_median_ms(fn, min(warmup, n), n))
            if job in reference:
                result = _selected(linear.use_gemm_kernel, linear.gemm_kernel, kernel, fn)
                row["error"].setdefault(job, {})[kernel] = relative_error(result, reference[job])
    return row


def bench_training_step(torch, batch, warmup, repeats, lr=0.01, momentum=0.9):
    """VGG-16 at 224x224: forward, loss, backward, SGD with momentum, on both engines."""
    cupy = backend.cupy_module()
    cupy.get_default_memory_pool().free_all_blocks()  # the layer benchmarks' arrays
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
    labels = rng.integers(0, 1000, batch)
    model = tv.models.vgg16().to("cuda")
    params = model.parameters()
    velocities = [cupy.zeros_like(p.data) for p in params]
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
    # backward costs two forwards (input and weight gradients), but the first conv's input
    # needs no gradient
    flops = 2 * (3 * convs - summary.rows[1].macs + 3 * (summary.macs - convs))
    row = dict(model="VGG-16 (torchvision)", batch=batch, input="3x224x224", flops=flops,
               kernels=dict(conv3x3=conv.conv3x3_kernel(),
                            conv3x3_weight_grad=conv.conv3x3_wgrad_kernel(),
                            gemm=linear.gemm_kernel()),
               tinyvgg_ms=cuda_median_ms(ours, warmup, repeats),
               tinyvgg_pool_bytes=cupy.get_default_memory_pool().total_bytes())
    # the closure holds the model too: drop every reference so the pool can give it back
    model = params = velocities = ours = None
    cupy.get_default_memory_pool().free_all_blocks()
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
        for mode in TORCH_MODES:
            set_torch_mode(torch, mode)
            torch.cuda.reset_peak_memory_stats()
            row[f"torch_{mode}_ms"] = torch_median_ms(torch, theirs, warmup, repeats)
            row[f"torch_{mode}_peak_bytes"] = torch.cuda.max_memory_allocated()
    return row


def cudnn_mode(kernel: str) -> str:
    """The cuDNN mode a kernel is compared with: TF32 kernels with TF32, the rest strict."""
    return "tf32" if kernel in conv.CONV3X3_TF32_KERNELS else "strict"


def ladder_totals(rows, counts, kernels_of_job):
    """Per job and kernel, the time summed over the network's layers (each shape times its
    count), next to cuDNN's in both modes."""
    totals = {}
    for job, kernels in kernels_of_job.items():
        for row, count in zip(rows, counts):
            if job not in row["jobs"]:
                continue
            t = totals.setdefault(job, {"ms": {}, "torch_ms": {}, "flops": 0})
            t["flops"] += count * row["flops"]
            for kernel in kernels:
                t["ms"][kernel] = t["ms"].get(kernel, 0.0) + count * row["ms"][job][kernel]
            for mode, times in row["torch_ms"].items():
                t["torch_ms"][mode] = t["torch_ms"].get(mode, 0.0) + count * times[job]
    return totals


def _cell(ms, flops, theirs_ms):
    return (f"{ms:.2f} ({flops / ms / 1e6:.0f}, "
            f"{_fmt(_ratio(ms, theirs_ms), '.2f')}x)")


def _worst_error(errors, mode_of, mode):
    """'2.1e-07 (tiled)': the largest error among the kernels compared with cuDNN's ``mode``."""
    worst = max(((e, k) for k, e in errors.items() if mode_of(k) == mode), default=None)
    return "-" if worst is None else f"{worst[0]:.1e} ({worst[1]})"


def _ladder_table(title, rows, kernels_of_job, mode_of, library):
    names = dict(fwd="forward", dx="input gradient", dw="weight gradient")
    lines = []
    for job, kernels in kernels_of_job.items():
        lines += ["", f"### {title}: {names[job]}", "",
                  "| layer | " + " | ".join(kernels)
                  + f" | {library} FP32 | {library} TF32 | max error FP32 | max error TF32 |",
                  "|---" * (len(kernels) + 5) + "|"]
        for r in rows:
            if job not in r["jobs"]:
                continue
            theirs = r["torch_ms"]
            cells = [_cell(r["ms"][job][k], r["flops"], theirs.get(mode_of(k), {}).get(job))
                     for k in kernels]
            errors = r["error"].get(job, {})
            lines.append(f"| {r['shape']} | " + " | ".join(cells) + " | "
                         + " | ".join(_fmt(theirs.get(m, {}).get(job), ".2f") for m in TORCH_MODES)
                         + " | " + " | ".join(_worst_error(errors, mode_of, m) for m in TORCH_MODES)
                         + " |")
    return lines


def _cudnn_version(number):
    """torch.backends.cudnn.version()'s 91900 as "9.19.0" (cuDNN 9 numbers it so)."""
    if not number:
        return "-"
    return f"{number // 10000}.{number % 10000 // 100}.{number % 100}"


def measured_kernels(kernels, rows, job):
    """Those of ``kernels`` that every row of the report timed for ``job``: a report
    written before a kernel joined its ladder is redrawn without it."""
    return [k for k in kernels
            if all(k in r["ms"].get(job, {}) for r in rows if job in r.get("jobs", [job]))]


def markdown(report):
    m = report["machine"]
    conv_jobs = {job: measured_kernels(kernels, report["convs"], job)
                 for job, kernels in (("fwd", conv.CONV3X3_KERNELS), ("dx", conv.CONV3X3_KERNELS),
                                      ("dw", conv.CONV3X3_WGRAD_KERNELS))}
    gemm_jobs = {job: measured_kernels(linear.GEMM_KERNELS, report["linears"], job)
                 for job in JOBS}
    lines = [f"# GPU benchmark: tinyvgg's kernel ladders vs PyTorch {m['torch']} + cuDNN", "",
             f"{report['device']}; CuPy {report['cupy']}; cuDNN {_cudnn_version(report['cudnn'])}; "
             f"commit {m['commit']}; {m['date']}.", "",
             f"CUDA-event medians of {report['repeats']} runs after {report['warmup']} warm-up "
             f"(naive kernels: a third of the runs). Cells: ms (GFLOP/s, ratio). Ratio = our "
             "throughput / the library's (1.0 = parity, higher is faster): FP32 kernels against "
             "strict FP32, TF32 kernels against TF32. Max error: the largest difference from "
             "the strict FP32 library result over its largest value, worst kernel."]
    peaks = report.get("peaks", {})
    if peaks:
        lines += ["", "Peaks measured in this run: " + "; ".join(
            [f"{size} float32 matrix product {peaks[f'gemm_{mode}_tflops']:.1f} TFLOP/s "
             f"({mode})" for mode, size in (("strict", "8192^3"), ("tf32", "8192^3"))
             if f"gemm_{mode}_tflops" in peaks] +
            [f"device-to-device copy {peaks['copy_gbs']:.0f} GB/s (read + written)"]) + ". "
            "A rung's share of peak divides its TFLOP/s by the matrix product's in its "
            "precision."]

    def of_peak(tflops, mode):
        peak = peaks.get(f"gemm_{mode}_tflops")
        return "-" if not peak else f"{100 * tflops / peak:.0f}%"
    for batch, totals in report["conv_totals"].items():
        rows = [r for r in report["convs"] if r["batch"] == int(batch)]
        lines += ["", f"## The conv3x3 ladder over VGG-16's 13 conv layers, batch {batch}", "",
                  "GB/s: the fewest bytes the job must move (its two inputs and its output, "
                  "each once) over its time.", "",
                  "| job | step | ms | TFLOP/s | of peak | GB/s | ratio |",
                  "|---|---|---|---|---|---|---|"]
        for job, t in totals.items():
            moved = sum(count * conv_bytes(r) for r, count in zip(rows, VGG16_CONV_COUNTS)
                        if job in r["jobs"])
            entries = [(kernel, ms, cudnn_mode(kernel), _fmt(_ratio(
                ms, t["torch_ms"].get(cudnn_mode(kernel))), '.2f')) for kernel, ms in t["ms"].items()]
            entries += [(f"cuDNN {mode}", t["torch_ms"][mode], mode, "1.00")
                        for mode in TORCH_MODES if mode in t["torch_ms"]]
            for name, ms, mode, ratio in entries:
                tflops = t["flops"] / ms / 1e9
                lines.append(f"| {job} | {name} | {ms:.1f} | {tflops:.1f} | "
                             f"{of_peak(tflops, mode)} | {moved / ms / 1e6:.0f} | {ratio} |")
    for batch in report["batches"]:
        rows = [r for r in report["convs"] if r["batch"] == batch]
        lines += _ladder_table(f"conv3x3 per layer, batch {batch}", rows, conv_jobs, cudnn_mode,
                               "cuDNN")
    if report["linears"]:
        lines += ["", "## The gemm ladder on VGG-16's fully connected layers",
                  "", "Against torch.matmul (cuBLAS); our kernels are FP32, so ratios are to "
                      "strict FP32."]
        lines += _ladder_table("linear", report["linears"], gemm_jobs, lambda kernel: "strict",
                               "cuBLAS")
    for step in report["steps"]:
        lines += ["", f"## VGG-16 training step, 224x224, batch {step['batch']}", "",
                  "Our kernels: " + ", ".join(f"{k} {v}" for k, v in step["kernels"].items()) + ".",
                  "", "| | ms / step | images / s | TFLOP/s | GPU memory |", "|---|---|---|---|---|"]
        memory = {"tinyvgg": step.get("tinyvgg_pool_bytes"),
                  "torch_strict": step.get("torch_strict_peak_bytes"),
                  "torch_tf32": step.get("torch_tf32_peak_bytes")}
        for who, key in (("tinyvgg", "tinyvgg"), ("PyTorch strict FP32", "torch_strict"),
                         ("PyTorch TF32", "torch_tf32")):
            ms = step.get(f"{key}_ms")
            if ms:
                gib = "-" if memory[key] is None else f"{memory[key] / 2 ** 30:.1f} GiB"
                lines.append(f"| {who} | {ms:.1f} | {step['batch'] / ms * 1e3:.1f} | "
                             f"{step['flops'] / ms / 1e9:.2f} | {gib} |")
        lines += ["", "GPU memory: for tinyvgg, what CuPy's memory pool holds after the timed "
                      "steps (its peak, as the pool keeps freed blocks); for PyTorch, "
                      "torch.cuda.max_memory_allocated()."]
        ours = step["tinyvgg_ms"]
        lines += ["", f"Ratio vs strict FP32: "
                      f"{_fmt(_ratio(ours, step.get('torch_strict_ms')), '.2f')}; "
                      f"vs TF32: {_fmt(_ratio(ours, step.get('torch_tf32_ms')), '.2f')}."]
    return "\n".join(lines) + "\n"


def conv_bytes(row) -> int:
    """The fewest bytes a layer's job moves: its input, weights and output, each once (float32)."""
    batch, c_in, c_out, size = row["batch"], row["c_in"], row["c_out"], row["size"]
    return 4 * (batch * size * size * (c_in + c_out) + 9 * c_in * c_out)


def plot(report, stem: Path) -> list[Path]:
    """A bar chart of the conv3x3 ladder (ms over VGG-16's 13 convolutions, per job) and a
    roofline of the layers (needs matplotlib)."""
    plt = pyplot()
    if plt is None or not report["conv_totals"]:
        return []
    written = []
    batch, totals = next(iter(report["conv_totals"].items()))
    names = {"fwd": "forward", "dx": "input gradient", "dw": "weight gradient"}
    fig, axes = plt.subplots(1, len(totals), figsize=(4.2 * len(totals), 3.6), sharey=False)
    for ax, (job, t) in zip(np.atleast_1d(axes), totals.items()):
        labels = list(t["ms"]) + [f"cuDNN {mode}" for mode in TORCH_MODES if mode in t["torch_ms"]]
        times = list(t["ms"].values()) + [t["torch_ms"][m] for m in TORCH_MODES
                                          if m in t["torch_ms"]]
        colors = ["tab:orange" if k in conv.CONV3X3_TF32_KERNELS or k == "cuDNN tf32"
                  else "tab:gray" if k.startswith("cuDNN") else "tab:blue" for k in labels]
        ax.barh(labels, times, color=colors)
        for y, ms in enumerate(times):
            ax.text(ms, y, f" {ms:.0f}", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(min(times) / 1.5, max(times) * 3)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("ms, 13 conv layers (log scale)")
        ax.set_title(names[job])
    fig.suptitle(f"conv3x3 ladder on {report['device']}, VGG-16 224x224, batch {batch} "
                 "(orange: TF32)")
    fig.tight_layout()
    written.append(save_png(fig, stem.with_name(stem.name + "-ladder.png")))

    peaks = report.get("peaks", {})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [r for r in report["convs"] if r["batch"] == int(batch)]
    intensity = [r["flops"] / conv_bytes(r) for r in rows]
    x = np.logspace(np.log10(min(intensity) / 2), np.log10(max(intensity) * 2), 100)
    for mode, style in (("strict", "k-"), ("tf32", "k--")):
        peak = peaks.get(f"gemm_{mode}_tflops")
        if peak and peaks.get("copy_gbs"):
            ax.plot(x, np.minimum(peak, x * peaks["copy_gbs"] / 1e3), style,
                    label=f"roofline: {peak:.0f} TFLOP/s ({mode}), {peaks['copy_gbs']:.0f} GB/s")
    for kernel in ("implicit-gemm", "tf32-mma"):
        ax.scatter(intensity, [r["flops"] / r["ms"]["fwd"][kernel] / 1e9 for r in rows],
                   label=f"tinyvgg {kernel}, forward")
    for mode in TORCH_MODES:
        if all(mode in r["torch_ms"] for r in rows):
            ax.scatter(intensity, [r["flops"] / r["torch_ms"][mode]["fwd"] / 1e9 for r in rows],
                       marker="x", label=f"cuDNN {mode}, forward")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte of minimal traffic)")
    ax.set_ylabel("TFLOP/s (direct-convolution FLOPs)")
    ax.set_title(f"VGG-16 conv layers on the roofline ({report['device']})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(save_png(fig, stem.with_name(stem.name + "-roofline.png")))
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[64])
    parser.add_argument("--step-batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="3 repeats, no training step")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="what to time (default: all)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"file stem for the results (default {DEFAULT_OUT}/gpu-<device>)")
    parser.add_argument("--from-json", type=Path, metavar="REPORT",
                        help="rewrite the Markdown and PNGs of a stored report (no GPU needed)")
    args = parser.parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        stem = args.from_json.with_suffix("")
        atomic_write(stem.with_suffix(".md"), markdown(report))
        for path in [stem.with_suffix(".md")] + plot(report, stem):
            print(f"wrote {path}")
        return
    if args.quick:
        args.repeats, args.warmup = 3, 1
    try:  # before the measurements, not after
        writable_folder(args.out.parent if args.out else DEFAULT_OUT)
    except FolderNotWritableError as error:
        parser.exit(2, f"bench_gpu: --out: {error}\n")
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
                  repeats=args.repeats, warmup=args.warmup,
                  batches=args.batches if "conv" in args.parts else [],
                  convs=[], linears=[], steps=[], conv_totals={},
                  peaks=measure_peaks(torch, args.warmup, args.repeats))
    print("peaks: " + ", ".join(f"{k} {v:.1f}" for k, v in report["peaks"].items()), flush=True)
    conv_jobs = {"fwd": conv.CONV3X3_KERNELS, "dx": conv.CONV3X3_KERNELS,
                 "dw": conv.CONV3X3_WGRAD_KERNELS}
    for batch in args.batches if "conv" in args.parts else []:
        rows = []
        for c_in, c_out, size in VGG16_CONV_SHAPES:
            row = bench_conv(torch, batch, c_in, c_out, size, args.warmup, args.repeats)
            rows.append(row)
            print(f"batch {batch} conv3x3 {row['shape']}: " + "; ".join(
                f"{job} " + ", ".join(f"{k} {ms:.2f}" for k, ms in row["ms"][job].items())
                + f", cuDNN {_fmt(row['torch_ms'].get('strict', {}).get(job), '.2f')} ms"
                for job in row["jobs"]), flush=True)
        report["convs"] += rows
        report["conv_totals"][str(batch)] = ladder_totals(rows, VGG16_CONV_COUNTS, conv_jobs)
    for in_features, out_features in VGG16_FC_SHAPES if "linear" in args.parts else []:
        row = bench_linear(torch, args.step_batch, in_features, out_features, args.warmup,
                           args.repeats)
        report["linears"].append(row)
        print(f"linear {row['shape']}: " + "; ".join(
            f"{job} " + ", ".join(f"{k} {ms:.2f}" for k, ms in row["ms"][job].items())
            for job in JOBS), flush=True)
    if "step" in args.parts and not args.quick:
        step = bench_training_step(torch, args.step_batch, args.warmup, args.repeats)
        report["steps"].append(step)
        print(f"VGG-16 step, batch {step['batch']}: tinyvgg {step['tinyvgg_ms']:.1f} ms, PyTorch "
              f"strict {_fmt(step.get('torch_strict_ms'), '.1f')} ms, "
              f"TF32 {_fmt(step.get('torch_tf32_ms'), '.1f')} ms", flush=True)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    stem = args.out or DEFAULT_OUT / f"gpu-{slug}"
    atomic_write(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    atomic_write(stem.with_suffix(".md"), markdown(report))
    plot(report, stem)
    print(f"wrote {stem.with_suffix('.json')}, {stem.with_suffix('.md')} and the plots")


if __name__ == "__main__":
    main()
