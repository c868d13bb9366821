"""conv3x3 and conv1x1 on the GPU: the kernel ladders of ``kernels/conv3x3.cu`` and
``kernels/conv1x1.cu``, their selection and their launches, on C-contiguous NCHW CuPy arrays.

conv3x3's forward has eleven rungs, from one thread per output with every load from global
memory to Winograd F(4x4, 3x3), 128x128 warp tiles and pipelined tensor cores in TF32
and 3xTF32, in NCHW or NHWC order (the opening comment of ``kernels/conv3x3.cu`` gives
each step's idea and cost; ``tensor_cores.py`` the precisions), chosen with
``use_conv3x3_kernel`` or the environment variable ``TINYVGG_CONV3X3_KERNEL``
(``tinyvgg.choices``); its weight gradient has eight, chosen with
``use_conv3x3_wgrad_kernel`` or ``TINYVGG_CONV3X3_WGRAD_KERNEL``. The input gradient is
the forward kernel run on ``g`` with the turned kernel; the weight and bias gradients
are deterministic (no atomics). conv1x1 is a tiled matrix product over the batch's pixels.
"""
from __future__ import annotations

import numpy as np

from .. import backend, choices, cuda
from . import conv_auto, tensor_cores
from .conv_cpu import WINOGRAD4X4_MATRICES, winograd4x4_tiles
from .activation import relu_backward_cuda
from .linear import gemm_batched_gpu


#: conv3x3's forward kernels, a ladder from the simplest to the fastest (the opening
#: comment of kernels/conv3x3.cu gives each step's idea and cost): name -> kernel.
CONV3X3_KERNEL_FUNCTIONS = {
    "naive": "conv3x3_forward_naive",                  # one thread per output, global loads
    "tiled": "conv3x3_forward_tiled",                  # input and weights staged in shared memory
    "register": "conv3x3_forward_register",            # 4 pixels x 8 channels per thread
    "implicit-gemm": "conv3x3_forward_implicit_gemm",  # a tiled matrix product, im2col gathered
    "tf32-mma": "conv3x3_forward_tf32",                # the same on TF32 tensor cores
    "winograd4x4": "winograd4x4_input_transform",      # F(4x4, 3x3): transforms + 36 gemms
    "tile128": "conv3x3_forward_tile128",              # step 4 on 128x128 warp tiles, fused epilogue
    "tf32-pipelined": "conv3x3_forward_tf32_pipelined",  # tensor cores fed by a cp.async pipeline
    "3xtf32": "conv3x3_forward_3xtf32",                # the same, float32 accuracy from 3 products
    "tf32-nhwc": "conv3x3_forward_tf32_nhwc",          # tf32-pipelined reading x in NHWC order
    "3xtf32-nhwc": "conv3x3_forward_3xtf32_nhwc",      # the same in 3xTF32
}
CONV3X3_KERNELS = tuple(CONV3X3_KERNEL_FUNCTIONS)
#: kernels that round their inputs to TF32: float32 only, never the default
CONV3X3_TF32_KERNELS = tuple(k for k in CONV3X3_KERNELS if tensor_cores.precision(k) == "tf32")
CONV3X3_DEFAULT_KERNEL = "implicit-gemm"  # the fastest float32/float64 rung (benchmarks/results)

