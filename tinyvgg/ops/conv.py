"""conv3x3 and conv1x1: VGG's only convolutions (stride 1, output size = input size).

Forward, for a k x k kernel (k = 3 with zero padding 1, or k = 1 without)::

    y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * xp[n, c, i + u, j + v]

where ``xp`` is ``x`` zero-padded by ``k // 2`` on each side. (Like every
framework, "convolution" here is cross-correlation: the kernel is not flipped.)

Backward, with ``g = dL/dy``::

    dL/db[o]          = sum_{n, i, j} g[n, o, i, j]
    dL/dw[o, c, u, v] = sum_{n, i, j} g[n, o, i, j] * xp[n, c, i + u, j + v]
    dL/dx[n, c, p, q] = sum_{o, u, v} g[n, o, p - u + k//2, q - v + k//2] * w[o, c, u, v]

The last line is itself a same-size convolution: of ``g`` with the kernel
turned by 180 degrees and its in/out channels swapped,
``w'[c, o, u, v] = w[o, c, k-1-u, k-1-v]``. So the input gradient is computed
the way the forward pass is: im2col of ``g`` times the turned kernel's matrix.

The fast path turns the convolution into one matrix product. Each output
pixel ``(n, i, j)`` becomes a row holding the ``k*k*C`` input values it
sees ("im2col"), ordered (u, v, c), and the kernel becomes a matrix of the
same column order::

    rows  (N*H*W, k*k*C)  @  w_matrix.T  (k*k*C, Cout)  ->  (N*H*W, Cout)

The result is channels-last (NHWC) in memory; it is returned as an NCHW
view of that memory, so the next layer reads it without a transpose copy.

That is the ``im2col`` rung; ``conv_ladder.py`` holds it beside the naive
loops, shifted GEMMs without the copy and Winograd F(2x2, 3x3) and F(4x4, 3x3),
selected with ``conv_ladder.use_conv3x3_cpu``. The CPU default, ``auto``, runs
F(4x4, 3x3) on most of VGG's layers and im2col on the image and on 2x2 maps.

On the GPU the convolutions run our kernels on C-contiguous NCHW arrays:
``kernels/conv3x3.cu`` (a ladder of six forward rungs, from naive through TF32
tensor cores to Winograd F(4x4, 3x3), chosen with :func:`use_conv3x3_kernel` or the environment
variable ``TINYVGG_CONV3X3_KERNEL``, and two weight-gradient kernels) and
``kernels/conv1x1.cu`` (a tiled matrix product over the batch's pixels). The
input gradient is the forward kernel run on ``g`` with the turned kernel; the
weight and bias gradients are deterministic (no atomics).
"""
from __future__ import annotations

import os

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import backend, cuda, workers
from ..tensor import Function
from . import checks, conv_ladder
from .linear import affine_rows, affine_rows_backward, gemm_gpu


# --- naive reference: the loops a student writes first ----------------------

def conv_naive(x, weight, bias=None):
    """Same-size convolution with plain loops over every output value."""
    N, C, H, W = x.shape
    C_out, _, k, _ = weight.shape
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    y = np.zeros((N, C_out, H, W), dtype=x.dtype)
    for n in range(N):
        for o in range(C_out):
            for i in range(H):
                for j in range(W):
                    window = xp[n, :, i:i + k, j:j + k]
                    y[n, o, i, j] = np.sum(window * weight[o])
                    if bias is not None:
                        y[n, o, i, j] += bias[o]
    return y


def conv_backward_naive(x, weight, grad_out):
    """(dx, dw, db) by sending each output's gradient back through its window."""
    N, C, H, W = x.shape
    C_out, _, k, _ = weight.shape
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(weight)
    db = np.zeros(C_out, dtype=x.dtype)
    for n in range(N):
        for o in range(C_out):
            for i in range(H):
                for j in range(W):
                    g = grad_out[n, o, i, j]
                    dw[o] += g * xp[n, :, i:i + k, j:j + k]
                    dxp[n, :, i:i + k, j:j + k] += g * weight[o]
                    db[o] += g
    return dxp[:, :, pad:pad + H, pad:pad + W], dw, db


# --- fast path: im2col + one matrix product -----------------------------------

