"""The GPU training step's memory as our host code allocates it, on a machine without a GPU.

    python benchmarks/gpu_memory_on_host.py                      # VGG-16, 224x224, batch 64
    python benchmarks/gpu_memory_on_host.py --batch 8 conv3x3_kernel=winograd4x4
    python benchmarks/gpu_memory_on_host.py --out benchmarks/results/gpu-memory-on-host

The step of ``benchmarks/bench_gpu.py`` (torchvision's VGG-16, SGD with momentum) runs its
GPU code paths with the "cuda" device of the host emulator (``tests/host_cuda``) and every
kernel launch skipped: each GPU array is a NumPy array the step allocates but, mostly,
never writes, so three steps take seconds and little real memory. Every such array is
handed to a model of CuPy's memory pool when it is made, and back when it is freed, in
the order the step does it. The model follows CuPy's SingleDeviceMemoryPool: sizes
rounded up to 512 bytes; a request takes a free chunk from the smallest size that fits,
the rest split off and left free; a freed chunk merges with free neighbours cut from
the same cudaMalloc; and when nothing fits, a new cudaMalloc of the rounded size.

It prints what ``bench_gpu.py`` measures on a GPU: the peak in use during a step, and
what the pool holds after the steps (its total, the freed blocks it keeps included),
with the memory held between steps (weights, velocities, gradients, the batch). Checked
against a GPU: at commit 443bfb0 the model gives a pool of 11.47 GiB, and the H100 run
of that commit measured 11.4 GiB. Not counted: cuBLAS and cuRAND workspaces, and
temporaries inside CuPy's own functions. ``KEY=NAME`` arguments select kernels as
``tinyvgg.choices.use`` does. ``--out STEM`` also writes STEM.json and STEM.md, with
the machine and the commit.
"""
from __future__ import annotations

import argparse
import bisect
import json
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import host_cuda  # noqa: E402  (the emulator's "cuda" device)

from tinyvgg import choices, cuda  # noqa: E402
from tinyvgg.bench import machine_info  # noqa: E402
from tinyvgg.bench.step import IMAGENET, _training_step  # noqa: E402
from tinyvgg.io.fileio import atomic_write  # noqa: E402

GIB = 2 ** 30
STEPS = 3       # the pool's total settles in the first; the others check that it has


class Chunk:
    """A piece of one cudaMalloc: its size, its neighbours in that block, free or not."""
    __slots__ = ("size", "before", "after", "free")

    def __init__(self, size: int):
        self.size, self.before, self.after, self.free = size, None, None, False