#: conv3x3's weight-gradient kernels: name -> kernel in kernels/conv3x3.cu
CONV3X3_WGRAD_KERNEL_FUNCTIONS = {
    "reduce": "conv3x3_weight_grad",                       # one block per (out, in) channel pair
    "implicit-gemm": "conv3x3_weight_grad_implicit_gemm",  # g @ im2col(x)^T, pixels split
    "winograd4x4": "winograd4x4_output_adjoint",           # F(4x4, 3x3)'s stages transposed
    "tile128": "conv3x3_weight_grad_tile128",              # step 2 on 128x128 warp tiles
    "tf32-pipelined": "conv3x3_weight_grad_tf32_pipelined",  # tensor cores, cp.async pipeline
    "3xtf32": "conv3x3_weight_grad_3xtf32",                # the same, float32 accuracy
    "tf32-nhwc": "conv3x3_weight_grad_tf32_nhwc",          # tf32-pipelined reading x as NHWC
    "3xtf32-nhwc": "conv3x3_weight_grad_3xtf32_nhwc",      # the same in 3xTF32
}
CONV3X3_WGRAD_KERNELS = tuple(CONV3X3_WGRAD_KERNEL_FUNCTIONS)
CONV3X3_DEFAULT_WGRAD_KERNEL = "implicit-gemm"
#: the kernels that compute in strict float32 (or float64), per job
STRICT_KERNELS_OF_JOB = {
    "fwd": tuple(k for k in CONV3X3_KERNELS if not tensor_cores.uses_tensor_cores(k)),
    "dx": tuple(k for k in CONV3X3_KERNELS if not tensor_cores.uses_tensor_cores(k)),
    "dw": tuple(k for k in CONV3X3_WGRAD_KERNELS if not tensor_cores.uses_tensor_cores(k))}
#: what "auto" picks from, per job: the rungs with float32-level errors, the strict ones and
#: the 3xTF32 ones (the table holds only rungs measured on its GPU, within
#: tinyvgg.bench.AUTO_MAX_ERROR of cuDNN strict FP32); never a TF32 one
AUTO_KERNELS_OF_JOB = {
    job: tuple(k for k in (CONV3X3_WGRAD_KERNELS if job == "dw" else CONV3X3_KERNELS)
               if tensor_cores.precision(k) != "tf32")
    for job in ("fwd", "dx", "dw")}
AUTO = "auto"   # per layer shape and job, the fastest rung measured on this GPU (conv_auto.py)

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
TILE = 128              # tile128 kernels (kernels/tiles.cuh): 128 x 128 product tiles
TILE_THREADS = 256      # tile128 kernels: threads per (1-D) block, 8 warps
TILE_BK = 8             # tile128 kernels: reduction slice; pixel splits are whole slices
REDUCE_THREADS = 256    # conv3x3_weight_grad, conv3x3_bias_grad: threads per block
GEMM_TILE = 64          # conv1x1 kernels: 64 x 64 result tile per block
GEMM_SIDE = 16          # conv1x1 kernels: 16 x 16 threads per block
MAX_GRID_X = 2**31 - 1  # CUDA's limit on gridDim.x
MAX_GRID_Z = 65535      # CUDA's limit on gridDim.z
# The weight gradients of conv1x1 and of conv3x3's implicit GEMM split the batch's pixels
# so that about this many blocks run, but give each split at least WGRAD_MIN_COLUMNS pixels.
WGRAD_TARGET_BLOCKS = 512
WGRAD_MIN_COLUMNS = 256
# Winograd's transformed tiles are 2.25x the input (V) plus 2.25x the output (M, or dM):
# 3.7 GB for VGG-16's 224x224 layers of 64 channels at batch 64, were the whole batch
# transformed at once. They are made for chunks of images within this many bytes, each
# chunk's 36 products still tens of thousands of rows (enough blocks for any GPU).
WINOGRAD_WORKSPACE_BYTES = 2**29


#: the rungs, selected like every kernel choice (tinyvgg.choices): use_conv3x3_kernel(name),
#: ``with using_conv3x3_kernel(name):`` or TINYVGG_CONV3X3_KERNEL at import (forward and
#: input gradient); use_conv3x3_wgrad_kernel(name) and so on for the weight gradient.
#: "tf32-mma", "tf32-pipelined" and "tf32-nhwc" round to TF32 (float32 only, results within
#: about 1e-3 of their scale, compute capability 8.0 or newer); "3xtf32" and "3xtf32-nhwc"
#: run on the same tensor cores at float32 accuracy (tensor_cores.py); "winograd4x4" does a
#: quarter of the multiplies and keeps V and M, 2.25x the input and output. Every rung gives
#: the same result on every run.
CONV3X3_KERNEL = choices.Choice("conv3x3_kernel", "conv3x3 kernel", CONV3X3_KERNELS + (AUTO,),
                                CONV3X3_DEFAULT_KERNEL)
