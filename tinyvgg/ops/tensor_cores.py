"""The tensor-core rungs, for every GPU ladder that has them: what each computes in, and
what it needs (float32 arrays, a GPU of compute capability 8.0 or newer).

Three precisions, named as the benchmark's columns name them:

    "strict"  float32 (or float64) arithmetic: every SIMT rung
    "tf32"    operands rounded to TF32 (10 mantissa bits) for the tensor cores, sums in
              float32: errors about 1e-3 of the result's scale
    "3xtf32"  each float32 operand split into two TF32 parts and three tensor-core products
              summed (kernels/mma.cuh): errors at float32 level, a third of TF32's rate

and the rungs in them, selected like every rung (``tinyvgg.choices``):

    "tf32-mma"        conv3x3 forward and input gradient: the 64 x 128 implicit GEMM's
                      staging, products on mma.sync
    "tf32-pipelined"  conv3x3 (forward, input and weight gradient) and linear's product: the
                      pipelined 128 x 128 tile of kernels/mma.cuh, cp.async into 3 stages
    "3xtf32"          the same kernels in 3xTF32
    "tf32-nhwc"       conv3x3 (forward, input and weight gradient): "tf32-pipelined" reading x
                      in NHWC order (converted by the op), so that every copy moves 16 bytes
    "3xtf32-nhwc"     the same in 3xTF32
"""
from __future__ import annotations

import numpy as np

from .. import backend

PRECISIONS = ("strict", "3xtf32", "tf32")
PRECISION_OF_KERNEL = {"tf32-mma": "tf32", "tf32-pipelined": "tf32", "3xtf32": "3xtf32",
                       "tf32-nhwc": "tf32", "3xtf32-nhwc": "3xtf32"}
#: the rungs on the pipelined tile of kernels/mma.cuh (128 x 128 tiles, 256 threads) in every
#: ladder that has them; NHWC_KERNELS, conv3x3's only, run on it too
PIPELINED_KERNELS = ("tf32-pipelined", "3xtf32")
NHWC_KERNELS = ("tf32-nhwc", "3xtf32-nhwc")
MMA_TILE = 128      # kernels/mma.cuh: rows and columns of C per block
MMA_THREADS = 256   # kernels/mma.cuh: threads per (1-D) block, 8 warps
MMA_BK = 16         # kernels/mma.cuh: slice of K; split-K splits are whole slices
TF32_MIN_CAPABILITY = 80  # TF32 tensor cores and cp.async: compute capability 8.0 (Ampere)


def precision(kernel: str) -> str:
    """What ``kernel`` computes in: "strict", "tf32" or "3xtf32"."""
    return PRECISION_OF_KERNEL.get(kernel, "strict")


def uses_tensor_cores(kernel: str) -> bool:
    return kernel in PRECISION_OF_KERNEL


def check(op: str, kernel: str, dtype, strict_kernels) -> None:
    """Refuses a tensor-core ``kernel`` for arrays that are not float32 (TypeError, naming
    the strict rungs to select instead)."""
    dtype = np.dtype(dtype)
    if uses_tensor_cores(kernel) and dtype != np.float32:
        names = ", ".join(repr(k) for k in strict_kernels)
        raise TypeError(f"{op}: the {kernel!r} kernel runs on TF32 tensor cores and takes "
                        f"float32 only, got {dtype}; for {dtype} select one of {names}")


def require(op: str, kernel: str) -> None:
    """Refuses a tensor-core ``kernel`` on a GPU without TF32 tensor cores (before a
    launch: the kernels compiled for such a GPU are stubs that trap)."""
    if not uses_tensor_cores(kernel):
        return
    capability = int(backend.cupy_module().cuda.Device().compute_capability)
    if capability < TF32_MIN_CAPABILITY:
        raise backend.DeviceUnavailableError(
            f"{op}: the {kernel!r} kernel needs TF32 tensor cores (compute capability "
            f"8.0 or newer); this GPU has {capability // 10}.{capability % 10}")
