"""linear: y = x W^T + b, with W of shape (out_features, in_features) as in PyTorch.

For x of shape (N, in) (more leading dimensions are flattened into N)::

    y[n, o] = b[o] + sum_k x[n, k] W[o, k]

Backward, with g = dL/dy of shape (N, out)::

    dL/dx = g W              (N, out) @ (out, in)
    dL/dW = g^T x            (out, N) @ (N, in)
    dL/db = sum_n g[n, :]

On the GPU all three products are one kernel of kernels/linear.cu, told which
operand to read transposed: ``gemm`` (shared-memory tiles, the default), or
the other steps of the ladder there (``gemm_naive``, ``gemm_register``, the warp-tiled
``gemm_warptile``, and on the tensor cores ``gemm_tf32_pipelined`` and ``gemm_3xtf32``),
chosen with :func:`use_gemm_kernel` or the environment variable
``TINYVGG_GEMM_KERNEL``; the bias is added by ``add_bias_rows`` and summed by
``sum_rows``. Convolutions reach the same kernels through
``affine_rows_gpu`` / ``affine_rows_backward_gpu``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import choices, cuda
from ..tensor import Function
from . import checks, tensor_cores
from .rows import affine_rows, affine_rows_backward

#: the matrix-product kernels of kernels/linear.cu, a ladder (its opening comment gives each
#: step's idea and cost): name -> kernel
GEMM_KERNEL_FUNCTIONS = {
    "naive": "gemm_naive",        # one thread per element of C, global loads
    "tiled": "gemm",              # 64 x 64 shared-memory tiles, 4 x 4 values per thread
    "register": "gemm_register",  # 64 x 128 tiles, 8 x 8 values per thread, vector loads
    "warptile": "gemm_warptile",  # 128 x 128 warp-tiled, double-buffered, batched, split-K
    "tf32-pipelined": "gemm_tf32_pipelined",  # TF32 tensor cores, a cp.async pipeline
    "3xtf32": "gemm_3xtf32",      # the same at float32 accuracy: three TF32 products
}
GEMM_KERNELS = tuple(GEMM_KERNEL_FUNCTIONS)
GEMM_DEFAULT_KERNEL = "tiled"

# Launch shapes; they must match the constants at the top of kernels/linear.cu
# (tests/test_kernels_compile.py compares them).
GEMM_TILE = 64  # gemm: rows and columns of C per block
GEMM_BLOCK = (16, 16)  # gemm: threads per block, each computing 4 x 4 values of the tile
REG_BM, REG_BN = 64, 128  # gemm_register: rows and columns of C per block
REG_THREADS = 128  # gemm_register: threads per (1-D) block, each computing 8 x 8 values
TILE_BM, TILE_BN, TILE_BK = 128, 128, 8  # gemm_warptile (kernels/tiles.cuh): tile and slice
TILE_THREADS = 256  # gemm_warptile: threads per (1-D) block, 8 warps
MAX_GRID_Z = 65535  # CUDA's limit on gridDim.z (gemm_warptile's products x splits)
# Split-K: a product of few tiles is split along K until about SPLIT_TARGET_BLOCKS blocks
# run (two per SM on the largest GPUs), each split at least SPLIT_MIN_K deep so that its
# tile's loads and the extra pass over the partial sums stay small beside its multiplies.
SPLIT_TARGET_BLOCKS = 264
SPLIT_MIN_K = 256
MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y (the tiled kernels put tiles of columns there)
SUM_COLUMNS, SUM_ROW_THREADS = 32, 8  # sum_rows' block: 32 columns x 8 threads down the rows
SUM_TARGET_BLOCKS = 1024  # enough blocks to fill a GPU; tall inputs are split into row chunks


def linear_naive(x, weight, bias=None):
    N, K = x.shape
    out = np.zeros((N, weight.shape[0]), dtype=x.dtype)
    for n in range(N):
        for o in range(weight.shape[0]):
            for k in range(K):
                out[n, o] += x[n, k] * weight[o, k]
            if bias is not None:
                out[n, o] += bias[o]
    return out


# --- GPU: kernels/linear.cu ----------------------------------------------------

#: the rung, selected like every kernel choice (tinyvgg.choices): use_gemm_kernel(name),
#: ``with using_gemm_kernel(name):`` or TINYVGG_GEMM_KERNEL at import; the CPU is unaffected
GEMM_KERNEL = choices.Choice("gemm_kernel", "gemm kernel", GEMM_KERNELS, GEMM_DEFAULT_KERNEL)
GEMM_KERNEL_ENV = GEMM_KERNEL.env
use_gemm_kernel, using_gemm_kernel, gemm_kernel = GEMM_KERNEL.functions()


def _op_shape(a, trans: bool):
    """(rows, columns) of op(a) for a matrix or a stack of matrices."""
    rows, columns = a.shape[-2:]
    return (columns, rows) if trans else (rows, columns)


def gemm_gpu(a, b, trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0,
             beta: float = 0.0, out=None, *, bias=None, relu: bool = False):
    """alpha * op(a) @ op(b) + beta * out (+ bias[column], then ReLU when asked) for 2-D
    CuPy arrays of one dtype, where op transposes its operand when asked, with the kernel
    chosen by :func:`use_gemm_kernel`. The warptile rung applies bias and ReLU where it
    stores the result; the others add them in passes of their own. Returns ``out`` (a new
    array when None, then beta must be 0)."""
    a, b = cuda.contiguous(a), cuda.contiguous(b)
    M, N, K = _product_shape("gemm", a, b, trans_a, trans_b, 2)
    out = _product_out("gemm", out, (M, N), a.dtype, beta)
    if M == 0 or N == 0:
        return out
    bias = _checked_bias(bias, N, out.dtype)
    kernel = gemm_kernel()
    tensor_cores.check("gemm", kernel, a.dtype,
                       [k for k in GEMM_KERNELS if not tensor_cores.uses_tensor_cores(k)])
    tensor_cores.require("gemm", kernel)
    if kernel == "warptile" or kernel in tensor_cores.PIPELINED_KERNELS:
        return _gemm_warptile(a, b, out, M, N, K, trans_a, trans_b, alpha, beta, 1, bias, relu,
                              kernel)
    function = GEMM_KERNEL_FUNCTIONS[kernel]
    args = (a, b, out, M, N, K, int(trans_a), int(trans_b), float(alpha), float(beta))
    if kernel == "naive":
        cuda.launch("linear", function, a.dtype, cuda.blocks_for(M * N), cuda.THREADS, args)
    else:
        tile_rows, tile_cols = (GEMM_TILE, GEMM_TILE) if kernel == "tiled" else (REG_BM, REG_BN)
        grid = (cuda.blocks_for(M, tile_rows), cuda.blocks_for(N, tile_cols))
        _check_column_tiles(grid[1], N)
        block = GEMM_BLOCK if kernel == "tiled" else REG_THREADS
        cuda.launch("linear", function, a.dtype, grid, block, args)
    if bias is not None:
        add_bias_rows_gpu(out, bias)
    if relu:
        cuda.launch_elementwise("activation", "relu_forward", out.dtype, out.size, out, out)
    return out


def gemm_batched_gpu(a, b, trans_a: bool = False, trans_b: bool = False, out=None):
    """out[i] = op(a[i]) @ op(b[i]) for stacks of matrices (3-D CuPy arrays of one dtype,
    one product per leading index), in one launch of the warptile kernel, split along K
    when the products have few tiles. Returns ``out`` (a new array when None)."""
    a, b = cuda.contiguous(a), cuda.contiguous(b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"gemm_batched: a holds {a.shape[0]} matrices but b {b.shape[0]}")
    M, N, K = _product_shape("gemm_batched", a, b, trans_a, trans_b, 3)
    batch = a.shape[0]
    out = _product_out("gemm_batched", out, (batch, M, N), a.dtype, 0.0)
    if out.size == 0:
        return out
    return _gemm_warptile(a, b, out, M, N, K, trans_a, trans_b, 1.0, 0.0, batch, None, False)


def _product_shape(op: str, a, b, trans_a, trans_b, ndim: int):
    if a.ndim != ndim or b.ndim != ndim:
        raise ValueError(f"{op}: a and b must be {ndim}-D, got shapes {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: a and b must share one dtype, got {a.dtype} and {b.dtype}")
    (M, K), (K_b, N) = _op_shape(a, trans_a), _op_shape(b, trans_b)
    if K != K_b:
        raise ValueError(f"{op}: op(a) is {M} x {K} but op(b) is {K_b} x {N}")
    return M, N, K


def _product_out(op: str, out, shape, dtype, beta):
    if out is None:
        if beta != 0:
            raise ValueError(f"{op}: beta != 0 needs an out array to accumulate into")
        return cuda.empty(shape, dtype)
    if tuple(out.shape) != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"{op}: out must be a C-contiguous {' x '.join(map(str, shape))} "
                         f"{dtype} array, got shape {tuple(out.shape)}, dtype {out.dtype}")
    return out


def _checked_bias(bias, N: int, dtype):
    """bias as a contiguous array of N values of ``dtype`` (None stays None), else an error:
    the kernels read bias[column] for every column."""
    if bias is None:
        return None
    if tuple(bias.shape) != (N,) or bias.dtype != dtype:
        raise ValueError(f"gemm: bias must be {N} values of {dtype}, one per column of the "
                         f"result, got shape {tuple(bias.shape)}, dtype {bias.dtype}")
    return cuda.contiguous(bias)


def _check_column_tiles(tiles: int, N: int) -> None:
    if tiles > MAX_GRID_Y:
        raise ValueError(f"gemm: {N} columns need {tiles} column tiles, more than the "
                         f"{MAX_GRID_Y} a grid allows")


def k_splits(tiles: int, K: int, most: int = MAX_GRID_Z,
             slice_: int = TILE_BK) -> tuple[int, int]:
    """(splits, k_per_split) for a product of ``tiles`` block tiles (over all its products)
    and depth K: enough splits that about SPLIT_TARGET_BLOCKS blocks run, none shallower
    than SPLIT_MIN_K, at most ``most``, each a whole number of slices of ``slice_``."""
    splits = max(1, min(SPLIT_TARGET_BLOCKS // max(tiles, 1), K // SPLIT_MIN_K, most))
    per_split = -(-K // splits)
    per_split = max(slice_, -(-per_split // slice_) * slice_)
    return max(1, -(-K // per_split)), per_split


def _gemm_warptile(a, b, out, M, N, K, trans_a, trans_b, alpha, beta, batch, bias, relu,
                   kernel="warptile"):
    """One launch of gemm_warptile (or of a pipelined tensor-core ``kernel``, whose arguments
    are the same) over ``batch`` products of one shape (a, b, out holding them one after
    another), split along K when that fills the GPU, then the ordered sum of the splits."""
    rows, columns, threads, slice_ = (
        (TILE_BM, TILE_BN, TILE_THREADS, TILE_BK) if kernel == "warptile" else
        (tensor_cores.MMA_TILE, tensor_cores.MMA_TILE, tensor_cores.MMA_THREADS,
         tensor_cores.MMA_BK))
    grid_x, grid_y = cuda.blocks_for(M, rows), cuda.blocks_for(N, columns)
    _check_column_tiles(grid_y, N)
    splits, per_split = k_splits(grid_x * grid_y * batch, K, slice_=slice_)
    if batch * splits > MAX_GRID_Z and batch <= MAX_GRID_Z:   # many products: fewer splits
        splits, per_split = k_splits(grid_x * grid_y * batch, K, MAX_GRID_Z // batch, slice_)
    if batch * splits > MAX_GRID_Z:
        raise ValueError(f"gemm_batched: {batch} products are more than the {MAX_GRID_Z} "
                         f"a grid allows")
    bias_mode = 0 if bias is None else 2   # per column of C (bias checked by the caller)
    partial = cuda.empty((batch * splits, M, N), out.dtype) if splits > 1 else None
    stride_a, stride_b, stride_c = M * K, K * N, M * N
    cuda.launch("linear", GEMM_KERNEL_FUNCTIONS[kernel],
                out.dtype if kernel == "warptile" else None, (grid_x, grid_y, batch * splits),
                threads, (a, b, out, partial, M, N, K, int(trans_a), int(trans_b),
                               float(alpha), float(beta), bias, bias_mode, int(relu),
                               stride_a, stride_b, stride_c, splits, per_split))
    if splits > 1:
        cuda.launch_elementwise("linear", "gemm_sum_splits", out.dtype, batch * M * N,
                                partial, out, M, N, float(alpha), float(beta), bias,
                                bias_mode, int(relu), stride_c, splits)
    return out


def add_bias_rows_gpu(y, bias):
    """y[i, j] += bias[j] in place, for a C-contiguous (rows, cols) CuPy array y."""
    cuda.launch_elementwise("linear", "add_bias_rows", y.dtype, y.size, y,
                            cuda.contiguous(bias), y.shape[1])
    return y


def sum_rows_gpu(g):
    """sum_i g[i, :] of a 2-D CuPy array, the same on every run (no atomics).

    A tall matrix is summed in row chunks by parallel blocks, and the chunks'
    partial sums by a second launch of the same kernel."""
    g = cuda.contiguous(g)
    rows, cols = g.shape
    out = cuda.empty((cols,), g.dtype)
    if cols == 0:
        return out
    column_blocks = cuda.blocks_for(cols, SUM_COLUMNS)
    chunks = max(1, min(-(-rows // (SUM_ROW_THREADS * SUM_COLUMNS)),
                        SUM_TARGET_BLOCKS // column_blocks))
    rows_per_chunk = max(1, -(-rows // chunks))
    chunks = max(1, -(-rows // rows_per_chunk))
    partial = out if chunks == 1 else cuda.empty((chunks, cols), g.dtype)
    block = (SUM_COLUMNS, SUM_ROW_THREADS)
    cuda.launch("linear", "sum_rows", g.dtype, (column_blocks, chunks), block,
                (g, partial, rows, cols, rows_per_chunk))
    if chunks > 1:
        cuda.launch("linear", "sum_rows", g.dtype, (column_blocks, 1), block,
                    (partial, out, chunks, cols, chunks))
    return out


def affine_rows_gpu(rows, weight, bias=None):
    """``affine_rows`` on the GPU: rows (M, in) @ weight.T + bias, one gemm."""
    return gemm_gpu(rows, weight, trans_b=True, bias=bias)


def affine_rows_backward_gpu(g_rows, rows, weight, need_rows, need_weight, need_bias):
    """``affine_rows_backward`` on the GPU: g W, g^T rows and the column sums of g."""
    g_rows = cuda.contiguous(g_rows)
    d_rows = gemm_gpu(g_rows, weight) if need_rows else None
    d_weight = gemm_gpu(g_rows, rows, trans_a=True) if need_weight else None
    d_bias = sum_rows_gpu(g_rows) if need_bias else None
    return d_rows, d_weight, d_bias


class Linear(Function):
    """y = x W^T + b.  Backward: dL/dx = g W, dL/dW = g^T x, dL/db = sum_n g.
    CPU: one matrix product (rows.affine_rows). GPU: kernels/linear.cu."""
    name = "linear"

    @staticmethod
    def check(x, weight, bias=None):
        checks.floating("linear", input=x, weight=weight, bias=bias)
        checks.rank("linear", "weight", weight, 2, "(out_features, in_features)")
        if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
            raise ValueError(f"linear: input must end in in_features = {weight.shape[1]} "
                             f"(weight shape {tuple(weight.shape)}), got input shape "
                             f"{tuple(x.shape)}")
        checks.bias("linear", bias, weight.shape[0])

    @staticmethod
    def forward_cpu(ctx, x, weight, bias=None):
        x2d = _rows_of(x, weight)
        ctx.save(weight=weight, x2d=x2d)
        return affine_rows(x2d, weight, bias).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def forward_cuda(ctx, x, weight, bias=None):
        x2d, weight = cuda.contiguous(_rows_of(x, weight)), cuda.contiguous(weight)
        ctx.save(weight=weight, x2d=x2d)
        return affine_rows_gpu(x2d, weight, bias).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward_cpu(ctx, g):
        return _input_shaped(ctx, g, affine_rows_backward)

    @staticmethod
    def backward_cuda(ctx, g):
        return _input_shaped(ctx, g, affine_rows_backward_gpu)


def _rows_of(x, weight):
    """x (..., in) as a matrix (rows, in); sizes spelled out, not -1: NumPy cannot infer
    -1 when another axis is 0."""
    return x.reshape(math.prod(x.shape[:-1]), weight.shape[1])


def _input_shaped(ctx, g, backward_rows):
    """(dx, dW, db) by ``backward_rows`` on g's rows, dx in the input's shape."""
    dx, dw, db = backward_rows(g.reshape(ctx.x2d.shape[0], g.shape[-1]), ctx.x2d, ctx.weight,
                               *ctx.needs(3))
    return (None if dx is None else dx.reshape(*g.shape[:-1], ctx.x2d.shape[1])), dw, db
