"""The roofs of the roofline, measured on the machine of the run rather than quoted: a
large float32 matrix product for FLOP/s and a large array copy for bytes/s."""
from __future__ import annotations

import numpy as np

from .. import backend
from .reference import FIND, TORCH_MODES, set_torch_mode, torch_for
from .timing import clock, median_seconds

#: (side of the float32 matrix product, bytes copied) per device: the copy far beyond the
#: CPU's caches, and both large enough to keep a GPU busy
PEAK_SIZES = {"cpu": (2048, 2 ** 27), "cuda": (8192, 2 ** 30)}


def measure_peaks(repeats: int = 5, warmup: int = 1, device: str = "cpu", torch=FIND,
                  size: int | None = None, copy_bytes: int | None = None) -> dict:
    """A ``size``^3 float32 matrix product's FLOP/s and a copy's bytes/s (bytes read plus
    bytes written), each the median of ``repeats`` runs after ``warmup``.

    On the CPU, NumPy's matmul (its BLAS): ``gemm_gflops``, ``gemm_size``, ``copy_gbs``,
    ``copy_bytes``. On the GPU, cuBLAS through ``torch.matmul`` in both of PyTorch's modes
    (CuPy's matmul, strict, without PyTorch) and a device-to-device copy:
    ``gemm_strict_tflops``, ``gemm_tf32_tflops``, ``copy_gbs``."""
    default_size, default_bytes = PEAK_SIZES[device]
    size, copy_bytes = size or default_size, copy_bytes or default_bytes
    flops = 2 * size ** 3
    peaks = {}
    if device == "cpu":
        xp = np
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((size, size)).astype(np.float32) for _ in range(2))
        out = np.empty_like(a)
        seconds = median_seconds(lambda: np.matmul(a, b, out=out), warmup, repeats)
        peaks.update(gemm_gflops=flops / seconds / 1e9, gemm_size=size)
        source = np.ones(copy_bytes // 4, np.float32)
    else:
        xp = backend.cupy_module()
        torch = torch_for(device, torch)
        if torch is not None:
            a, b = (torch.randn(size, size, device="cuda") for _ in range(2))
            for mode in TORCH_MODES:
                set_torch_mode(torch, mode)
                seconds = median_seconds(lambda: a @ b, warmup, repeats, clock(device, torch))
                peaks[f"gemm_{mode}_tflops"] = flops / seconds / 1e12
            a = b = None
            torch.cuda.empty_cache()
        else:
            a, b = (xp.random.standard_normal((size, size), dtype=xp.float32) for _ in range(2))
            seconds = median_seconds(lambda: a @ b, warmup, repeats, clock(device))
            peaks["gemm_strict_tflops"] = flops / seconds / 1e12
        source = xp.random.standard_normal(copy_bytes // 4, dtype=xp.float32)
    target = xp.empty_like(source)
    seconds = median_seconds(lambda: xp.copyto(target, source), warmup, repeats, clock(device))
    peaks["copy_gbs"] = 2 * copy_bytes / seconds / 1e9
    if device == "cpu":
        peaks["copy_bytes"] = 2 * copy_bytes
    return peaks
