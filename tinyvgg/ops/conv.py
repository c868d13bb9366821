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

conv3x3's story is told in four files, one role each:

    conv.py       this file: the math and the op classes, CPU and CUDA paths side by side
    rows.py       pixel rows, im2col and the kernel matrices (shared with linear and norm)
    conv_cpu.py   the CPU ladder: naive loops (the reference), im2col, shifted GEMMs,
                  Winograd F(2x2, 3x3) and F(4x4, 3x3), and "auto", which picks per layer
    conv_cuda.py  the GPU ladders of kernels/conv3x3.cu and kernels/conv1x1.cu, launched

The CPU default, ``auto``, runs F(4x4, 3x3) on most of VGG's layers and im2col on
the image and on 2x2 maps (``use_conv3x3_cpu`` picks another rung). On the GPU
the convolutions run our kernels on C-contiguous NCHW arrays (``use_conv3x3_kernel``
and ``use_conv3x3_wgrad_kernel`` pick the rungs). Every choice is made with
``tinyvgg.choices``.
"""
from __future__ import annotations

from .. import cuda
from ..tensor import Function
from . import checks, conv_cpu, conv_cuda
from .activation import relu_backward_cpu, relu_backward_cuda, relu_cpu
from .rows import affine_rows, affine_rows_backward, from_pixel_rows, kernel_matrix, pixel_rows


def _saved_for_gradients(ctx, x, weight):
    """x and weight as contiguous GPU arrays, each saved when the other's gradient is
    needed (the input gradient needs the weights, the weight gradient the input)."""
    x, weight = cuda.contiguous(x), cuda.contiguous(weight)
    if ctx.needs_input_grad[0]:
        ctx.save(weight=weight)
    if ctx.needs_input_grad[1]:
        ctx.save(x=x)
    return x, weight


class Conv3x3(Function):
    """3x3 convolution, stride 1, zero padding 1.

    Backward: dL/db = sum of g over (n, i, j); dL/dw = g^T @ im2col(x);
    dL/dx = conv3x3(g) with the kernel turned 180 degrees, in/out swapped.
    CPU: the rung of conv_cpu.py selected for the shape ("auto" by default).
    GPU: kernels/conv3x3.cu through conv_cuda.py."""
    name = "conv3x3"

    @staticmethod
    def check(x, weight, bias=None):
        checks.conv_inputs("conv3x3", x, weight, bias, 3)

    @staticmethod
    def forward_cpu(ctx, x, weight, bias=None):
        # the rung selected for this shape; backward runs the same one, whatever is
        # selected by then
        implementation = conv_cpu.implementation_for(x.shape)
        y, saved = implementation.forward(x, weight, bias, *ctx.needs(2))
        ctx.save(cpu_implementation=implementation, **saved)
        return y

    @staticmethod
    def forward_cuda(ctx, x, weight, bias=None):
        x, weight = _saved_for_gradients(ctx, x, weight)
        return conv_cuda.conv3x3_cuda(x, weight, bias)

    @staticmethod
    def backward_cpu(ctx, g):
        return ctx.cpu_implementation.backward(ctx, g, *ctx.needs(3))

    @staticmethod
    def backward_cuda(ctx, g):
        need_x, need_w, need_b = ctx.needs(3)
        g = cuda.contiguous(g)
        dx = conv_cuda.conv3x3_input_grad_cuda(g, ctx.weight) if need_x else None
        dw = conv_cuda.conv3x3_weight_grad_cuda(ctx.x, g) if need_w else None
        db = conv_cuda.conv_bias_grad_cuda(g) if need_b else None
        return dx, dw, db


class Conv3x3ReLU(Function):
    """relu(conv3x3(x)): a 3x3 convolution and the ReLU after it as one op, so that the
    ReLU makes no pass over memory of its own.

    Backward: g' = g * [y > 0] (y the op's output), then Conv3x3's three gradients of g'.
    GPU: the tile128 rung applies the bias and ReLU where it stores y and the mask where
    the three gradients load g; the other rungs run the same sums with the ReLU and its
    mask as passes of their own. CPU: Conv3x3's rung, then the ReLU in place."""
    name = "conv3x3_relu"
    check = Conv3x3.check

    @staticmethod
    def forward_cpu(ctx, x, weight, bias=None):
        y = Conv3x3.forward_cpu(ctx, x, weight, bias)
        relu_cpu(y, out=y)   # in place: the convolution's output is not kept
        if any(ctx.needs(3)):
            ctx.save(y=y)
        return y

    @staticmethod
    def forward_cuda(ctx, x, weight, bias=None):
        x, weight = _saved_for_gradients(ctx, x, weight)
        y = conv_cuda.conv3x3_cuda(x, weight, bias, relu=True)
        if any(ctx.needs(3)):
            ctx.save(y=y)
        return y

    @staticmethod
    def backward_cpu(ctx, g):
        return Conv3x3.backward_cpu(ctx, relu_backward_cpu(g, ctx.y))

    @staticmethod
    def backward_cuda(ctx, g):
        need_x, need_w, need_b = ctx.needs(3)
        g, mask = cuda.contiguous(g), ctx.y
        c_in = ctx.weight.shape[1] if need_x else ctx.x.shape[1] if need_w else 0
        layer = (c_in, g.shape[1]) + g.shape[2:]   # (c_in, c_out, H, W)
        if not conv_cuda.masks_where_loaded(g.dtype, layer, need_x, need_w):
            g, mask = relu_backward_cuda(g, mask), None   # one pass, for all three
        dx = conv_cuda.conv3x3_input_grad_cuda(g, ctx.weight, mask=mask) if need_x else None
        dw = conv_cuda.conv3x3_weight_grad_cuda(ctx.x, g, mask=mask) if need_w else None
        db = conv_cuda.conv_bias_grad_cuda(g, mask=mask) if need_b else None
        return dx, dw, db


