"""The benchmark harness, for the CPU and the GPU, and ``tinyvgg bench``.

The harness, by role:

    timing.py     the timing rule (median of ``repeats`` after ``warmup``), a clock per
                  device (wall clock; CUDA events of CuPy or of PyTorch), ratios
    reference.py  PyTorch, the reference: found per device, its precision modes, its VGG-16
    machine.py    what a report was measured on: the CPU, the GPU, the commit
    peaks.py      the roofs, measured: float32 GEMM FLOP/s and copy bytes/s, per device
    ladder.py     the kernel ladders per layer beside PyTorch, and their sums over VGG-16
    step.py       the VGG-16 training step, ours and PyTorch's, and its memory
    ops.py        every op forward and backward beside PyTorch (benchmarks/bench_cpu.py)
    report.py     the JSON, the Markdown tables and the plots of any report

``benchmarks/bench_gpu.py`` and ``benchmarks/bench_cpu.py`` are command lines over them.

``tinyvgg bench`` (:func:`run`): the conv3x3 ladder and the VGG-16 training step, against
PyTorch, in one run on the CPU. Speed is shown as a ladder: each conv3x3 implementation
(``tinyvgg.ops.conv_cpu``) is timed on every convolution of VGG-16 at 32x32 (batch 64,
float32), forward and backward, beside PyTorch's ``conv2d`` (oneDNN) on the same arrays in
the same process. For each step the report gives the median time, GFLOP/s, the fraction of
the machine's peak, the layer's arithmetic intensity (FLOPs per byte of minimal traffic)
and the ratio to PyTorch (PyTorch's time / ours: above 1 we are faster). The peaks are
measured here, not quoted: a large float32 matrix product for FLOP/s and a large array
copy for bytes/s.

The end-to-end number is a VGG-16 training step (forward, loss, backward, SGD update) at
32x32, batch 64, with the ``auto`` choice (the CPU default) and with im2col everywhere,
against PyTorch, in images/s, with the step's peak resident memory.

Timing rule: median of ``repeats`` runs after ``warmup`` runs, wall clock
(``time.perf_counter``). On a shared machine absolute times are noise; the ratios, taken
seconds apart on the same data, are the numbers to read.
"""
from __future__ import annotations

from pathlib import Path

from ..io.fileio import writable_folder
from .ladder import (BATCH, GPU_CONV_KERNELS, GPU_GEMM_KERNELS, JOBS, NAIVE_SHAPE,
                     SLOW_KERNELS, VGG16_CIFAR_CONVS, VGG16_CONV_COUNTS, VGG16_CONV_SHAPES,
                     VGG16_FC_SHAPES,
                     bench_conv, bench_gemm_ladder, write_auto_table, bench_ladder, bench_linear, bench_naive,
                     conv_bytes, conv_cost, ladder_totals, relative_error)
from .machine import gpu_info, machine_info, slug
from .ops import bench_ops, op_cases
from .peaks import measure_peaks
from .reference import (TORCH_MODE_OF_PRECISION, TORCH_MODES, set_torch_mode, torch_for,
                        torch_vgg16)
from .report import (DEFAULT_OUT, markdown, measured_kernels, plot, step_ms, step_precision,
                     torch_mode_of, write_report)
from .step import (IMAGENET, bench_imagenet_step, bench_training_step, step_flops,
                   step_peak_memory)
from .timing import clock, fmt, gflops, median_seconds, ratio, time_forward_backward

__all__ = [
    "BATCH", "DEFAULT_OUT", "GPU_CONV_KERNELS", "GPU_GEMM_KERNELS", "IMAGENET", "JOBS",
    "NAIVE_SHAPE", "SLOW_KERNELS", "TORCH_MODE_OF_PRECISION", "TORCH_MODES",
    "VGG16_CIFAR_CONVS", "VGG16_CONV_COUNTS",
    "VGG16_CONV_SHAPES", "VGG16_FC_SHAPES", "bench_conv", "bench_gemm_ladder",
    "bench_imagenet_step", "bench_ladder", "bench_linear", "bench_naive", "bench_ops",
    "bench_training_step", "clock", "conv_bytes", "conv_cost", "fmt", "gflops",
    "gpu_info", "ladder_totals", "machine_info", "markdown", "measure_peaks",
    "measured_kernels", "median_seconds", "op_cases", "plot", "ratio", "relative_error", "run",
    "set_torch_mode", "slug", "step_flops", "step_ms", "step_peak_memory",
    "step_precision", "time_forward_backward", "torch_for", "torch_mode_of", "torch_vgg16",
    "write_report", "write_auto_table"]


def run(out_dir=DEFAULT_OUT, implementations=None, warmup=2, repeats=5,
        quick=False, log=print) -> dict:
    """Everything ``tinyvgg bench`` measures on the CPU; writes JSON, Markdown and PNGs into
    ``out_dir``, which is checked first (:class:`tinyvgg.fileio.FolderNotWritableError`)
    so that minutes of measurements never end with nowhere to go."""
    from ..ops.conv_cpu import CONV3X3_CPU_CHOICES
    out_dir = writable_folder(out_dir)
    names = list(implementations or [n for n in CONV3X3_CPU_CHOICES if n != "naive"])
    if quick:
        warmup, repeats = 1, 3
    report = {"machine": machine_info(), "warmup": warmup, "repeats": repeats,
              "implementations": names}
    log("measuring the machine's peaks ...")
    report["peaks"] = measure_peaks()
    log(f"  GEMM {report['peaks']['gemm_gflops']:.1f} GFLOP/s, copy "
        f"{report['peaks']['copy_gbs']:.1f} GB/s")
    log("naive loops on one small layer ...")
    report["naive"] = bench_naive(warmup, repeats)
    log("the conv3x3 ladder on VGG-16's layers ...")
    report["layers"] = bench_ladder(names, warmup, repeats, log=log)
    report["totals"] = ladder_totals(report["layers"], names)
    log("the VGG-16 training step ...")
    report["training_step"] = bench_training_step(
        warmup, repeats, implementations=[n for n in ("auto", "im2col") if n in names] or
        names[:1], memory=True)
    stem = Path(out_dir) / f"bench-cpu-{slug(report['machine']['cpu'])}-" \
                           f"{report['machine']['cores']}cores"
    written = write_report(report, stem)
    log(markdown(report))
    log("wrote " + ", ".join(str(p) for p in written))
    return report
