"""The kernel ladders measured layer by layer, beside PyTorch, and summed over VGG-16.

A ladder is an op's implementations from the simplest to the fastest, selected through
:mod:`tinyvgg.choices`. On the CPU (``conv3x3_cpu``, ``tinyvgg/ops/conv_cpu.py``) each rung
runs conv3x3 through autograd, forward and then backward, beside PyTorch's ``conv2d``; a
row per (layer, rung) holds seconds. On the GPU each conv3x3 kernel (``conv3x3_kernel``
for the forward and the input gradient, ``conv3x3_wgrad_kernel`` for the weight gradient,
``tinyvgg/ops/conv_cuda.py``) and each matrix-product kernel (``gemm_kernel``,
``tinyvgg/ops/linear.py``) runs its job alone, beside cuDNN or cuBLAS in both of PyTorch's
modes; a row per layer holds milliseconds per job and kernel. Every rung runs, the
tensor-core ones too (float32 arrays throughout): the SIMT rungs in strict float32, and
those of ``tinyvgg.ops.tensor_cores`` in TF32 ("tf32-mma", "tf32-pipelined") or 3xTF32
("3xtf32"). Whatever its precision, each rung's result is checked against strict FP32
PyTorch, the accuracy the strict and 3xTF32 rungs promise and the one TF32 gives up; which
of PyTorch's times a rung is compared with is the report's affair (``report.py``).
:func:`ladder_totals` sums either over the network, each layer shape times the number of
times VGG-16 has it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import backend, choices
from .. import functional as F
from ..models import cfgs
from ..io.fileio import atomic_write
from ..ops import conv_auto, conv_cuda, linear
from ..tensor import tensor
from .reference import FIND, TORCH_MODES, set_torch_mode, torch_for
from .timing import clock, gflops, fmt, median_seconds, ratio, time_forward_backward

BATCH = 64


def vgg16_convs(size: int) -> list[tuple[int, int, int]]:
    """VGG-16's convolutions on ``size`` x ``size`` images: (C_in, C_out, H = W), in
    network order."""
    convs, c_in = [], 3
    for v in cfgs["D"]:
        if v == "M":
            size //= 2
        else:
            convs.append((c_in, v, size))
            c_in = v
    return convs


def distinct_layers(convs):
    """(the distinct shapes in network order, how often each occurs)."""
    shapes = sorted(set(convs), key=convs.index)
    return shapes, [convs.count(shape) for shape in shapes]


#: VGG-16's convolutions at 32x32 input, in network order (the CPU ladder's layers)
VGG16_CIFAR_CONVS = vgg16_convs(32)
#: the distinct conv layers of VGG-16 at 224x224 (the GPU ladder's layers), and how often
#: each occurs in VGG-16, for sums over the network
VGG16_CONV_SHAPES, VGG16_CONV_COUNTS = distinct_layers(vgg16_convs(224))
#: VGG-16's fully connected layers: (in_features, out_features)
VGG16_FC_SHAPES = [(25088, 4096), (4096, 4096), (4096, 1000)]
#: the naive CPU loops are timed on one small layer only (a VGG-16 pass would take hours)
NAIVE_SHAPE = (1, 16, 16, 8)  # batch, C_in, C_out, H = W
#: the three jobs of a layer on the GPU: forward, input gradient, weight gradient
JOBS = ("fwd", "dx", "dw")
#: GPU rungs timed with a third of the repeats: far slower than the rest, they would take
#: the largest share of the ladders' time, and a few runs place them on their ladder as well
SLOW_KERNELS = ("naive", "reduce")
#: the GPU ladders, job -> kernels, and the choice (tinyvgg.choices) that selects each job's
GPU_CONV_KERNELS = {"fwd": conv_cuda.CONV3X3_KERNELS, "dx": conv_cuda.CONV3X3_KERNELS,
                    "dw": conv_cuda.CONV3X3_WGRAD_KERNELS}
GPU_CONV_CHOICES = {"fwd": "conv3x3_kernel", "dx": "conv3x3_kernel",
                    "dw": "conv3x3_wgrad_kernel"}
GPU_GEMM_KERNELS = {job: linear.GEMM_KERNELS for job in JOBS}
GPU_GEMM_CHOICES = {job: "gemm_kernel" for job in JOBS}


def conv_cost(batch, c_in, c_out, size, itemsize=4) -> dict:
    """FLOPs and minimal bytes (each array read or written once) of one conv3x3 layer."""
    macs = batch * size * size * c_out * c_in * 9
    x, w, y = batch * c_in * size * size, c_out * c_in * 9, batch * c_out * size * size
    needs_dx = c_in != 3  # the image needs no gradient
    return {"fwd_flops": 2 * macs, "bwd_flops": 2 * macs * (2 if needs_dx else 1),
            "fwd_bytes": itemsize * (x + w + y),
            "bwd_bytes": itemsize * (y + x + w + w + (x if needs_dx else 0))}


def conv_bytes(row) -> int:
    """The fewest bytes a layer's job moves: its input, weights and output, each once (float32)."""
    return conv_cost(row["batch"], row["c_in"], row["c_out"], row["size"])["fwd_bytes"]