CONV3X3_WGRAD_KERNEL = choices.Choice("conv3x3_wgrad_kernel", "conv3x3 weight-gradient kernel",
                                      CONV3X3_WGRAD_KERNELS + (AUTO,),
                                      CONV3X3_DEFAULT_WGRAD_KERNEL)
CONV3X3_KERNEL_ENV, CONV3X3_WGRAD_KERNEL_ENV = CONV3X3_KERNEL.env, CONV3X3_WGRAD_KERNEL.env
use_conv3x3_kernel, using_conv3x3_kernel, conv3x3_kernel = CONV3X3_KERNEL.functions()
use_conv3x3_wgrad_kernel, using_conv3x3_wgrad_kernel, conv3x3_wgrad_kernel = \
    CONV3X3_WGRAD_KERNEL.functions()


def auto_kernel(job: str, dtype, c_in: int, c_out: int, H: int, W: int) -> str:
    """What "auto" runs for ``job`` ("fwd", "dx", "dw") on this layer shape: the table's
    nearest entry for this GPU (conv_auto.py) in float32; the default rung for float64, on
    a GPU the table does not name, and when it has no entry for the job."""
    default = CONV3X3_DEFAULT_WGRAD_KERNEL if job == "dw" else CONV3X3_DEFAULT_KERNEL
    if np.dtype(dtype) != np.float32:
        return default
    return conv_auto.picked_kernel(job, c_in, c_out, H, W, AUTO_KERNELS_OF_JOB) or default


def conv3x3_kernel_for(dtype, job: str = "fwd", shape=None) -> str:
    """The kernel conv3x3 runs for arrays of ``dtype``: the selected one ("auto" resolved
    for ``job`` and the layer's ``shape`` = (c_in, c_out, H, W)), refused with a TypeError
    when it runs on tensor cores and ``dtype`` is not float32."""
    kernel = conv3x3_kernel()
    if kernel == AUTO:
        return auto_kernel(job, dtype, *shape)
    tensor_cores.check("conv3x3", kernel, dtype, STRICT_KERNELS_OF_JOB["fwd"])
    return kernel


def conv3x3_wgrad_kernel_for(dtype, shape) -> str:
    """The weight-gradient kernel for the layer's ``shape`` = (c_in, c_out, H, W): the
    selected one, "auto" resolved."""
    kernel = conv3x3_wgrad_kernel()
    if kernel == AUTO:
        return auto_kernel("dw", dtype, *shape)
    tensor_cores.check("conv3x3 weight gradient", kernel, dtype, STRICT_KERNELS_OF_JOB["dw"])
    return kernel


#: the rungs that apply a fused ReLU's mask where they load g; the others need g masked
#: in a pass of its own (relu's backward, activation.relu_backward_cuda)
MASK_LOADING_KERNELS = ("tile128", "winograd4x4")


def masks_where_loaded(dtype, shape, need_x: bool, need_w: bool) -> bool:
    """Whether every rung that computes the needed gradients of the layer ``shape`` = (c_in,
    c_out, H, W) applies a fused ReLU's mask where it loads g; when one does not, the
    backward masks g once, in a pass, and gives every rung the masked g."""
    kernels = ([conv3x3_kernel_for(dtype, "dx", shape)] if need_x else []) + \
        ([conv3x3_wgrad_kernel_for(dtype, shape)] if need_w else [])
    return all(k in MASK_LOADING_KERNELS for k in kernels)


def _blocks(n: int, per_block: int) -> int:
    return (int(n) + per_block - 1) // per_block


def _pixel_splits(tiles: int, pixels: int) -> int:
    """How many blocks share the sum over the batch's pixels of each result tile."""
    return max(1, min(_blocks(WGRAD_TARGET_BLOCKS, tiles), pixels // WGRAD_MIN_COLUMNS,
                      MAX_GRID_Z))


