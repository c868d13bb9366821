"""Strategies, array makers and comparisons shared by the tinyvgg tests."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import tinyvgg as tv
from tinyvgg.ops import tensor_cores

FLOAT_DTYPES = (np.float32, np.float64)

#: relative tolerance of a fast op against a reference computed in the same dtype
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}

dtypes = st.sampled_from(FLOAT_DTYPES)
seeds = st.integers(0, 2**32 - 1)

#: memory layouts of the same logical values (see ``in_layout``)
LAYOUTS_4D = ("contiguous", "channels_last", "strided", "reversed")
LAYOUTS = ("contiguous", "strided", "reversed")
layouts_4d = st.sampled_from(LAYOUTS_4D)
layouts = st.sampled_from(LAYOUTS)


@st.composite
def nchw_shapes(draw, max_n=3, max_c=4, min_hw=1, max_hw=9):
    """(N, C, H, W) with odd and even spatial sizes."""
    return (draw(st.integers(1, max_n)), draw(st.integers(1, max_c)),
            draw(st.integers(min_hw, max_hw)), draw(st.integers(min_hw, max_hw)))


#: the tiny shapes gradient checks can afford (the full Jacobian costs one backward per output)
small_nchw_shapes = nchw_shapes(max_n=2, max_c=3, max_hw=5)


def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(seed, shape, dtype=np.float64) -> np.ndarray:
    return rng(seed).standard_normal(shape).astype(dtype)


def small_integers(seed, shape, dtype=np.float64, low=-2, high=2) -> np.ndarray:
    """Integer values in [low, high] as floats: many exact ties and exact zeros."""
    return rng(seed).integers(low, high + 1, size=shape).astype(dtype)


def in_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """The same logical values as ``array``, laid out differently in memory.

    contiguous: C order; channels_last: an NCHW view of NHWC memory (as conv
    outputs are); strided: every other element of a larger buffer along the
    last axis; reversed: Fortran order (all axes reversed, e.g. a transposed matrix).
    """
    if layout == "contiguous":
        return np.ascontiguousarray(array)
    if layout == "channels_last":
        return np.ascontiguousarray(array.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    if layout == "strided":
        buffer = np.full(array.shape[:-1] + (2 * array.shape[-1],), np.nan, dtype=array.dtype)
        view = buffer[..., 1::2]
        view[...] = array
        return view
    if layout == "reversed":
        return np.asfortranarray(array)
    raise ValueError(f"unknown layout {layout!r}")


def leaf(array, requires_grad: bool = True) -> tv.Tensor:
    """A tensor on ``array`` itself (no copy, so its memory layout is kept)."""
    return tv.Tensor(array, requires_grad=requires_grad)


def assert_close(actual, expected, rtol: float | None = None, check_dtype: bool = True):
    """allclose with a tolerance for the dtype and an absolute floor scaled to the values."""
    actual = actual.numpy() if isinstance(actual, tv.Tensor) else np.asarray(actual)
    expected = np.asarray(expected)
    if check_dtype:
        assert actual.dtype == expected.dtype, f"dtype {actual.dtype}, expected {expected.dtype}"
    if rtol is None:
        rtol = RTOL[np.dtype(expected.dtype)]
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# --- the GPU kernel ladders (tests/test_gpu.py on a GPU, tests/test_kernels_host.py) ---

#: (N, C_in, C_out, H, W)
LADDER_SHAPES = {
    "3to5-7x9": (1, 3, 5, 7, 9),              # nothing a multiple of a tile, a block or 4
    "vgg-64to64-32x32": (2, 64, 64, 32, 32),  # whole tiles, every vector load
    "8to70-14x14": (2, 8, 70, 14, 14),        # runs of 4 pixels cross rows; C_out > 64
    "5to7-12x16": (3, 5, 7, 12, 16),          # vector input loads, scalar weight loads
}
#: a weight gradient whose 6400 pixels the implicit GEMM splits among several blocks
SPLIT_PIXELS_SHAPE = (4, 3, 8, 40, 40)
#: TF32 rounds both operands to 10 mantissa bits (relative error up to 2^-11 each)
TF32_RTOL = 5e-3


def kernel_rtol(kernel: str, dtype) -> float:
    """The tolerance of a GPU rung's results: TF32's for the TF32 rungs; the dtype's for
    the strict ones and for 3xTF32, which promises float32-level errors."""
    return TF32_RTOL if tensor_cores.precision(kernel) == "tf32" else RTOL[np.dtype(dtype)]


def strict_kernels(kernels):
    """The rungs of a ladder that take float64 too (no tensor cores)."""
    return [k for k in kernels if not tensor_cores.uses_tensor_cores(k)]


def conv_inputs(shape, dtype, seed):
    """x, w (scaled by 1/sqrt(9 C_in)), b and g for a conv3x3 of ``shape`` (N, C_in, C_out, H, W)."""
    N, C_in, C_out, H, W = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C_in, H, W)).astype(dtype)
    w = (rng.standard_normal((C_out, C_in, 3, 3)) / np.sqrt(9 * C_in)).astype(dtype)
    b = rng.standard_normal(C_out).astype(dtype)
    g = rng.standard_normal((N, C_out, H, W)).astype(dtype)
    return x, w, b, g