def layer_arrays(batch, c_in, c_out, size, seed=0, channels_last=True, grad=False):
    """Random float32 (x, weight, bias) of one conv3x3 layer, and the output's gradient
    with ``grad``. With ``channels_last``, an x of more than 3 channels is channels-last in
    memory, as the CPU's conv outputs are (the GPU's are NCHW)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, c_in, size, size)).astype(np.float32)
    w = (rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    arrays = [x, w, b]
    if grad:
        arrays.append(rng.standard_normal((batch, c_out, size, size)).astype(np.float32))
    if channels_last and c_in > 3:
        arrays[0] = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return tuple(arrays)


def random_like(array, rng):
    """Random values in ``array``'s memory layout, as the gradient arriving in training is."""
    grad = np.empty_like(array)
    grad[...] = rng.standard_normal(array.shape)
    return grad


# --- the CPU ladder: conv3x3 through autograd, forward and backward ----------------------------

def _time_ours(name, arrays, warmup, repeats):
    with choices.using(conv3x3_cpu=name):
        x, w, b = arrays
        grad_rng = np.random.default_rng(1)
        return time_forward_backward(
            lambda: [tensor(x, requires_grad=x.shape[1] != 3), tensor(w, requires_grad=True),
                     tensor(b, requires_grad=True)], F.conv3x3,
            lambda out: random_like(out.data, grad_rng), warmup, repeats)


def _time_torch(torch, arrays, warmup, repeats):
    x, w, b = (np.ascontiguousarray(a) for a in arrays)
    return time_forward_backward(
        lambda: [torch.tensor(x, requires_grad=x.shape[1] != 3),
                 torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)],
        lambda x_, w_, b_: torch.nn.functional.conv2d(x_, w_, b_, padding=1),
        lambda out: torch.randn(out.shape), warmup, repeats)


def _cpu_conv_rows(names, c_in, c_out, size, batch, warmup, repeats, torch, log):
    arrays = layer_arrays(batch, c_in, c_out, size)
    cost = conv_cost(batch, c_in, c_out, size)
    theirs = _time_torch(torch, arrays, warmup, repeats) if torch else (None, None)
    rows = []
    for name in names:
        fwd, bwd = _time_ours(name, arrays, warmup, repeats)
        row = {"layer": f"{c_in}->{c_out} @{size}x{size}", "c_in": c_in, "c_out": c_out,
               "size": size, "batch": batch, "implementation": name,
               # how often VGG-16 has this layer (1 for a shape of one's own)
               "count": VGG16_CIFAR_CONVS.count((c_in, c_out, size)) or 1, **cost,
               "fwd_s": fwd, "bwd_s": bwd, "torch_fwd_s": theirs[0],
               "torch_bwd_s": theirs[1]}
        rows.append(row)
        log(f"  {row['layer']:<20} {name:<9} fwd {1e3 * fwd:8.2f} ms  bwd "
            f"{1e3 * bwd:8.2f} ms" + (f"   torch {1e3 * theirs[0]:7.2f} / "
                                       f"{1e3 * theirs[1]:7.2f} ms   ratio "
                                       f"{ratio(fwd + bwd, sum(theirs)):.2f}"
                                       if torch else ""))
    return rows


def bench_naive(warmup, repeats) -> dict:
    """The bottom rung of the CPU ladder: Python loops, on one small layer."""
    batch, c_in, c_out, size = NAIVE_SHAPE
    arrays = layer_arrays(batch, c_in, c_out, size)
    fwd, bwd = _time_ours("naive", arrays, min(warmup, 1), max(1, min(repeats, 3)))
    cost = conv_cost(batch, c_in, c_out, size)
    return {"layer": f"{c_in}->{c_out} @{size}x{size}", "batch": batch, **cost,
            "fwd_s": fwd, "bwd_s": bwd}


# --- the GPU ladders: each kernel on each job, against cuDNN / cuBLAS ---------------------------

def relative_error(ours, reference) -> float:
    """max |ours - reference| / max |reference|, on the GPU (CuPy arrays or torch tensors)."""
    cupy = backend.cupy_module()
    ours, reference = cupy.asarray(ours), cupy.asarray(reference)
    scale = float(cupy.abs(reference).max())
    return float(cupy.abs(ours - reference).max()) / max(scale, 1e-30)