def _bias_flag(bias):
    """(bias as a contiguous GPU array or None, has_bias as the kernels' long long flag)."""
    return (None, 0) if bias is None else (cuda.contiguous(bias), 1)


def conv3x3_cuda(x, weight, bias=None, relu: bool = False, mask=None, job: str = "fwd"):
    """conv3x3 of CuPy arrays with the kernel chosen by ``use_conv3x3_kernel``; then ReLU
    when ``relu``. ``mask`` (or None): x is read as x * (mask > 0), mask of x's shape (the
    input gradient of a convolution fused with the ReLU after it). The tile128 rung applies
    both where it loads and stores; the others in passes of their own. ``job`` tells
    "auto" whether this is a forward pass ("fwd") or an input gradient ("dx")."""
    # "auto" looks up the layer: for an input gradient, its input channels are this
    # convolution's output channels
    channels = (x.shape[1], weight.shape[0]) if job == "fwd" else (weight.shape[0], x.shape[1])
    kernel = conv3x3_kernel_for(x.dtype, job, channels + x.shape[2:])
    _check_mask(mask, x)
    tensor_cores.require("conv3x3", kernel)
    x, weight = cuda.contiguous(x), cuda.contiguous(weight)
    bias, has_bias = _bias_flag(bias)
    N, C_in, H, W = x.shape
    C_out = weight.shape[0]
    y = cuda.empty((N, C_out, H, W), x.dtype)
    if y.size == 0:
        return y
    if kernel == "tile128":
        blocks = _blocks(C_out, TILE) * _blocks(N * H * W, TILE)
        _check_grid_x(blocks, (N, C_out, H, W))
        cuda.launch("conv3x3", "conv3x3_forward_tile128", x.dtype, blocks, TILE_THREADS,
                    (x, weight, bias, y, _contiguous_or_none(mask), N, C_in, C_out, H, W, has_bias, int(relu)))
        return y
    if kernel == "winograd4x4":   # the transforms apply the mask and the ReLU
        return _conv3x3_winograd4x4_cuda(x, weight, bias, has_bias, y, relu, mask)
    if mask is not None:
        x = relu_backward_cuda(x, mask)
    if kernel in tensor_cores.PIPELINED_KERNELS + tensor_cores.NHWC_KERNELS:
        if kernel in tensor_cores.NHWC_KERNELS:   # x as (N, H, W, C), w as (C_out, 3, 3, C_in)
            x = cuda.contiguous(x.transpose(0, 2, 3, 1))
            weight = cuda.contiguous(weight.transpose(0, 2, 3, 1))
        tile = tensor_cores.MMA_TILE
        blocks = _blocks(C_out, tile) * _blocks(N * H * W, tile)
        _check_grid_x(blocks, (N, C_out, H, W))
        cuda.launch("conv3x3", CONV3X3_KERNEL_FUNCTIONS[kernel], None, blocks,
                    tensor_cores.MMA_THREADS,
                    (x, weight, bias, y, N, C_in, C_out, H, W, has_bias, int(relu)))
        return y   # the bias and ReLU were applied where y was stored
    _conv3x3_direct_cuda(kernel, x, weight, bias, has_bias, y)
    if relu:
        cuda.launch_elementwise("activation", "relu_forward", y.dtype, y.size, y, y)
    return y


def _check_mask(mask, g) -> None:
    """A ReLU mask is the ReLU's output, of the masked array's shape and dtype: the kernels
    read mask[i] wherever they read g[i]."""
    if mask is not None and (tuple(mask.shape) != tuple(g.shape) or mask.dtype != g.dtype):
        raise ValueError(f"conv3x3: the ReLU mask must have the shape and dtype of the array "
                         f"it masks, {tuple(g.shape)} {g.dtype}; got {tuple(mask.shape)} "
                         f"{mask.dtype}")


def _contiguous_or_none(array):
    return None if array is None else cuda.contiguous(array)