class Conv1x1(Function):
    """1x1 convolution: a linear map of the channels applied at every pixel.

    Backward, on pixel rows: dL/dx = g @ W, dL/dw = g^T @ x, dL/db = sum of g.
    GPU: kernels/conv1x1.cu through conv_cuda.py."""
    name = "conv1x1"

    @staticmethod
    def check(x, weight, bias=None):
        checks.conv_inputs("conv1x1", x, weight, bias, 1)

    @staticmethod
    def forward_cpu(ctx, x, weight, bias=None):
        N, _, H, W = x.shape
        w_matrix, rows = kernel_matrix(weight), pixel_rows(x)
        ctx.save(w_matrix=w_matrix, rows=rows)
        return from_pixel_rows(affine_rows(rows, w_matrix, bias), N, H, W)

    @staticmethod
    def forward_cuda(ctx, x, weight, bias=None):
        x, w_matrix = cuda.contiguous(x), cuda.contiguous(weight.reshape(weight.shape[:2]))
        if ctx.needs_input_grad[0]:
            ctx.save(w_matrix=w_matrix)
        if ctx.needs_input_grad[1]:
            ctx.save(x=x)
        return conv_cuda.conv1x1_cuda(x, w_matrix, bias)

    @staticmethod
    def backward_cpu(ctx, g):
        N, C_out, H, W = g.shape
        dx_rows, dw, db = affine_rows_backward(pixel_rows(g), ctx.rows, ctx.w_matrix,
                                               *ctx.needs(3))
        dx = None if dx_rows is None else from_pixel_rows(dx_rows, N, H, W)
        dw = None if dw is None else dw.reshape(C_out, -1, 1, 1)
        return dx, dw, db

    @staticmethod
    def backward_cuda(ctx, g):
        need_x, need_w, need_b = ctx.needs(3)
        g = cuda.contiguous(g)
        dx = conv_cuda.conv1x1_cuda(g, ctx.w_matrix.T) if need_x else None
        dw = None
        if need_w:
            dw = conv_cuda.conv1x1_weight_grad_cuda(ctx.x, g)
            dw = dw.reshape(*dw.shape, 1, 1)
        db = conv_cuda.conv_bias_grad_cuda(g) if need_b else None
        return dx, dw, db
