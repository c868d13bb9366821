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

The measurements and the report are the harness's (``tinyvgg.bench``); this script is
their command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinyvgg.bench import (DEFAULT_OUT, bench_imagenet_step, bench_ops, bench_training_step,
                           machine_info, ratio, slug, step_ms, torch_for, write_report)
from tinyvgg.io.fileio import FolderNotWritableError, writable_folder


def log(message):
    print(message, flush=True)


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
    if torch_for("cpu") is None:
        print("PyTorch is not installed: timing tinyvgg alone (pip install torch for the "
              "comparison)", file=sys.stderr)
    report = dict(machine=machine_info(), repeats=args.repeats, warmup=args.warmup)
    report["ops"] = [] if args.no_ops else bench_ops(args.warmup, args.repeats, log=log)
    report["training_step"] = bench_training_step(args.warmup, args.repeats)
    if not args.no_imagenet:
        report["imagenet_step"] = bench_imagenet_step(args.warmup, args.repeats)
    for key in ("training_step", "imagenet_step"):
        if key in report:
            step = report[key]
            ours, theirs = step_ms(step)
            log(f"{step['model']}, {step['input']}, batch {step['batch']}: tinyvgg "
                f"{ours:.1f} ms" + (f", PyTorch {theirs:.1f} ms, ratio "
                                    f"{ratio(ours, theirs):.2f}"
                                    if theirs is not None else ""))
    machine = f"{slug(report['machine']['cpu'])}-{report['machine']['cores']}cores"
    stem = args.out or DEFAULT_OUT / f"cpu-{machine}"
    write_report(report, stem, plots=False)
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