def pixel_rows(x):
    """(N, C, H, W) -> (N*H*W, C): one row per pixel (a view when x is channels-last)."""
    N, C, H, W = x.shape
    return x.transpose(0, 2, 3, 1).reshape(N * H * W, C)


def from_pixel_rows(rows, N, H, W):
    """(N*H*W, C) -> an (N, C, H, W) view of the same channels-last memory."""
    return rows.reshape(N, H, W, rows.shape[1]).transpose(0, 3, 1, 2)


def im2col3x3(x, out=None):
    """(N, C, H, W) -> (N*H*W, 9*C): row (n, i, j) holds the 3x3 window at (i, j),
    zero-padded at the borders, in (u, v, c) order. Written into ``out`` when given."""
    N, C, H, W = x.shape
    padded = np.empty((N, H + 2, W + 2, C), dtype=x.dtype)
    padded[:, 0], padded[:, -1], padded[:, :, 0], padded[:, :, -1] = 0, 0, 0, 0
    padded[:, 1:-1, 1:-1, :] = x.transpose(0, 2, 3, 1)
    windows = sliding_window_view(padded, (3, 3), axis=(1, 2))  # (N, H, W, C, 3, 3)
    windows = windows.transpose(0, 1, 2, 4, 5, 3)                # (N, H, W, 3, 3, C)
    if out is None:
        return windows.reshape(N * H * W, 9 * C)
    out.reshape(N, H, W, 3, 3, C)[...] = windows
    return out


#: im2col rows are made and multiplied in blocks of whole images of about this many
#: bytes: see :func:`im2col_product`.
IM2COL_BLOCK_BYTES = 8 << 20