class PoolModel:
    """CuPy's memory pool for one device and stream, as far as its sizes go."""
    UNIT = 512

    def __init__(self):
        self.free_chunks = {}      # size -> the free chunks of that size
        self.free_sizes = []       # the sizes with free chunks, ascending
        self.total = self.in_use = self.peak_in_use = 0

    def _add_free(self, chunk: Chunk) -> None:
        chunk.free = True
        if not self.free_chunks.get(chunk.size):
            self.free_chunks[chunk.size] = []
            bisect.insort(self.free_sizes, chunk.size)
        self.free_chunks[chunk.size].append(chunk)

    def _take_free(self, chunk: Chunk) -> None:
        self.free_chunks[chunk.size].remove(chunk)
        if not self.free_chunks[chunk.size]:
            self.free_sizes.remove(chunk.size)
        chunk.free = False

    def malloc(self, nbytes: int) -> Chunk:
        size = -(-max(nbytes, 1) // self.UNIT) * self.UNIT
        fits = bisect.bisect_left(self.free_sizes, size)
        if fits < len(self.free_sizes):
            chunk = self.free_chunks[self.free_sizes[fits]][-1]
            self._take_free(chunk)
            if chunk.size > size:            # split: the rest stays free
                rest = Chunk(chunk.size - size)
                rest.before, rest.after = chunk, chunk.after
                if chunk.after is not None:
                    chunk.after.before = rest
                chunk.after, chunk.size = rest, size
                self._add_free(rest)
        else:                                # a new cudaMalloc
            chunk = Chunk(size)
            self.total += size
        self.in_use += size
        self.peak_in_use = max(self.peak_in_use, self.in_use)
        return chunk

    def free(self, chunk: Chunk) -> None:
        self.in_use -= chunk.size
        if chunk.after is not None and chunk.after.free:      # merge with the next piece
            self._take_free(chunk.after)
            self._join(chunk, chunk.after)
        if chunk.before is not None and chunk.before.free:    # and with the one before
            self._take_free(chunk.before)
            chunk = self._join(chunk.before, chunk)
        self._add_free(chunk)

    @staticmethod
    def _join(first: Chunk, second: Chunk) -> Chunk:
        """first grown over second, the piece right after it in their cudaMalloc."""
        first.size += second.size
        first.after = second.after
        if second.after is not None:
            second.after.before = first
        return first


class DeviceAllocations:
    """Hands every GPU array of the emulated device to a PoolModel when its memory is
    made, and back when that memory is freed (each buffer once, however many views)."""

    def __init__(self, pool: PoolModel):
        self.pool = pool
        self.live = {}     # id(buffer) -> (weak reference, chunk)

    def see(self, array) -> None:
        buffer = array
        while isinstance(buffer.base, np.ndarray):
            buffer = buffer.base
        known = self.live.get(id(buffer))
        if known is not None and known[0]() is buffer:
            return
        chunk = self.pool.malloc(buffer.nbytes)
        self.live[id(buffer)] = (weakref.ref(buffer), chunk)
        weakref.finalize(buffer, self._freed, id(buffer), chunk)

    def _freed(self, key, chunk) -> None:
        self.pool.free(chunk)
        if key in self.live and self.live[key][1] is chunk:
            del self.live[key]


def step_memory(batch: int, size: int, head: str, num_classes: int, kernels: dict) -> dict:
    """{"held": bytes in use between steps, "peak": the most in use during a step,
    "pool": what the pool holds after the steps}."""
    pool = PoolModel()
    allocations = DeviceAllocations(pool)
    patch = pytest.MonkeyPatch()
    try:
        host_cuda.emulated_device(patch)
        patch.setattr(cuda, "launch", lambda *args, **kwargs: None)
        patch.setattr(host_cuda.DeviceArray, "__array_finalize__",
                      lambda array, _: allocations.see(array), raising=False)
        # the arrays hold whatever memory held before: sums over them may overflow
        with choices.using(**kernels), np.errstate(all="ignore"):
            step = _training_step("tinyvgg", head=head, size=size, num_classes=num_classes,
                                  batch=batch, lr=0.01, momentum=0.9, device="cuda",
                                  torch=None)
            peak = 0
            for _ in range(STEPS):
                pool.peak_in_use = pool.in_use
                step()
                peak = max(peak, pool.peak_in_use)
            held = pool.in_use
        return {"held": held, "peak": peak, "pool": pool.total}
    finally:
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
            f"{chosen}: in use between steps {memory['held'] / GIB:.2f} GiB, "
            f"peak in use during a step {memory['peak'] / GIB:.2f} GiB, "
            f"held by the pool {memory['pool'] / GIB:.2f} GiB")
    print(line)
    if args.out is not None:
        machine = machine_info()
        command = "python benchmarks/gpu_memory_on_host.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        atomic_write(args.out.with_suffix(".json"), json.dumps(dict(
            machine=machine, command=command, batch=args.batch, size=args.size,
            head=args.head, num_classes=args.classes, kernels=kernels,
            held_bytes=memory["held"], peak_bytes=memory["peak"],
            pool_bytes=memory["pool"]), indent=1) + "\n")
        atomic_write(args.out.with_suffix(".md"), "\n".join([
            "# The GPU step's memory, as the host code allocates it (no GPU)", "",
            f"Commit {machine['commit']}, {machine['date']}, on {machine.get('cpu')}: "
            "the step's GPU code paths with every kernel launch skipped, each array "
            "handed to a model of CuPy's memory pool (see the script's docstring for "
            "the model and what it does not count). Not a measurement on a GPU.", "",
            f"    {command}", "", line, ""]))
    return memory


if __name__ == "__main__":
    main()
