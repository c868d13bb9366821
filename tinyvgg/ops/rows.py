"""Pixel rows and im2col: the layouts that turn convolutions and batch norm into
matrix products and column sums, shared by the CPU ops.

An (N, C, H, W) array seen as pixel rows is an (N*H*W, C) matrix, one row per pixel
(``pixel_rows``; a view when the array is channels-last in memory). A 3x3 convolution
becomes one matrix product once every pixel's 3x3 window is copied into a row
(``im2col3x3``): ``rows (N*H*W, 9C) @ kernel_matrix(w).T (9C, Cout)``. ``affine_rows``
is that product plus a bias, the one every linear and convolution layer comes down to;
``column_sums`` is every bias gradient and batch norm's per-channel sums.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import workers


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
    its product reads it, instead of making a round trip through memory.
    ``product(rows, out)`` writes the product of rows (M, 9C) into ``out`` (M, columns)
    and must treat rows independently (a matrix product does)."""
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


def affine_rows(rows, weight, bias=None, out=None):
    """rows @ weight.T + bias for rows (M, in) and weight (out, in): the product every
    linear and convolution layer comes down to. Written into ``out`` when given."""
    y = workers.matmul(rows, weight.T, out=out)
    if bias is not None:
        y += bias
    return y


def column_sums(rows):
    """Sums of the columns of rows (M, C) -> (C,), as one matrix-vector product.

    Per channel, per feature or per bias: every bias gradient is such a sum. NumPy
    reduces down axis 0 one row at a time, C values per step, which is slow when C is
    small (16 channels in the MNIST model); the matrix-vector product streams the rows
    at memory speed. Both add the rows in order (no pairwise summation down axis 0)."""
    return np.ones(rows.shape[0], dtype=rows.dtype) @ rows


def affine_rows_backward(g_rows, rows, weight, need_rows, need_weight, need_bias):
    """(dL/drows, dL/dweight, dL/dbias) of ``affine_rows``, each None unless asked for."""
    d_rows = workers.matmul(g_rows, weight) if need_rows else None
    d_weight = workers.matmul(g_rows.T, rows) if need_weight else None
    d_bias = column_sums(g_rows) if need_bias else None
    return d_rows, d_weight, d_bias
