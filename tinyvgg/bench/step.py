"""The end-to-end number: a VGG-16 training step (forward, loss, backward, SGD update),
ours against PyTorch's on the same images, on either device.

On the CPU (``tinyvgg bench``: 32x32, batch 64; ``benchmarks/bench_cpu.py`` also the full
VGG-16 at 224x224) each conv3x3 implementation is timed, with the step's peak resident
memory measured in a fresh process. On the GPU (``benchmarks/bench_gpu.py``: 224x224, SGD
with momentum) the kernels selected at the time run, with the GPU memory each framework
holds. Both frameworks start from the same weights (PyTorch's initialisation, seeded)
when PyTorch is installed.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from .. import backend, choices
from .. import functional as F
from ..models import vgg16
from ..ops.conv_cpu import CONV3X3_CPU_DEFAULT
from ..ops.sgd import sgd_step_
from ..tensor import tensor
from ..tools.summary import vgg_summary
from .ladder import BATCH
from .reference import FIND, TORCH_MODES, set_torch_mode, torch_for, torch_vgg16
from .timing import clock, median_seconds

#: the full torchvision VGG-16 on ImageNet-size images
IMAGENET = dict(head="imagenet", size=224, num_classes=1000)


def step_flops(head="compact", batch=BATCH, size=32, num_classes=10) -> int:
    """FLOPs of a training step: forward, and twice that for backward, except that the
    first convolution computes no input gradient."""
    table = vgg_summary("D", (batch, 3, size, size), head=head, num_classes=num_classes)
    convs = sum(r.macs for r in table.rows if r.kind.startswith("conv"))
    first = table.rows[1].macs
    return 2 * (3 * convs - first + 3 * (table.macs - convs))


def _training_step(framework, implementation=None, head="compact", batch=BATCH, size=32,
                   num_classes=10, lr=0.01, momentum=None, seed=0, device="cpu", torch=FIND):
    """A function running one VGG-16 training step in ``framework`` ("tinyvgg" or
    "torch") on ``device``, on fixed images: forward, loss, backward and an SGD update
    (``lr=None``: none; with ``momentum``, SGD with momentum, PyTorch's through its
    optimiser). ``implementation``: the conv3x3 CPU implementation our step selects
    (default: the one selected when it runs)."""
    torch = torch_for(device, torch)
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    labels = rng.integers(0, num_classes, batch)
    if torch is not None:
        torch.manual_seed(seed)
        reference = torch_vgg16(head, num_classes)
    if framework == "torch":
        reference = reference.to(device)
        x, y = torch.as_tensor(images, device=device), torch.as_tensor(labels, device=device)
        optimiser = None if lr is None or not momentum else torch.optim.SGD(
            reference.parameters(), lr=lr, momentum=momentum)
        zero_grad = reference.zero_grad if optimiser is None else optimiser.zero_grad

        def theirs():
            loss = torch.nn.functional.cross_entropy(reference(x), y)
            zero_grad()
            loss.backward()
            if optimiser is not None:
                optimiser.step()
            elif lr is not None:
                with torch.no_grad():
                    for p in reference.parameters():
                        p -= lr * p.grad
        return theirs
    model = vgg16(head=head, num_classes=num_classes)
    if torch is not None:
        model.load_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()})
        reference = None
    model = model.to(device)
    params = model.parameters()
    velocities = [backend.array_module(p.data).zeros_like(p.data) for p in params] \
        if momentum else None
    first = [True]
    # on the CPU each step takes a new tensor of the batch, as a loader hands one over; on
    # the GPU the batch stays on the device, so that no host-to-device copy is timed
    on_device = None if device == "cpu" else tensor(images, device=device)
    labels = backend.move(labels, device)
    selection = {} if implementation is None else {"conv3x3_cpu": implementation}

    def ours():
        with choices.using(**selection):
            x = tensor(images) if on_device is None else on_device
            loss = F.cross_entropy(model(x), labels)
            model.zero_grad()
            loss.backward()
        if lr is None:
            return
        if momentum:
            for p, v in zip(params, velocities):
                sgd_step_(p.data, p.grad, v, lr, momentum=momentum, first_step=first[0])
            first[0] = False
        else:
            for p in params:
                p.data -= lr * p.grad
    return ours


# --- peak memory of a step on the CPU -------------------------------------------------------

def _high_water_bytes():
    """This process's peak resident memory (VmHWM on Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def step_peak_memory(framework: str, implementation: str = CONV3X3_CPU_DEFAULT,
                     batch: int = BATCH, size: int = 32):
    """Peak resident memory added by two VGG-16 training steps on the CPU, measured in a
    fresh process (so neither framework's cached or retained memory from earlier work
    counts): the high-water mark after the steps minus the one before them. None where
    the operating system does not report it."""
    code = ("import sys, json; from tinyvgg.bench.step import _step_peak_child; "
            f"print(json.dumps(_step_peak_child({framework!r}, {implementation!r}, "
            f"{batch}, {size})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"step_peak_memory: the measuring process failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _step_peak_child(framework, implementation, batch, size):
    step = _training_step(framework, implementation, batch=batch, size=size)
    before = _high_water_bytes()
    step()
    step()
    after = _high_water_bytes()
    return None if before is None or after is None else after - before


# --- the step's report ------------------------------------------------------------------------

def bench_training_step(warmup, repeats, head="compact", batch=BATCH, size=32, num_classes=10,
                        lr=0.01, implementations=(CONV3X3_CPU_DEFAULT,), memory=False,
                        device="cpu", momentum=None, torch=FIND) -> dict:
    """The step's median time in tinyvgg and in PyTorch, on the same images.

    CPU: one time per conv3x3 implementation of ``implementations``, in seconds, and with
    ``memory`` each one's peak resident memory from a fresh process. GPU: the kernels
    selected now (``implementations`` is not used), in ms, with each framework's GPU memory
    measured both ways: the peak in use by live arrays (ours: ``gpu_peak_bytes_in_use``),
    and what its allocator holds (CuPy's pool, PyTorch's caching allocator)."""
    torch = torch_for(device, torch)
    options = dict(head=head, batch=batch, size=size, num_classes=num_classes, lr=lr,
                   momentum=momentum, device=device, torch=torch)
    flops = step_flops(head, batch, size, num_classes)
    if device == "cpu":
        return _cpu_step(warmup, repeats, implementations, memory, flops, options)
    return _gpu_step(warmup, repeats, flops, options)


def model_name(head, num_classes) -> str:
    head_name = "torchvision head 25088-4096-4096" if head == "imagenet" else "head 512-512"
    return f"VGG-16 ({head_name}-{num_classes})"


def _cpu_step(warmup, repeats, implementations, memory, flops, options) -> dict:
    batch, size, torch = options["batch"], options["size"], options["torch"]
    result = dict(model=model_name(options["head"], options["num_classes"]), batch=batch,
                  input=f"3x{size}x{size}", dtype="float32", sgd_update=options["lr"] is not None,
                  approx_flops=flops, tinyvgg={})
    for name in implementations:
        seconds = median_seconds(_training_step("tinyvgg", name, **options), warmup, repeats)
        result["tinyvgg"][name] = {
            "seconds": seconds, "images_per_s": batch / seconds,
            "peak_bytes": step_peak_memory("tinyvgg", name, batch, size) if memory
            else None}
    if torch is not None:
        seconds = median_seconds(_training_step("torch", **options), warmup, repeats)
        result["torch"] = {"seconds": seconds, "images_per_s": batch / seconds,
                           "peak_bytes": step_peak_memory("torch", batch=batch, size=size)
                           if memory else None}
    return result


# --- GPU memory of a step: peak in use, and what the allocator holds ------------------------

def gpu_peak_bytes_in_use(step) -> int:
    """The most GPU memory that live CuPy arrays held at once while ``step()`` ran: the
    bytes CuPy's memory pool has handed out and not taken back, followed allocation by
    allocation with a memory hook (CuPy's counterpart of
    torch.cuda.max_memory_allocated). The pool's total_bytes() is the other measure, the
    counterpart of torch.cuda.max_memory_reserved: it also counts the freed blocks the
    pool keeps for reuse."""
    cupy = backend.cupy_module()
    pool = cupy.get_default_memory_pool()

    class PeakInUse(cupy.cuda.MemoryHook):
        name = "tinyvgg_peak_bytes_in_use"

        def __init__(self):
            super().__init__()
            self.in_use = self.peak = pool.used_bytes()

        def malloc_postprocess(self, **allocation):
            self.in_use += allocation["mem_size"]
            self.peak = max(self.peak, self.in_use)

        def free_postprocess(self, **allocation):
            self.in_use -= allocation["mem_size"]

    cupy.cuda.Device().synchronize()
    with PeakInUse() as hook:
        step()
        cupy.cuda.Device().synchronize()
    return hook.peak


def _gpu_step(warmup, repeats, flops, options) -> dict:
    batch, size, torch = options["batch"], options["size"], options["torch"]
    cupy = backend.cupy_module()
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()  # the layer benchmarks' arrays
    ours = _training_step("tinyvgg", **options)
    # the label GPU reports have always given the torchvision model
    name = "VGG-16 (torchvision)" if options["head"] == "imagenet" else \
        model_name(options["head"], options["num_classes"])
    row = dict(model=name, batch=batch, input=f"3x{size}x{size}", flops=flops,
               kernels=dict(conv3x3=choices.selected("conv3x3_kernel"),
                            conv3x3_weight_grad=choices.selected("conv3x3_wgrad_kernel"),
                            gemm=choices.selected("gemm_kernel")),
               tinyvgg_ms=1e3 * median_seconds(ours, warmup, repeats, clock("cuda")),
               tinyvgg_pool_bytes=pool.total_bytes())
    row["tinyvgg_peak_bytes"] = gpu_peak_bytes_in_use(ours)  # one more step, untimed
    # the closure holds the model: drop it so that the pool can give its memory back
    ours = None
    pool.free_all_blocks()
    if torch is not None:
        theirs = _training_step("torch", **options)
        for mode in TORCH_MODES:
            set_torch_mode(torch, mode)
            torch.cuda.empty_cache()   # as our pool is emptied: each mode's own reserve
            torch.cuda.reset_peak_memory_stats()
            row[f"torch_{mode}_ms"] = 1e3 * median_seconds(theirs, warmup, repeats,
                                                           clock("cuda", torch))
            row[f"torch_{mode}_peak_bytes"] = torch.cuda.max_memory_allocated()
            row[f"torch_{mode}_reserved_bytes"] = torch.cuda.max_memory_reserved()
    return row


def bench_imagenet_step(warmup, repeats) -> dict:
    """Forward and backward of the full VGG-16 (138M parameters) on two 224x224 images."""
    return bench_training_step(warmup, repeats, batch=2, lr=None, **IMAGENET)
