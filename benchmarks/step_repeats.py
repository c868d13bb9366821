"""The VGG-16 training step (32x32, batch 64), ours then PyTorch's, several rounds in one
process: how much the step's ratio moves from one measurement to the next.

    python benchmarks/step_repeats.py                 # 4 rounds, median of 5 after 2 warm-ups
    python benchmarks/step_repeats.py --rounds 8 --repeats 7

Each round is ``tinyvgg.bench.bench_training_step`` (the step of ``tinyvgg bench``): our
step's median time, then PyTorch's on the same weights and images. Prints one line per
round and the median and spread of the ratios; writes nothing.
"""
from __future__ import annotations

import argparse
import statistics

from tinyvgg.bench import bench_training_step, machine_info
from tinyvgg.ops.conv_cpu import CONV3X3_CPU_DEFAULT


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    info = machine_info()
    print(f"{info.get('cpu')}; commit {info.get('commit')}")
    ratios = []
    for round_ in range(1, args.rounds + 1):
        result = bench_training_step(args.warmup, args.repeats)
        ours = result["tinyvgg"][CONV3X3_CPU_DEFAULT]["seconds"]
        if "torch" not in result:
            raise SystemExit("step_repeats: PyTorch is not installed, so there is no ratio")
        theirs = result["torch"]["seconds"]
        ratios.append(theirs / ours)
        print(f"round {round_}: tinyvgg {ours * 1e3:.1f} ms, PyTorch {theirs * 1e3:.1f} ms, "
              f"ratio {ratios[-1]:.3f}x")
    print(f"ratio: median {statistics.median(ratios):.3f}x, "
          f"min {min(ratios):.3f}x, max {max(ratios):.3f}x over {len(ratios)} rounds")


if __name__ == "__main__":
    main()
