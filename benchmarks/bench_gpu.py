"""GPU benchmark: every step of our kernel ladders against PyTorch + cuDNN, in the same run.

For each distinct conv layer of VGG-16 at 224x224 (batch 64 by default), every
conv3x3 forward kernel (``tinyvgg.ops.conv_cuda.CONV3X3_KERNELS``: naive, tiled,
register, implicit-gemm, tf32-mma, winograd4x4, tile128, tf32-pipelined, 3xtf32) is
timed on the forward pass and on the input gradient (the same kernel on the turned
weights; not for the first layer, whose input needs no gradient), and every
weight-gradient kernel (``CONV3X3_WGRAD_KERNELS``: reduce, implicit-gemm, winograd4x4,
tile128, tf32-pipelined, 3xtf32) on dL/dw. cuDNN does the same three jobs through
``torch.nn.functional.conv2d`` and ``torch.ops.aten.convolution_backward``,
once in strict FP32 (``torch.backends.cudnn.allow_tf32 = False``,
``torch.backends.cuda.matmul.allow_tf32 = False``) and once with TF32
allowed. Then the matrix-product ladder (``tinyvgg.ops.linear.GEMM_KERNELS``: naive,
tiled, register, warptile, tf32-pipelined, 3xtf32) on VGG-16's three fully connected
layers (forward, input and weight gradients) against ``torch.matmul``, and the whole
VGG-16 training step at 224x224 with each setting of :data:`STEP_KERNELS` (the kernels
selected at the time, defaults or the TINYVGG_*_KERNEL environment variables, and named
rungs).

Times are CUDA-event medians of ``--repeats`` runs after ``--warmup`` (the
slow rungs, ``tinyvgg.bench.SLOW_KERNELS``, get a third of the repeats); GFLOP/s counts
2 FLOPs per multiply-add. Each rung computes in one of three precisions
(``tinyvgg.ops.tensor_cores.precision``): strict FP32 (the SIMT rungs), 3xTF32 ("3xtf32")
or TF32 ("tf32-mma", "tf32-pipelined"). The ratio is our throughput over the library's
(1.0 = parity, higher is faster) in the mode of the rung's precision: strict FP32 and
3xTF32 rungs against strict FP32 cuDNN / cuBLAS (3xTF32 promises float32's accuracy),
TF32 rungs against TF32; a training step against PyTorch in its least accurate kernel's
precision. Every rung's result is also compared with strict FP32 cuDNN's / cuBLAS's (the
``error`` fields: largest difference over the largest value), whatever its precision, so
a fast wrong kernel shows and 3xTF32's accuracy is checked.

    python benchmarks/bench_gpu.py             # writes runs/bench/gpu-<device>.{json,md}
    python benchmarks/bench_gpu.py --out benchmarks/results/gpu-<device>   # the committed results
    python benchmarks/bench_gpu.py --quick     # 3 repeats, no training step
    python benchmarks/bench_gpu.py --parts step --out /tmp/step   # the training step alone

The measurements, the report and its plots are the harness's (``tinyvgg.bench``); this
script is the GPU's command line over it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinyvgg import backend, choices
from tinyvgg.bench import (DEFAULT_OUT, GPU_CONV_KERNELS, IMAGENET, SLOW_KERNELS,
                           VGG16_CONV_COUNTS, bench_gemm_ladder, bench_ladder,
                           bench_training_step, fmt, gpu_info, ladder_totals, machine_info,
                           measure_peaks, slug, step_precision, torch_for, write_auto_table,
                           write_report)
from tinyvgg.io.fileio import FolderNotWritableError, writable_folder

PARTS = ("conv", "linear", "step")  # the per-layer conv ladder, the gemm ladder, the VGG step
#: the VGG-16 step with the default kernels (first: benchmarks/bench_allreduce.py reads it),
#: with the 128 x 128 tile rungs (the ReLUs fused into the convolutions' loads and stores),
#: with "auto" (the table this run wrote), and on the pipelined tensor-core tile in 3xTF32
#: (against strict FP32 PyTorch) and in TF32 (against PyTorch's TF32)
STEP_KERNELS = ({},
                dict(conv3x3_kernel="tile128", conv3x3_wgrad_kernel="tile128",
                     gemm_kernel="warptile"),
                dict(conv3x3_kernel="auto", conv3x3_wgrad_kernel="auto", gemm_kernel="warptile"),
                dict(conv3x3_kernel="3xtf32", conv3x3_wgrad_kernel="3xtf32", gemm_kernel="3xtf32"),
                dict(conv3x3_kernel="tf32-pipelined", conv3x3_wgrad_kernel="tf32-pipelined",
                     gemm_kernel="tf32-pipelined"))


def log(message):
    print(message, flush=True)


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
    parser.add_argument("--auto-table", type=Path, default=None, metavar="PATH",
                        help="where the conv ladder's winners per layer and job go, the "
                             "table the GPU 'auto' rungs read (default: kernels/auto.json)")
    parser.add_argument("--from-json", type=Path, metavar="REPORT",
                        help="rewrite the Markdown and PNGs of a stored report (no GPU needed)")
    args = parser.parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        for path in write_report(report, args.from_json.with_suffix(""), data=False):
            print(f"wrote {path}")
        return
    if args.quick:
        args.repeats, args.warmup = 3, 1
    try:  # before the measurements, not after
        writable_folder(args.out.parent if args.out else DEFAULT_OUT)
    except FolderNotWritableError as error:
        parser.exit(2, f"bench_gpu: --out: {error}\n")
    try:
        backend.cupy_module()
    except backend.DeviceUnavailableError as error:
        parser.exit(2, f"bench_gpu: {error}\n")
    torch = torch_for("cuda")
    if torch is None:
        print("PyTorch with CUDA is not available: timing tinyvgg alone", file=sys.stderr)
    report = dict(machine=machine_info(), **gpu_info(torch),
                  repeats=args.repeats, warmup=args.warmup, slow_kernels=list(SLOW_KERNELS),
                  batches=args.batches if "conv" in args.parts else [],
                  convs=[], linears=[], steps=[], conv_totals={},
                  peaks=measure_peaks(args.repeats, args.warmup, device="cuda", torch=torch))
    log("peaks: " + ", ".join(f"{k} {v:.1f}" for k, v in report["peaks"].items()))
    stem = args.out or DEFAULT_OUT / f"gpu-{slug(report['device'])}"

    def save_so_far():
        """The JSON and Markdown of every part measured so far (the plots at the end): a
        run cut off by a time limit keeps what it measured."""
        write_report(report, stem, plots=False)
    for batch in args.batches if "conv" in args.parts else []:
        rows = bench_ladder(GPU_CONV_KERNELS, args.warmup, args.repeats, batch=batch, log=log,
                            device="cuda", torch=torch)
        report["convs"] += rows
        report["conv_totals"][str(batch)] = ladder_totals(rows, GPU_CONV_KERNELS,
                                                          VGG16_CONV_COUNTS)
        if batch == args.batches[0] and not args.quick:
            path = write_auto_table(rows, report["machine"]["commit"], args.auto_table)
            log(f"wrote the conv3x3 auto table for this GPU to {path}")
        save_so_far()
    if "linear" in args.parts:
        report["linears"] += bench_gemm_ladder(args.warmup, args.repeats, args.step_batch,
                                               log=log, torch=torch)
        save_so_far()
    for kernels in STEP_KERNELS if "step" in args.parts and not args.quick else []:
        with choices.using(**kernels):
            step = bench_training_step(args.warmup, args.repeats, batch=args.step_batch,
                                       momentum=0.9, device="cuda", torch=torch, **IMAGENET)
        report["steps"].append(step)
        log(f"VGG-16 step, batch {step['batch']}, {step['kernels']} "
            f"({step_precision(step['kernels'].values())}): tinyvgg "
            f"{step['tinyvgg_ms']:.1f} ms, PyTorch strict "
            f"{fmt(step.get('torch_strict_ms'), '.1f')} ms, "
            f"TF32 {fmt(step.get('torch_tf32_ms'), '.1f')} ms")
        save_so_far()
    write_report(report, stem)
    print(f"wrote {stem.with_suffix('.json')}, {stem.with_suffix('.md')} and the plots")


if __name__ == "__main__":
    main()