def im2col_product(x, product, columns: int, keep_rows: bool = False):
    """(product(im2col3x3(x)), the rows when ``keep_rows`` else None), the product made
    block by block, the blocks split over the cores (``tinyvgg.workers``).

    The rows are 9x the input: at 64 channels, 32x32, batch 64, 151 MB that one pass
    writes to memory and the next reads back. Made and multiplied per block of whole
    images of about IM2COL_BLOCK_BYTES, each block is still in the last-level cache when
    its product reads it; on the 2-core development machine that took the 64-channel
    32x32 layer's input gradient from 48 to 34 ms. ``product(rows, out)`` writes the
    product of rows (M, 9C) into ``out`` (M, columns) and must treat rows independently
    (a matrix product does)."""
    N, C, H, W = x.shape
    pixels = H * W
    images_per_block = max(1, IM2COL_BLOCK_BYTES // max(1, pixels * 9 * C * x.itemsize))
    rows = np.empty((N * pixels, 9 * C), dtype=x.dtype) if keep_rows else None
    out = np.empty((N * pixels, columns), dtype=x.dtype)

    def blocks(images):
        for start in range(images.start, images.stop, images_per_block):
            stop = min(images.stop, start + images_per_block)
            block = slice(start * pixels, stop * pixels)
            block_rows = im2col3x3(x[start:stop], None if rows is None else rows[block])
            product(block_rows, out[block])

    workers.run(blocks, N)
    return out, rows


def kernel_matrix(weight):
    """(Cout, C, k, k) -> (Cout, k*k*C), columns in the (u, v, c) order of im2col.

    A view, without copying, when the weight is stored (Cout, k, k, C) in
    memory, as ``tinyvgg.nn``'s conv layers store it."""
    C_out = weight.shape[0]
    return weight.transpose(0, 2, 3, 1).reshape(C_out, -1)


def turned_kernel_rows(w_matrix):
    """The (9*Cout, C) matrix M with im2col(g) @ M = dL/dx, built from kernel_matrix(w).

    Row (u, v, o), column c holds w'[c, o, u, v] = w[o, c, 2-u, 2-v]: the
    kernel turned by 180 degrees with in and out channels swapped.
    """
    C_out = w_matrix.shape[0]
    turned = w_matrix.reshape(C_out, 3, 3, -1)[:, ::-1, ::-1, :]
    return turned.transpose(1, 2, 0, 3).reshape(9 * C_out, -1)


# --- GPU path: kernels/conv3x3.cu and kernels/conv1x1.cu ------------------------

#: conv3x3's forward kernels, a ladder from the simplest to the fastest (the opening
#: comment of kernels/conv3x3.cu gives each step's idea and cost): name -> kernel.
CONV3X3_KERNEL_FUNCTIONS = {
    "naive": "conv3x3_forward_naive",                  # one thread per output, global loads
    "tiled": "conv3x3_forward_tiled",                  # input and weights staged in shared memory
    "register": "conv3x3_forward_register",            # 4 pixels x 8 channels per thread
    "implicit-gemm": "conv3x3_forward_implicit_gemm",  # a tiled matrix product, im2col gathered
    "tf32-mma": "conv3x3_forward_tf32",                # the same on TF32 tensor cores
    "winograd4x4": "winograd4x4_input_transform",      # F(4x4, 3x3): transforms + 36 gemms
}
CONV3X3_KERNELS = tuple(CONV3X3_KERNEL_FUNCTIONS)
#: kernels that round their inputs to TF32: float32 only, never the default
CONV3X3_TF32_KERNELS = ("tf32-mma",)
CONV3X3_DEFAULT_KERNEL = "implicit-gemm"  # the fastest float32/float64 step on an H100
CONV3X3_KERNEL_ENV = "TINYVGG_CONV3X3_KERNEL"

#: conv3x3's weight-gradient kernels: name -> kernel in kernels/conv3x3.cu
CONV3X3_WGRAD_KERNEL_FUNCTIONS = {
    "reduce": "conv3x3_weight_grad",                       # one block per (out, in) channel pair
    "implicit-gemm": "conv3x3_weight_grad_implicit_gemm",  # g @ im2col(x)^T, pixels split
    "winograd4x4": "winograd4x4_output_adjoint",           # F(4x4, 3x3)'s stages transposed
}
CONV3X3_WGRAD_KERNELS = tuple(CONV3X3_WGRAD_KERNEL_FUNCTIONS)
CONV3X3_DEFAULT_WGRAD_KERNEL = "implicit-gemm"
CONV3X3_WGRAD_KERNEL_ENV = "TINYVGG_CONV3X3_WGRAD_KERNEL"

# Launch shapes; they must match the constants at the top of the .cu files
# (tests/test_kernels_compile.py compares them).
CONV_TILE = 16          # conv3x3_forward_tiled: 16 x 16 output pixels per block
CONV_OUT_GROUP = 16     # conv3x3_forward_tiled: output channels per block
REG_ROWS = 16           # conv3x3_forward_register: output rows per block (block y)
REG_COLS = 32           # conv3x3_forward_register: output columns per block
REG_THREADS_X = 8       # conv3x3_forward_register: block x, 4 pixels per thread
REG_LAYERS = 2          # conv3x3_forward_register: block z, 8 output channels per layer
REG_OUT_GROUP = 16      # conv3x3_forward_register: output channels per block
IG_BM = 64              # implicit-GEMM kernels: output channels per block (product rows)
IG_BN = 128             # implicit-GEMM kernels: product columns per block
IG_THREADS = 128        # implicit-GEMM kernels: threads per (1-D) block
REDUCE_THREADS = 256    # conv3x3_weight_grad, conv3x3_bias_grad: threads per block
GEMM_TILE = 64          # conv1x1 kernels: 64 x 64 result tile per block
GEMM_SIDE = 16          # conv1x1 kernels: 16 x 16 threads per block
MAX_GRID_X = 2**31 - 1  # CUDA's limit on gridDim.x
MAX_GRID_Z = 65535      # CUDA's limit on gridDim.z
TF32_MIN_CAPABILITY = 80  # TF32 tensor cores: compute capability 8.0 (Ampere) and newer
# The weight gradients of conv1x1 and of conv3x3's implicit GEMM split the batch's pixels
# so that about this many blocks run, but give each split at least WGRAD_MIN_COLUMNS pixels.
WGRAD_TARGET_BLOCKS = 512
WGRAD_MIN_COLUMNS = 256


def _checked_kernel(name, choices, what: str, where: str) -> str:
    if name not in choices:
        raise ValueError(f"{where}: unknown {what} kernel {name!r}; "
                         f"choose one of {', '.join(repr(k) for k in choices)}")
    return name


_conv3x3_kernel = _checked_kernel(os.environ.get(CONV3X3_KERNEL_ENV) or CONV3X3_DEFAULT_KERNEL,
                                  CONV3X3_KERNELS, "conv3x3",
                                  f"environment variable {CONV3X3_KERNEL_ENV}")
_conv3x3_wgrad_kernel = _checked_kernel(
    os.environ.get(CONV3X3_WGRAD_KERNEL_ENV) or CONV3X3_DEFAULT_WGRAD_KERNEL,
    CONV3X3_WGRAD_KERNELS, "conv3x3 weight-gradient",
    f"environment variable {CONV3X3_WGRAD_KERNEL_ENV}")


def use_conv3x3_kernel(name: str) -> None:
    """Select the GPU kernel behind conv3x3's forward pass and input gradient, a step of
    the ladder in kernels/conv3x3.cu: ``"naive"`` (one thread per output, every load from
    global memory), ``"tiled"`` (shared-memory tiles), ``"register"`` (each
    thread 4 pixels x 8 channels), ``"implicit-gemm"`` (a tiled matrix product with im2col
    gathered on the fly, the default), ``"tf32-mma"`` (the same on TF32 tensor cores: float32 only,
    results within about 1e-3 of their scale, compute capability 8.0 or newer) or
    ``"winograd4x4"`` (Winograd F(4x4, 3x3): transform kernels around 36 products by the
    gemm kernel, a quarter of the multiplies; V and M take 2.25x the input and output). The
    environment variable TINYVGG_CONV3X3_KERNEL sets the choice at import. The CPU path is
    unaffected."""
    global _conv3x3_kernel
    _conv3x3_kernel = _checked_kernel(name, CONV3X3_KERNELS, "conv3x3", "use_conv3x3_kernel")


def conv3x3_kernel() -> str:
    """The GPU kernel conv3x3's forward pass and input gradient use now (see
    :func:`use_conv3x3_kernel`)."""
    return _conv3x3_kernel


def conv3x3_kernel_for(dtype) -> str:
    """The kernel conv3x3 runs for arrays of ``dtype``: the selected one, refused with a
    TypeError when it computes in TF32 and ``dtype`` is not float32."""
    dtype = np.dtype(dtype)
    if _conv3x3_kernel in CONV3X3_TF32_KERNELS and dtype != np.float32:
        fp_kernels = ", ".join(repr(k) for k in CONV3X3_KERNELS if k not in CONV3X3_TF32_KERNELS)
        raise TypeError(f"conv3x3: the {_conv3x3_kernel!r} kernel computes in TF32 and takes "
                        f"float32 only, got {dtype}; for {dtype} select one of {fp_kernels} "
                        f"with use_conv3x3_kernel")
    return _conv3x3_kernel


def use_conv3x3_weight_grad_kernel(name: str) -> None:
    """Select the GPU kernel behind conv3x3's weight gradient: ``"reduce"`` (one block per
    (output, input) channel pair), ``"implicit-gemm"`` (g @ im2col(x)^T in
    64 x 128 tiles, the batch's pixels split among blocks and their sums added in a fixed
    order; the default) or ``"winograd4x4"`` (F(4x4, 3x3)'s stages transposed, a quarter
    of the multiplies). Each gives the same result on every run. The environment variable
    TINYVGG_CONV3X3_WGRAD_KERNEL sets the choice at import."""
    global _conv3x3_wgrad_kernel
    _conv3x3_wgrad_kernel = _checked_kernel(name, CONV3X3_WGRAD_KERNELS,
                                            "conv3x3 weight-gradient",
                                            "use_conv3x3_weight_grad_kernel")


def conv3x3_weight_grad_kernel() -> str:
    """The GPU kernel conv3x3's weight gradient uses now (see
    :func:`use_conv3x3_weight_grad_kernel`)."""
    return _conv3x3_wgrad_kernel


def _blocks(n: int, per_block: int) -> int:
    return (int(n) + per_block - 1) // per_block


def _pixel_splits(tiles: int, pixels: int) -> int:
    """How many blocks share the sum over the batch's pixels of each result tile."""
    return max(1, min(_blocks(WGRAD_TARGET_BLOCKS, tiles), pixels // WGRAD_MIN_COLUMNS,
                      MAX_GRID_Z))


def _bias_flag(bias):
    """(bias as a contiguous GPU array or None, has_bias as the kernels' long long flag)."""
    return (None, 0) if bias is None else (cuda.contiguous(bias), 1)


def _require_tf32_tensor_cores(kernel: str) -> None:
    capability = int(backend.cupy_module().cuda.Device().compute_capability)
    if capability < TF32_MIN_CAPABILITY:
        raise backend.DeviceUnavailableError(
            f"conv3x3: the {kernel!r} kernel needs TF32 tensor cores (compute capability "
            f"8.0 or newer); this GPU has {capability // 10}.{capability % 10}")


def conv3x3_cuda(x, weight, bias=None):
    """conv3x3 of CuPy arrays with the kernel chosen by :func:`use_conv3x3_kernel`."""
    kernel = conv3x3_kernel_for(x.dtype)
    x, weight = cuda.contiguous(x), cuda.contiguous(weight)
    bias, has_bias = _bias_flag(bias)
    N, C_in, H, W = x.shape
    C_out = weight.shape[0]
    y = cuda.empty((N, C_out, H, W), x.dtype)
    if y.size == 0:
        return y
    if kernel == "winograd4x4":
        return _conv3x3_winograd4x4_cuda(x, weight, bias, has_bias, y)
    function = CONV3X3_KERNEL_FUNCTIONS[kernel]
    args = (x, weight, bias, y, N, C_in, C_out, H, W, has_bias)
    if kernel == "naive":
        cuda.launch_elementwise("conv3x3", function, x.dtype, y.size,
                                x, weight, bias, y, C_in, C_out, H, W, has_bias)
    elif kernel == "tiled":
        grid = (_blocks(H, CONV_TILE) * _blocks(W, CONV_TILE), _blocks(C_out, CONV_OUT_GROUP),
                min(N, MAX_GRID_Z))
        cuda.launch("conv3x3", function, x.dtype, grid, (CONV_TILE, CONV_TILE), args)
    elif kernel == "register":
        grid = (_blocks(H, REG_ROWS) * _blocks(W, REG_COLS), _blocks(C_out, REG_OUT_GROUP),
                min(N, MAX_GRID_Z))
        cuda.launch("conv3x3", function, x.dtype, grid, (REG_THREADS_X, REG_ROWS, REG_LAYERS),
                    args)
    else:  # one block per 64 x 128 tile of the (C_out, N*H*W) product
        blocks = _blocks(C_out, IG_BM) * _blocks(N * H * W, IG_BN)
        if blocks > MAX_GRID_X:
            raise ValueError(f"conv3x3: {N}x{C_out}x{H}x{W} outputs need {blocks} blocks, more "
                             f"than the {MAX_GRID_X} a grid allows; use a smaller batch")
        if kernel in CONV3X3_TF32_KERNELS:
            _require_tf32_tensor_cores(kernel)
            cuda.launch("conv3x3", function, None, blocks, IG_THREADS, args)  # float only
        else:
            cuda.launch("conv3x3", function, x.dtype, blocks, IG_THREADS, args)
    return y


_winograd4x4_matrices = {}


def winograd4x4_matrices_cuda(dtype):
    """(BT, G, AT) of the CPU ladder's F(4x4, 3x3) as flat row-major CuPy arrays of
    ``dtype`` on the current device, made once per device and dtype."""
    cupy = backend.cupy_module()
    key = (int(cupy.cuda.Device().id), np.dtype(dtype))
    if key not in _winograd4x4_matrices:
        AT, G, BT = conv_ladder.WINOGRAD4X4_MATRICES
        _winograd4x4_matrices[key] = tuple(cupy.asarray(m.ravel(), dtype=key[1])
                                           for m in (BT, G, AT))
    return _winograd4x4_matrices[key]


def _conv3x3_winograd4x4_cuda(x, weight, bias, has_bias, y):
    """conv3x3 by Winograd F(4x4, 3x3) into y (ladder step 6 of kernels/conv3x3.cu): V,
    the transformed 6x6 input tiles (36, T, Cin), and U, the transformed kernels (36,
    Cin, Cout), meet in 36 products M[xi] = V[xi] @ U[xi] by the gemm kernel; the output
    transform turns M into y and adds the bias."""
    N, C_in, H, W = x.shape
    C_out = weight.shape[0]
    BT, G, AT = winograd4x4_matrices_cuda(x.dtype)
    th, tw = conv_ladder.winograd4x4_tiles((H, W))
    T = N * th * tw
    V = cuda.empty((36, T, C_in), x.dtype)
    U = cuda.empty((36, C_in, C_out), x.dtype)
    M = cuda.empty((36, T, C_out), x.dtype)
    if C_in:
        cuda.launch_elementwise("conv3x3", "winograd4x4_input_transform", x.dtype, T * C_in,
                                x, BT, V, C_in, H, W, th, tw, C_in, 1)
        cuda.launch_elementwise("conv3x3", "winograd4x4_kernel_transform", x.dtype,
                                C_in * C_out, weight, G, U, C_in, C_out)
        for xi in range(36):
            gemm_gpu(V[xi], U[xi], out=M[xi])
    else:  # no input channels: every product is zero and y is the bias
        M.fill(0)
    cuda.launch_elementwise("conv3x3", "winograd4x4_output_transform", x.dtype, T * C_out,
                            M, AT, bias, y, C_out, H, W, th, tw, has_bias)
    return y


def conv3x3_input_grad_cuda(g, weight):
    """dL/dx: g convolved with the kernel turned 180 degrees, in/out channels swapped."""
    turned = cuda.contiguous(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return conv3x3_cuda(g, turned)


def conv3x3_weight_grad_cuda(x, g):
    """dL/dw (Cout, Cin, 3, 3) with the kernel chosen by
    :func:`use_conv3x3_weight_grad_kernel`; the same on every run (no atomics)."""
    x, g = cuda.contiguous(x), cuda.contiguous(g)
    N, C_in, H, W = x.shape
    C_out = g.shape[1]
    dw = cuda.empty((C_out, C_in, 3, 3), x.dtype)
    if dw.size == 0:
        return dw
    if _conv3x3_wgrad_kernel == "winograd4x4":
        return _conv3x3_weight_grad_winograd4x4_cuda(x, g, dw)
    function = CONV3X3_WGRAD_KERNEL_FUNCTIONS[_conv3x3_wgrad_kernel]
    if _conv3x3_wgrad_kernel == "reduce":
        cuda.launch("conv3x3", function, x.dtype, C_out * C_in, REDUCE_THREADS,
                    (x, g, dw, N, C_in, C_out, H, W))
        return dw
    if C_in * H * W >= 2**31:  # the kernel keeps each column's channel offset in an int
        raise ValueError(f"conv3x3 weight gradient: one image of {C_in}x{H}x{W} values is "
                         f"more than the implicit-gemm kernel indexes (under 2^31); select "
                         f"use_conv3x3_weight_grad_kernel('reduce')")
    # dw as a (C_out, 9 C_in) matrix, in 64 x 128 tiles, each summed over split pixel ranges
    tiles_x, tiles_y = _blocks(9 * C_in, IG_BN), _blocks(C_out, IG_BM)
    splits = _pixel_splits(tiles_x * tiles_y, N * H * W)
    partial = dw if splits == 1 else cuda.empty((splits,) + dw.shape, x.dtype)
    cuda.launch("conv3x3", function, x.dtype, (tiles_x, tiles_y, splits), IG_THREADS,
                (x, g, partial, N, C_in, C_out, H, W))
    if splits > 1:
        cuda.launch_elementwise("conv1x1", "conv1x1_sum_splits", x.dtype, dw.size,
                                partial, dw, splits)
    return dw


def _conv3x3_weight_grad_winograd4x4_cuda(x, g, dw):
    """dL/dw into dw by F(4x4, 3x3)'s stages transposed (weight-gradient step 3 of
    kernels/conv3x3.cu): V[xi, ci, tile] from x, dM[xi, co, tile] from g, their
    products summed over the tiles by conv1x1's weight-gradient kernel (36 of them, the
    tiles as the pixels of one image), then dw = G^T dU G."""
    N, C_in, H, W = x.shape
    C_out = g.shape[1]
    BT, G, AT = winograd4x4_matrices_cuda(x.dtype)
    th, tw = conv_ladder.winograd4x4_tiles((H, W))
    T = N * th * tw
    V = cuda.empty((36, C_in, T), x.dtype)
    dM = cuda.empty((36, C_out, T), x.dtype)
    cuda.launch_elementwise("conv3x3", "winograd4x4_input_transform", x.dtype, T * C_in,
                            x, BT, V, C_in, H, W, th, tw, 1, T)
    cuda.launch_elementwise("conv3x3", "winograd4x4_output_adjoint", x.dtype, T * C_out,
                            g, AT, dM, C_out, H, W, th, tw)
    dU_t = cuda.empty((36, C_out, C_in), x.dtype)   # dU[xi] transposed, as conv1x1 gives it
    for xi in range(36):
        dU_t[xi] = conv1x1_weight_grad_cuda(V[xi].reshape(1, C_in, T, 1),
                                            dM[xi].reshape(1, C_out, T, 1))
    cuda.launch_elementwise("conv3x3", "winograd4x4_kernel_adjoint", x.dtype, C_out * C_in,
                            dU_t, G, dw)
    return dw


def conv_bias_grad_cuda(g):
    """dL/db (Cout,): the sum of g over images and pixels, one block per channel."""
    g = cuda.contiguous(g)
    N, C = g.shape[:2]
    db = cuda.empty((C,), g.dtype)
    if C:
        cuda.launch("conv3x3", "conv3x3_bias_grad", g.dtype, C, REDUCE_THREADS,
                    (g, db, N, C, g.shape[2] * g.shape[3]))
    return db


def conv1x1_cuda(x, w_matrix, bias=None):
    """y[n, o, p] = b[o] + sum_c w_matrix[o, c] x[n, c, p] for CuPy arrays; w_matrix (Cout, Cin)."""
    x, w_matrix = cuda.contiguous(x), cuda.contiguous(w_matrix)
    bias, has_bias = _bias_flag(bias)
    N, C_in, H, W = x.shape
    C_out = w_matrix.shape[0]
    y = cuda.empty((N, C_out, H, W), x.dtype)
    if y.size:
        grid = (_blocks(N * H * W, GEMM_TILE), _blocks(C_out, GEMM_TILE))
        cuda.launch("conv1x1", "conv1x1_forward_tiled", x.dtype, grid, (GEMM_SIDE, GEMM_SIDE),
                    (x, w_matrix, bias, y, N, C_in, C_out, H * W, has_bias))
    return y


def conv1x1_weight_grad_cuda(x, g):
    """dL/dw as a (Cout, Cin) matrix: g @ x^T over every pixel of the batch.

    When the result has few tiles, the pixels are split among more blocks and their
    partial sums are added in a fixed order, so the result is the same on every run."""
    x, g = cuda.contiguous(x), cuda.contiguous(g)
    N, C_in, H, W = x.shape
    C_out = g.shape[1]
    dw = cuda.empty((C_out, C_in), x.dtype)
    if dw.size == 0:
        return dw
    splits = _pixel_splits(_blocks(C_out, GEMM_TILE) * _blocks(C_in, GEMM_TILE), N * H * W)
    partial = dw if splits == 1 else cuda.empty((splits, C_out, C_in), x.dtype)
    grid = (_blocks(C_in, GEMM_TILE), _blocks(C_out, GEMM_TILE), splits)
    cuda.launch("conv1x1", "conv1x1_weight_grad", x.dtype, grid, (GEMM_SIDE, GEMM_SIDE),
                (x, g, partial, N, C_in, C_out, H * W))
    if splits > 1:
        cuda.launch_elementwise("conv1x1", "conv1x1_sum_splits", x.dtype, dw.size,
                                partial, dw, splits)
    return dw


def _check_conv(op, x, weight, bias, k):
    checks.floating(op, input=x, weight=weight, bias=bias)
    checks.rank(op, "input", x, 4, "(N, C, H, W)")
    checks.rank(op, "weight", weight, 4, f"(C_out, C_in, {k}, {k})")
    if weight.shape[2:] != (k, k):
        raise ValueError(f"{op}: weight must have shape (C_out, C_in, {k}, {k}), "
                         f"got {tuple(weight.shape)}")
    if 0 in weight.shape[:2]:
        raise ValueError(f"{op}: weight must have at least one output and one input channel, "
                         f"got shape {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"{op}: input has {x.shape[1]} channels but the weight expects "
                         f"{weight.shape[1]} (weight shape {tuple(weight.shape)}, "
                         f"input shape {tuple(x.shape)})")
    checks.image_size(op, x, 1)
    checks.bias(op, bias, weight.shape[0])


class Conv3x3(Function):
    """3x3 convolution, stride 1, zero padding 1.

    Backward: dL/db = sum of g over (n, i, j); dL/dw = g^T @ im2col(x);
    dL/dx = conv3x3(g) with the kernel turned 180 degrees, in/out swapped.
    CPU: the rung of conv_ladder.py selected for the shape ("auto" by default).
    GPU: kernels/conv3x3.cu."""
    name = "conv3x3"

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        _check_conv("conv3x3", x, weight, bias, 3)
        if ctx.device == "cuda":
            x, weight = cuda.contiguous(x), cuda.contiguous(weight)
            if ctx.needs_input_grad[0]:
                ctx.save(weight=weight)
            if ctx.needs_input_grad[1]:
                ctx.save(x=x)
            return conv3x3_cuda(x, weight, bias)
        # the rung of tinyvgg.ops.conv_ladder selected for this shape; backward runs
        # the same one, whatever is selected by then
        implementation = conv_ladder.implementation_for(x.shape)
        y, saved = implementation.forward(x, weight, bias, *ctx.needs(2))
        ctx.save(cpu_implementation=implementation, **saved)
        return y

    @staticmethod
    def backward(ctx, g):
        need_x, need_w, need_b = ctx.needs(3)
        if ctx.device == "cuda":
            g = cuda.contiguous(g)
            dx = conv3x3_input_grad_cuda(g, ctx.weight) if need_x else None
            dw = conv3x3_weight_grad_cuda(ctx.x, g) if need_w else None
            db = conv_bias_grad_cuda(g) if need_b else None
            return dx, dw, db
        return ctx.cpu_implementation.backward(ctx, g, need_x, need_w, need_b)


class Conv1x1(Function):
    """1x1 convolution: a linear map of the channels applied at every pixel.

    Backward, on pixel rows: dL/dx = g @ W, dL/dw = g^T @ x, dL/db = sum of g.
    GPU: kernels/conv1x1.cu."""
    name = "conv1x1"

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        _check_conv("conv1x1", x, weight, bias, 1)
        if ctx.device == "cuda":
            x = cuda.contiguous(x)
            w_matrix = cuda.contiguous(weight.reshape(weight.shape[:2]))
            if ctx.needs_input_grad[0]:
                ctx.save(w_matrix=w_matrix)
            if ctx.needs_input_grad[1]:
                ctx.save(x=x)
            return conv1x1_cuda(x, w_matrix, bias)
        N, _, H, W = x.shape
        w_matrix, rows = kernel_matrix(weight), pixel_rows(x)
        ctx.save(w_matrix=w_matrix, rows=rows)
        return from_pixel_rows(affine_rows(rows, w_matrix, bias), N, H, W)

    @staticmethod
    def backward(ctx, g):
        need_x, need_w, need_b = ctx.needs(3)
        if ctx.device == "cuda":
            g = cuda.contiguous(g)
            dx = conv1x1_cuda(g, ctx.w_matrix.T) if need_x else None
            dw = None
            if need_w:
                dw = conv1x1_weight_grad_cuda(ctx.x, g)
                dw = dw.reshape(*dw.shape, 1, 1)
            db = conv_bias_grad_cuda(g) if need_b else None
            return dx, dw, db
        N, C_out, H, W = g.shape
        dx_rows, dw, db = affine_rows_backward(pixel_rows(g), ctx.rows, ctx.w_matrix,
                                               need_x, need_w, need_b)
        dx = None if dx_rows is None else from_pixel_rows(dx_rows, N, H, W)
        dw = None if dw is None else dw.reshape(C_out, -1, 1, 1)
        return dx, dw, db