def _time_torch_jobs(torch, row, fns, jobs, warmup, repeats) -> dict:
    """PyTorch's ms for each job in both modes into ``row["torch_ms"]``; the strict FP32
    results, the reference every kernel is checked against."""
    reference = {}
    for mode in TORCH_MODES:
        set_torch_mode(torch, mode)
        jobs_of_mode = fns()
        row["torch_ms"][mode] = {
            job: 1e3 * median_seconds(jobs_of_mode[job], warmup, repeats, clock("cuda", torch))
            for job in jobs}
        if mode == "strict":
            reference = {job: jobs_of_mode[job]() for job in jobs}
    torch.cuda.synchronize()
    return reference


def _time_kernels(row, jobs, kernels, choice_of_job, fns, reference, warmup, repeats):
    """Each kernel of ``kernels`` (job -> kernels) on its jobs: ms into ``row["ms"]``, the
    error against ``reference`` into ``row["error"]``. Jobs selected by the same choice
    (conv3x3's forward and input gradient) run kernel by kernel; the slow kernels get a
    third of the repeats, and never more warm-up runs than timed ones."""
    by_choice = {}
    for job in jobs:
        by_choice.setdefault(choice_of_job[job], []).append(job)
    cuda_clock = clock("cuda")
    for key, jobs_of_choice in by_choice.items():
        for kernel in dict.fromkeys(k for job in jobs_of_choice for k in kernels[job]):
            n = max(2, repeats // 3) if kernel in SLOW_KERNELS else repeats
            with choices.using(**{key: kernel}):
                for job in (j for j in jobs_of_choice if kernel in kernels[j]):
                    row["ms"].setdefault(job, {})[kernel] = 1e3 * median_seconds(
                        fns[job], min(warmup, n), n, cuda_clock)
                    if job in reference:
                        row["error"].setdefault(job, {})[kernel] = relative_error(
                            fns[job](), reference[job])


def bench_conv(torch, batch, c_in, c_out, size, warmup, repeats, kernels=None) -> dict:
    """Every GPU conv3x3 kernel of ``kernels`` (job -> kernels; default
    :data:`GPU_CONV_KERNELS`), and cuDNN, on one layer shape: ms, FLOPs, errors."""
    kernels = GPU_CONV_KERNELS if kernels is None else kernels
    x_host, w_host, b_host, g_host = layer_arrays(batch, c_in, c_out, size,
                                                  channels_last=False, grad=True)
    x, w, b, g = (backend.move(a, "cuda") for a in (x_host, w_host, b_host, g_host))
    # the same for each of the three jobs
    flops = conv_cost(batch, c_in, c_out, size)["fwd_flops"]
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
        reference = _time_torch_jobs(torch, row, torch_jobs, jobs, warmup, repeats)
    ours = {"fwd": lambda: conv_cuda.conv3x3_cuda(x, w, b),
            "dx": lambda: conv_cuda.conv3x3_input_grad_cuda(g, w),
            "dw": lambda: conv_cuda.conv3x3_weight_grad_cuda(x, g)}
    _time_kernels(row, jobs, kernels, GPU_CONV_CHOICES, ours, reference, warmup, repeats)
    return row


def bench_linear(torch, batch, in_features, out_features, warmup, repeats,
                 kernels=None) -> dict:
    """Every GPU gemm kernel of ``kernels`` (job -> kernels; default
    :data:`GPU_GEMM_KERNELS`), and torch.matmul, on one fully connected layer."""
    kernels = GPU_GEMM_KERNELS if kernels is None else kernels
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
        reference = _time_torch_jobs(torch, row, lambda: theirs, JOBS, warmup, repeats)
    _time_kernels(row, JOBS, kernels, GPU_GEMM_CHOICES, ours, reference, warmup, repeats)
    return row


def _kernel_times(row, jobs):
    """'fwd naive 0.31, tiled 0.22; dw ...': a GPU row's ms, for the log."""
    return [f"{job} " + ", ".join(f"{k} {ms:.2f}" for k, ms in row["ms"][job].items())
            for job in jobs]


# --- the ladders over VGG-16 ---------------------------------------------------------------

def bench_ladder(names, warmup, repeats, shapes=None, batch=BATCH, log=print, device="cpu",
                 torch=FIND) -> list[dict]:
    """The conv3x3 ladder on each layer shape (default: VGG-16's distinct convolutions, at
    32x32 on the CPU, at 224x224 on the GPU), with PyTorch's times on that shape.

    CPU: ``names``, the conv3x3_cpu implementations; one row per (shape, implementation).
    GPU: ``names``, job -> kernels (:data:`GPU_CONV_KERNELS`); one row per shape."""
    torch = torch_for(device, torch)
    if device == "cpu":
        rows = []
        for c_in, c_out, size in shapes or distinct_layers(VGG16_CIFAR_CONVS)[0]:
            rows += _cpu_conv_rows(names, c_in, c_out, size, batch, warmup, repeats, torch, log)
        return rows
    rows = []
    for c_in, c_out, size in shapes or VGG16_CONV_SHAPES:
        row = bench_conv(torch, batch, c_in, c_out, size, warmup, repeats, names)
        rows.append(row)
        log(f"batch {batch} conv3x3 {row['shape']}: " + "; ".join(
            times + f", cuDNN {fmt(row['torch_ms'].get('strict', {}).get(job), '.2f')} ms"
            for job, times in zip(row["jobs"], _kernel_times(row, row["jobs"]))))
    return rows


def bench_gemm_ladder(warmup, repeats, batch, shapes=None, log=print, torch=FIND,
                      kernels=None) -> list[dict]:
    """The GPU's matrix-product ladder on each fully connected layer (default: VGG-16's)."""
    torch = torch_for("cuda", torch)
    rows = []
    for in_features, out_features in shapes or VGG16_FC_SHAPES:
        row = bench_linear(torch, batch, in_features, out_features, warmup, repeats, kernels)
        rows.append(row)
        log(f"linear {row['shape']}: " + "; ".join(_kernel_times(row, JOBS)))
    return rows


def _weighted_sum(rows, counts, value) -> float:
    return sum(count * value(row) for row, count in zip(rows, counts))


def ladder_totals(rows, names, counts=None) -> dict:
    """Times over all of VGG-16's convolutions (each shape times its count), per step.

    CPU rows (``names``: the implementations; each row holds its count):
    ``{name: {fwd_s, bwd_s, gflops}}``, and ``"torch"`` from PyTorch's times in the first
    implementation's rows when every row has them.
    GPU rows (``names``: job -> kernels; ``counts``, one per row): per job, each kernel's ms
    and cuDNN's in each mode, ``{job: {ms: {kernel}, torch_ms: {mode}, flops}}``."""
    if isinstance(names, dict):
        return _gpu_totals(rows, counts, names)
    totals = {}
    for name in names + ["torch"]:
        key_rows = [r for r in rows if r["implementation"] == (names[0] if name == "torch"
                                                               else name)]
        if name == "torch" and any(r["torch_fwd_s"] is None for r in key_rows):
            continue
        row_counts = [r["count"] for r in key_rows]
        prefix = "torch_" if name == "torch" else ""
        fwd = _weighted_sum(key_rows, row_counts, lambda r: r[f"{prefix}fwd_s"])
        bwd = _weighted_sum(key_rows, row_counts, lambda r: r[f"{prefix}bwd_s"])
        flops = _weighted_sum(key_rows, row_counts, lambda r: r["fwd_flops"] + r["bwd_flops"])
        totals[name] = {"fwd_s": fwd, "bwd_s": bwd, "gflops": gflops(flops, fwd + bwd)}
    return totals


def _gpu_totals(rows, counts, kernels_of_job) -> dict:
    totals = {}
    for job, kernels in kernels_of_job.items():
        pairs = [(row, count) for row, count in zip(rows, counts) if job in row["jobs"]]
        if not pairs:
            continue
        job_rows, job_counts = zip(*pairs)
        totals[job] = {
            "ms": {kernel: _weighted_sum(job_rows, job_counts, lambda r: r["ms"][job][kernel])
                   for kernel in kernels},
            "torch_ms": {mode: sum(count * row["torch_ms"][mode][job] for row, count in pairs
                                   if mode in row["torch_ms"])
                         for mode in dict.fromkeys(m for row in job_rows for m in row["torch_ms"])},
            "flops": _weighted_sum(job_rows, job_counts, lambda r: r["flops"])}
    return totals


# --- the GPU auto table: the conv ladder's winners, as data -----------------------------------

#: a rung enters the auto table only with errors at float32 level against cuDNN strict FP32
AUTO_MAX_ERROR = 1e-4


def write_auto_table(rows, commit: str, path=None, device=None) -> Path:
    """Put this GPU's entries (conv_auto.table_from_rows of the conv ladder's ``rows``) into
    the auto table at ``path`` (default: kernels/auto.json), under ``device`` (default: the
    current GPU's name, as "auto" looks it up), keeping the other GPUs'; an atomic write."""
    path = Path(path) if path is not None else conv_auto.table_path()
    device = device if device is not None else conv_auto.device_name()
    table = conv_auto.read_table(conv_cuda.AUTO_KERNELS_OF_JOB, path) or dict(
        format=conv_auto.TABLE_FORMAT, devices={})
    entries = conv_auto.table_from_rows(rows, conv_cuda.AUTO_KERNELS_OF_JOB, AUTO_MAX_ERROR)
    table["devices"][device] = dict(commit=commit, batch=rows[0]["batch"] if rows else None,
                                    measured_by="benchmarks/bench_gpu.py", entries=entries)
    atomic_write(path, json.dumps(table, indent=1, sort_keys=True) + "\n")
    conv_auto.reset()
    return path