def _check_grid_x(blocks: int, shape) -> None:
    if blocks > MAX_GRID_X:
        raise ValueError(f"conv3x3: {'x'.join(map(str, shape))} outputs need {blocks} blocks, "
                         f"more than the {MAX_GRID_X} a grid allows; use a smaller batch")


def _conv3x3_direct_cuda(kernel, x, weight, bias, has_bias, y):
    """Forward steps 1-5 of kernels/conv3x3.cu into y."""
    N, C_in, H, W = x.shape
    C_out = weight.shape[0]
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
        _check_grid_x(blocks, (N, C_out, H, W))
        if tensor_cores.uses_tensor_cores(kernel):
            cuda.launch("conv3x3", function, None, blocks, IG_THREADS, args)  # float only
        else:
            cuda.launch("conv3x3", function, x.dtype, blocks, IG_THREADS, args)


_winograd4x4_matrices = {}


def winograd4x4_matrices_cuda(dtype):
    """(BT, G, AT) of the CPU ladder's F(4x4, 3x3) as flat row-major CuPy arrays of
    ``dtype`` on the current device, made once per device and dtype."""
    cupy = backend.cupy_module()
    key = (int(cupy.cuda.Device().id), np.dtype(dtype))
    if key not in _winograd4x4_matrices:
        AT, G, BT = WINOGRAD4X4_MATRICES
        _winograd4x4_matrices[key] = tuple(cupy.asarray(m.ravel(), dtype=key[1])
                                           for m in (BT, G, AT))
    return _winograd4x4_matrices[key]


def _winograd4x4_plan(x):
    """(BT, G, AT, tile rows, tile columns) of F(4x4, 3x3) for x."""
    return (*winograd4x4_matrices_cuda(x.dtype), *winograd4x4_tiles(x.shape[2:]))


