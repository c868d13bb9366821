"""The timing rule of every benchmark, on either device, and the numbers made of times.

A measurement is the median of ``repeats`` calls after ``warmup`` calls, in seconds
(:func:`median_seconds`). A :class:`Clock` times one call. On the CPU it is the wall clock
(``time.perf_counter``) around the call, which returns when the work is done. On the GPU
a call only queues work, so the clock records a CUDA event before and after it and waits
for the second; the warm-up calls are waited for first (a synchronisation), so that none
of their work is timed. Each library's events time its own work on its own current stream:
CuPy's time tinyvgg's kernels, PyTorch's time PyTorch's.
"""
from __future__ import annotations

import statistics
import time

from .. import backend


class Clock:
    """How one call is timed on a device: :meth:`seconds` runs it and returns its duration;
    :meth:`synchronize` waits for all work queued before."""

    def synchronize(self) -> None:
        pass

    def seconds(self, fn) -> float:
        raise NotImplementedError


class WallClock(Clock):
    """The CPU's: wall-clock time around the call."""

    def seconds(self, fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


class CupyEvents(Clock):
    """The GPU's for tinyvgg's kernels: two CUDA events on CuPy's current stream."""

    def __init__(self):
        self.cupy = backend.cupy_module()

    def synchronize(self) -> None:
        self.cupy.cuda.Device().synchronize()

    def seconds(self, fn) -> float:
        start, end = self.cupy.cuda.Event(), self.cupy.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return self.cupy.cuda.get_elapsed_time(start, end) / 1e3  # CUDA events count ms


class TorchEvents(Clock):
    """The GPU's for PyTorch's work: two CUDA events on PyTorch's current stream."""

    def __init__(self, torch):
        self.torch = torch

    def synchronize(self) -> None:
        self.torch.cuda.synchronize()

    def seconds(self, fn) -> float:
        start, end = (self.torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3  # CUDA events count ms


WALL_CLOCK = WallClock()


def clock(device: str = "cpu", torch=None) -> Clock:
    """The clock for work on ``device``: the wall clock on the CPU; on the GPU, CUDA events
    on PyTorch's stream for PyTorch's work (``torch`` given), on CuPy's for tinyvgg's."""
    if device == "cpu":
        return WALL_CLOCK
    backend.check_device(device)
    return CupyEvents() if torch is None else TorchEvents(torch)


def median_seconds(fn, warmup: int, repeats: int, clock: Clock = WALL_CLOCK) -> float:
    """Median duration of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    clock.synchronize()
    return statistics.median([clock.seconds(fn) for _ in range(repeats)])


def time_forward_backward(make_inputs, fn, make_grad, warmup: int, repeats: int,
                          clock: Clock = WALL_CLOCK):
    """(forward seconds, backward seconds) of one op; backward replays one recorded graph."""
    inputs = make_inputs()
    forward = median_seconds(lambda: fn(*inputs), warmup, repeats, clock)
    out = fn(*inputs)
    grad = make_grad(out)

    def backward():
        for t in inputs:
            if t.requires_grad:
                t.grad = None
        out.backward(grad, retain_graph=True)
    return forward, median_seconds(backward, warmup, repeats, clock)


# --- numbers made of times ------------------------------------------------------------------

def ratio(ours, theirs):
    """PyTorch's time over ours: 1.0 is parity, above 1 we are faster."""
    return theirs / ours if ours and theirs else None


def gflops(flops, seconds):
    return flops / seconds / 1e9 if flops and seconds else None


def fmt(value, spec):
    """``value`` formatted, or "-" for a number that was not measured."""
    return "-" if value is None else format(value, spec)
