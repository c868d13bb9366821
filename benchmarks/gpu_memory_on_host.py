"""The GPU training step's memory as our host code allocates it, on a machine without a GPU.

    python benchmarks/gpu_memory_on_host.py                      # VGG-16, 224x224, batch 64
    python benchmarks/gpu_memory_on_host.py --batch 8 conv3x3_kernel=winograd4x4
    python benchmarks/gpu_memory_on_host.py --out benchmarks/results/gpu-memory-on-host

The step of ``benchmarks/bench_gpu.py`` (torchvision's VGG-16, SGD with momentum) runs its
GPU code paths with the "cuda" device of the host emulator (``tests/host_cuda``) and every
kernel launch skipped: each GPU array is a NumPy array the step allocates but, mostly,
never writes, so the run takes seconds and little real memory, and ``tracemalloc`` counts
every array as CuPy's pool would hand it out. Prints the memory held between steps
(weights, velocities, gradients, the batch) and the peak in use during the second step:
what ``bench_gpu.py`` measures on a GPU as "peak in use". Not counted: what the pool
keeps of freed blocks (the allocator's hold), cuBLAS/cuRAND workspaces, and the
pool's rounding of each block to 512 bytes. ``KEY=NAME`` arguments select kernels as
``tinyvgg.choices.use`` does. ``--out STEM`` also writes STEM.json and STEM.md, with the
machine and the commit.
"""
from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import host_cuda  # noqa: E402  (the emulator's "cuda" device)

from tinyvgg import choices, cuda  # noqa: E402
from tinyvgg.bench import machine_info  # noqa: E402
from tinyvgg.io.fileio import atomic_write  # noqa: E402
from tinyvgg.bench.step import IMAGENET, _training_step  # noqa: E402

GIB = 2 ** 30


def step_memory(batch: int, size: int, head: str, num_classes: int, kernels: dict) -> dict:
    """{"held": bytes between steps, "peak": the most in use during a step}."""
    patch = pytest.MonkeyPatch()
    try:
        host_cuda.emulated_device(patch)
        patch.setattr(cuda, "launch", lambda *args, **kwargs: None)
        tracemalloc.start()
        # the arrays hold whatever memory held before: sums over them may overflow
        with choices.using(**kernels), np.errstate(all="ignore"):
            step = _training_step("tinyvgg", head=head, size=size, num_classes=num_classes,
                                  batch=batch, lr=0.01, momentum=0.9, device="cuda",
                                  torch=None)
            step()   # the first step makes the gradients
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            step()
            peak = tracemalloc.get_traced_memory()[1]
        return {"held": held, "peak": peak}
    finally:
        tracemalloc.stop()
        patch.undo()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=IMAGENET["size"])
    parser.add_argument("--head", default=IMAGENET["head"], choices=("imagenet", "compact"))
    parser.add_argument("--classes", type=int, default=IMAGENET["num_classes"])
    parser.add_argument("--out", type=Path, help="also write OUT.json and OUT.md")
    parser.add_argument("kernels", nargs="*", metavar="KEY=NAME",
                        help="kernel selections, e.g. conv3x3_kernel=winograd4x4")
    args = parser.parse_args(argv)
    kernels = {}
    for item in args.kernels:
        key, sep, name = item.partition("=")
        if not sep:
            parser.error(f"expected KEY=NAME (conv3x3_kernel=winograd4x4), got {item!r}")
        kernels[key] = name
    memory = step_memory(args.batch, args.size, args.head, args.classes, kernels)
    chosen = ", ".join(f"{k} {v}" for k, v in kernels.items()) or "the default kernels"
    line = (f"VGG-16 ({args.head} head), {args.size}x{args.size}, batch {args.batch}, "
            f"{chosen}: held between steps {memory['held'] / GIB:.2f} GiB, "
            f"peak in use during a step {memory['peak'] / GIB:.2f} GiB")
    print(line)
    if args.out is not None:
        machine = machine_info()
        command = "python benchmarks/gpu_memory_on_host.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        atomic_write(args.out.with_suffix(".json"), json.dumps(dict(
            machine=machine, command=command, batch=args.batch, size=args.size,
            head=args.head, num_classes=args.classes, kernels=kernels,
            held_bytes=memory["held"], peak_bytes=memory["peak"]), indent=1) + "\n")
        atomic_write(args.out.with_suffix(".md"), "\n".join([
            "# The GPU step's memory, as the host code allocates it (no GPU)", "",
            f"Commit {machine['commit']}, {machine['date']}, on {machine.get('cpu')}: "
            "the step's GPU code paths with every kernel launch skipped, each array "
            "counted by tracemalloc (see the script's docstring for what is not "
            "counted). Not a measurement on a GPU.", "", f"    {command}", "", line, ""]))
    return memory


if __name__ == "__main__":
    main()