def winograd4x4_image_chunks(shape, channels: int, itemsize: int) -> list:
    """The slices of images that F(4x4, 3x3) transforms and multiplies at a time, for an
    input of ``shape`` (N, C, H, W) whose transformed tiles hold ``channels`` values each
    (Cin + Cout): as many images as keep V and M (or dM) within WINOGRAD_WORKSPACE_BYTES,
    at least one."""
    N, _, H, W = shape
    th, tw = winograd4x4_tiles((H, W))
    per_image = 36 * th * tw * channels * itemsize
    images = max(1, min(N, WINOGRAD_WORKSPACE_BYTES // max(per_image, 1)))
    return [slice(n, min(n + images, N)) for n in range(0, N, images)]


def _images(array, images: slice):
    """array[images] for an optional array (a mask)."""
    return None if array is None else array[images]


def _conv3x3_winograd4x4_cuda(x, weight, bias, has_bias, y, relu=False, mask=None):
    """conv3x3 by Winograd F(4x4, 3x3) into y (ladder step 6 of kernels/conv3x3.cu): V,
    the transformed 6x6 input tiles (36, T, Cin), and U, the transformed kernels (36,
    Cin, Cout), meet in 36 products M[xi] = V[xi] @ U[xi], one batched warptile launch; the output
    transform turns M into y and adds the bias. U is made once; V, the products and the
    output transform run per chunk of images (winograd4x4_image_chunks)."""
    N, C_in, H, W = x.shape
    C_out = weight.shape[0]
    x, mask = cuda.contiguous(x), _contiguous_or_none(mask)
    BT, G, AT, th, tw = _winograd4x4_plan(x)
    U = cuda.empty((36, C_in, C_out), x.dtype)
    if C_in:
        cuda.launch_elementwise("conv3x3", "winograd4x4_kernel_transform", x.dtype,
                                C_in * C_out, weight, G, U, C_in, C_out)
    for images in winograd4x4_image_chunks(x.shape, C_in + C_out, x.dtype.itemsize):
        T = (images.stop - images.start) * th * tw
        V = cuda.empty((36, T, C_in), x.dtype)
        M = cuda.empty((36, T, C_out), x.dtype)
        if C_in:
            cuda.launch_elementwise("conv3x3", "winograd4x4_input_transform", x.dtype,
                                    T * C_in, x[images], _images(mask, images), BT, V, C_in,
                                    H, W, th, tw, C_in, 1)
            gemm_batched_gpu(V, U, out=M)   # the 36 products in one launch
        else:  # no input channels: every product is zero and y is the bias
            M.fill(0)
        cuda.launch_elementwise("conv3x3", "winograd4x4_output_transform", x.dtype,
                                T * C_out, M, AT, bias, y[images], C_out, H, W, th, tw,
                                has_bias, int(relu))
        V = M = None   # freed before the next chunk's are made
    return y


def conv3x3_input_grad_cuda(g, weight, mask=None):
    """dL/dx: g convolved with the kernel turned 180 degrees, in/out channels swapped; g
    read as g * (mask > 0) when a ReLU with output ``mask`` followed the convolution."""
    turned = cuda.contiguous(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return conv3x3_cuda(g, turned, mask=mask, job="dx")


def conv3x3_weight_grad_cuda(x, g, mask=None):
    """dL/dw (Cout, Cin, 3, 3) with the kernel chosen by ``use_conv3x3_wgrad_kernel``; the
    same on every run (no atomics). g is read as g * (mask > 0) when a ReLU with output
    ``mask`` followed the convolution (tile128 where it loads g, the others in a pass)."""
    _check_mask(mask, g)
    x, g = cuda.contiguous(x), cuda.contiguous(g)
    N, C_in, H, W = x.shape
    C_out = g.shape[1]
    kernel = conv3x3_wgrad_kernel_for(x.dtype, (C_in, C_out, H, W))
    tensor_cores.require("conv3x3 weight gradient", kernel)
    dw = cuda.empty((C_out, C_in, 3, 3), x.dtype)
    if dw.size == 0:
        return dw
    if kernel == "tile128" or tensor_cores.uses_tensor_cores(kernel):
        return _conv3x3_weight_grad_tiles_cuda(kernel, x, g, mask, dw)
    if kernel == "winograd4x4":
        return _conv3x3_weight_grad_winograd4x4_cuda(x, g, mask, dw)
    if mask is not None:
        g = relu_backward_cuda(g, mask)
    function = CONV3X3_WGRAD_KERNEL_FUNCTIONS[kernel]
    if kernel == "reduce":
        cuda.launch("conv3x3", function, x.dtype, C_out * C_in, REDUCE_THREADS,
                    (x, g, dw, N, C_in, C_out, H, W))
        return dw
    if C_in * H * W >= 2**31:  # the kernel keeps each column's channel offset in an int
        raise ValueError(f"conv3x3 weight gradient: one image of {C_in}x{H}x{W} values is "
                         f"more than the implicit-gemm kernel indexes (under 2^31); select "
                         f"use_conv3x3_wgrad_kernel('reduce')")
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


def _conv3x3_weight_grad_tiles_cuda(kernel, x, g, mask, dw):
    """Weight-gradient steps 4-8 of kernels/conv3x3.cu: 128 x 128 tiles of dw (Cout x 9
    Cin), each summed over pixel ranges of whole slices, the ranges added in order. tile128
    applies the mask where it loads g; the tensor-core rungs take g masked in a pass. The
    NHWC rungs read x converted to (N, H, W, C) and give dw's columns in (tap, channel)
    order, reordered at the end."""
    N, C_in, H, W = x.shape
    C_out = g.shape[1]
    tile, threads, slice_ = ((TILE, TILE_THREADS, TILE_BK) if kernel == "tile128" else
                             (tensor_cores.MMA_TILE, tensor_cores.MMA_THREADS,
                              tensor_cores.MMA_BK))
    tiles_x, tiles_y = _blocks(9 * C_in, tile), _blocks(C_out, tile)
    pixels = N * H * W
    splits = _pixel_splits(tiles_x * tiles_y, pixels)
    per_split = -(-_blocks(pixels, splits) // slice_) * slice_
    splits = _blocks(pixels, per_split)
    nhwc = kernel in tensor_cores.NHWC_KERNELS
    result = cuda.empty((C_out, 3, 3, C_in), x.dtype) if nhwc else dw
    partial = result if splits == 1 else cuda.empty((splits,) + result.shape, x.dtype)
    function = CONV3X3_WGRAD_KERNEL_FUNCTIONS[kernel]
    grid = (tiles_x, tiles_y, splits)
    if kernel == "tile128":
        cuda.launch("conv3x3", function, x.dtype, grid, threads,
                    (x, g, _contiguous_or_none(mask), partial, N, C_in, C_out, H, W, per_split))
    else:
        if mask is not None:
            g = relu_backward_cuda(g, mask)
        if nhwc:
            x = cuda.contiguous(x.transpose(0, 2, 3, 1))
        cuda.launch("conv3x3", function, None, grid, threads,
                    (x, g, partial, N, C_in, C_out, H, W, per_split))
    if splits > 1:
        cuda.launch_elementwise("conv1x1", "conv1x1_sum_splits", x.dtype, dw.size,
                                partial, result, splits)
    if nhwc:   # (co, tap, ci) -> (co, ci, tap)
        dw[...] = result.transpose(0, 3, 1, 2)
    return dw


def _conv3x3_weight_grad_winograd4x4_cuda(x, g, mask, dw):
    """dL/dw into dw by F(4x4, 3x3)'s stages transposed (weight-gradient step 3 of
    kernels/conv3x3.cu): V[xi, ci, tile] from x, dM[xi, co, tile] from g, their 36
    products dM[xi] @ V[xi]^T summed over the tiles by one batched warptile launch (split
    along the tiles, the splits added in order), then dw = G^T dU G. V and dM are made
    per chunk of images (winograd4x4_image_chunks), the chunks' dU added in order."""
    N, C_in, H, W = x.shape
    C_out = g.shape[1]
    mask = _contiguous_or_none(mask)
    BT, G, AT, th, tw = _winograd4x4_plan(x)
    dU_t = None
    for images in winograd4x4_image_chunks(x.shape, C_in + C_out, x.dtype.itemsize):
        T = (images.stop - images.start) * th * tw
        V = cuda.empty((36, C_in, T), x.dtype)
        dM = cuda.empty((36, C_out, T), x.dtype)
        cuda.launch_elementwise("conv3x3", "winograd4x4_input_transform", x.dtype, T * C_in,
                                x[images], None, BT, V, C_in, H, W, th, tw, 1, T)
        cuda.launch_elementwise("conv3x3", "winograd4x4_output_adjoint", x.dtype,
                                T * C_out, g[images], _images(mask, images), AT, dM, C_out, H,
                                W, th, tw)
        # dU[xi] transposed: the 36 products over the chunk's tiles in one launch, split
        # along the tiles; the chunks' sums added in order (no atomics: deterministic)
        part = gemm_batched_gpu(dM, V, trans_b=True)
        if dU_t is None:
            dU_t = part
        else:
            dU_t += part
        V = dM = part = None   # freed before the next chunk's are made
    if dU_t is None:   # no images: no products, a zero gradient
        dU_t = cuda.empty((36, C_out, C_in), x.dtype)
        dU_t.fill(0)
    cuda.launch_elementwise("conv3x3", "winograd4x4_kernel_adjoint", x.dtype, C_out * C_in,
                            dU_t, G, dw)
    return dw


def conv_bias_grad_cuda(g, mask=None):
    """dL/db (Cout,): the sum of g over images and pixels, one block per channel; only
    where mask > 0 when a ReLU with output ``mask`` followed the convolution."""
    _check_mask(mask, g)
    g, mask = cuda.contiguous(g), _contiguous_or_none(mask)
    N, C = g.shape[:2]
    db = cuda.empty((C,), g.dtype)
    if C:
        cuda.launch("conv3x3", "conv3x3_bias_grad", g.dtype, C, REDUCE_THREADS,
                    (g, mask, db, N, C, g.shape[2] * g.shape[3]))
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
