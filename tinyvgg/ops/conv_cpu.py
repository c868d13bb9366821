"""The CPU ladder of conv3x3: one op, five implementations, slowest first.

Every rung computes the same thing (see ``conv.py`` for the math)::

    y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * xp[n, c, i + u, j + v]

with ``xp`` the input zero-padded by one pixel, and its backward (dx, dw, db).
Each rung is a readable NumPy implementation with a cost model; the step
from one to the next says why it is faster. Notation: N images, C input and
K output channels, H x W pixels, P = N*H*W output pixels, and
Pp = N*(H+2)*(W+2) positions of the padded input. A direct convolution does
18*P*C*K flops (a multiply and an add per weight per output).

``naive``
    Python loops over every output value (``conv_naive`` in conv.py). The
    reference the others are tested against; too slow for anything but tests.

``im2col``
    Copy the 3x3 window of every output pixel into a row: a (P, 9C) matrix,
    nine times the input. Then one matrix product (GEMM)
    ``(P, 9C) @ (9C, K)``, 18*P*C*K flops in a well-shaped product.
    Backward: dx is the same product for g and the kernel turned 180 degrees
    (another 9x copy, of g); dw = ``g_rows^T @ rows`` (K, P) @ (P, 9C), reading the
    rows kept from forward, so a layer keeps 9x its input until backward.
    The copy is what this rung pays: 9*P*C values written and read again.
    The rows are made and multiplied per block of images of about 8 MiB
    (``im2col_product``), so the product reads each block from the
    cache; the input gradient never holds all of g's rows at once.

``shifted``
    No im2col copy. Pad x once into a channels-last buffer (N, H+2, W+2, C)
    and read it as flat rows, one per padded position. For the output whose
    window starts at position p, tap (u, v) reads row p + u*(W+2) + v, so
    each tap's inputs for all outputs are one contiguous slice of the rows,
    shifted::

        y_rows = sum over the 9 taps of rows[shift : shift + L] @ W_tap   (C, K)

    computed at every padded position; the real outputs are an (H, W)
    window of each image, returned as a view (row pitch W+2) without a copy.
    Cost: a 1x copy (the padding) instead of 9x, and 9 GEMMs with K = C and
    18*Pp*C*K flops: the junk positions cost (H+2)(W+2)/(HW) times the
    direct flops, 1.13x at 32x32, 1.27x at 16x16, 1.56x at 8x8, 2.25x at
    4x4, 4x at 2x2. The 9 products are added per block of rows that stays in
    cache (``CACHE_BLOCK_BYTES``), so the accumulation costs no extra trips
    to memory. Backward: dx is the same shifted convolution of g (padded)
    with the turned kernel, whose taps are the forward taps in reverse order
    (no copy); ``dw[tap] = rows[shift : shift + L]^T @ g_rows``, 9 GEMMs with
    the number of positions as their inner dimension, where ``g_rows`` is
    the padded g read one row and one column earlier, so its junk positions
    are the padding's zeros. Forward keeps the padded input (1.13x the input
    at 32x32) where im2col keeps 9x.

``winograd``
    Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2015, "Fast
    Algorithms for Convolutional Neural Networks"). Each 2x2 block of outputs
    comes from a 4x4 input tile (stride 2); per tile and channel pair::

        Y = A^T [ (G g G^T) * (B^T d B) ] A       (* elementwise, 4x4)

    so 16 multiplies give 4 outputs, where the direct way needs 36: 2.25x
    fewer. Summed over the input channels, the 16 elementwise products
    become 16 GEMMs ``(T, C) @ (C, K)`` with T = N*ceil(H/2)*ceil(W/2) tiles:
    32*T*C*K = 8*P*C*K flops. The transforms B^T d B and A^T m A are only
    additions, but they pass over 4x the input (V, 16 values per tile) and
    4x the output (M); they run per block of images that stays in cache.
    Odd H or W: the input is padded to even and the output cropped. The
    weight transform G g G^T is 16*C*K values per call (weights change every
    step). Backward: dx is Winograd of g with the turned kernel, whose
    transform is the forward one with tile rows and columns 0 and 3 swapped
    and channels exchanged (G's rows 1 and 2 are symmetric, rows 0 and 3 are
    each other's reverse), so forward keeps its transformed weight. dw uses
    the shifted GEMMs on the padded input from 16x16 up and the im2col GEMM
    below, where the shifted GEMMs' junk work grows
    (:func:`shifted_weight_grad_pays`); F(3x3, 2x2) Winograd for dw is not
    implemented. Accuracy: the transforms add and subtract before and
    after multiplying, so float32 rounding error is a little larger than the
    direct sum's. Measured max |error| / max |y| against the float64
    reference at VGG-16's layer shapes (batch 8, weights scaled by
    1/sqrt(9C)): Winograd 1e-7 to 5e-7 forward and up to 7e-7 for dx; im2col
    1e-7 to 5e-7 for both; shifted GEMMs 1e-7 to 4e-7. The tests allow 1e-5
    for the GEMM rungs and 5e-5 for Winograd.

``winograd4x4``
    Winograd F(4x4, 3x3): each 4x4 block of outputs from a 6x6 input tile
    (stride 4), 36 multiplies where the direct way needs 144, 4x fewer; the
    products become 36 GEMMs ``(T, C) @ (C, K)`` with T = N*ceil(H/4)*ceil(W/4)
    tiles, 72*T*C*K = 4.5*P*C*K flops. The transforms pass over 2.25x the input
    (6x6 values per 4x4 outputs) and 2.25x the output, less than F(2x2, 3x3)'s
    4x, and the kernel transform makes U, 4x the weight. Each transform is one
    GEMM with a Kronecker matrix: ``(B x B)`` (36, 36) times the (36, T*C)
    gathered tiles, ``(A x A)`` (16, 36) times the (36, T*K) products. The
    matrices come from :func:`toom_cook_matrices` and five interpolation
    points. Backward runs each stage's transpose, in the transformed domain:
    ``dM = (A x A)^T g_tiles``, ``dU = V^T dM`` (36 GEMMs over the tiles, then
    ``dw = (G x G)^T dU``), ``dV = dM U``, ``dD = (B x B)^T dV``, whose 6x6
    tiles are added back where forward read them (neighbours overlap by two
    pixels). So forward keeps V (2.25x the input) and U; im2col keeps 9x the
    input. All three passes do 4x fewer multiplies than the direct sums.
    Accuracy: the points' powers (up to 8 for Lavin & Gray's 2 and -2) enter
    the transforms, so float32 rounding grows. Measured max |error| / max
    |value| against float64 at VGG-16's layer shapes (batch 8, weights scaled
    by 1/sqrt(9C)), forward / dx / dw: 4.5e-6 / 3.8e-6 / 2.9e-6 with the
    points (0, 1, -1, 1/2, -2) used here, 1.4e-5 / 8.9e-6 / 1.1e-5 with Lavin
    & Gray's (0, 1, -1, 2, -2); im2col 5.7e-7 / 6.6e-7 / 5.8e-7. The tests
    allow 1e-4. At 2x2 maps the tile is padded to 4x4, 4x the work, and an
    image's 3 channels make thin GEMMs: "auto" runs im2col for both.

Every rung splits its work over the cores (``tinyvgg.workers``): im2col's
blocks and Winograd's transforms by images, Winograd's products by transformed
position, the shifted GEMMs by rows of positions (their weight gradient by
taps), each part's matrix products on its own thread.

``tinyvgg bench`` measures every rung per layer against PyTorch's conv2d
(results with their commit and machine in ``benchmarks/results/bench-cpu-*.md``
and ``benchmarks/results/design-measurements-cpu.md``). Each rung's products
are most of its time at the wide layers; at 64 channels and 32x32, the copies
and transforms (passes over memory in NumPy) can take longer than the products.

Selection: :func:`use_conv3x3_cpu` (or the environment variable
``TINYVGG_CONV3X3_CPU`` at import) picks the rung ``tinyvgg.ops.conv.Conv3x3``
runs on the CPU; :func:`using_conv3x3_cpu` picks one for a ``with`` block. The
default is ``"auto"``, which picks per layer shape with
:func:`auto_conv3x3_cpu` (F(4x4, 3x3) from 4x4 maps and 8 channels up,
im2col for images and tiny maps); its rule and the timings behind it are in
its docstring. A rung selected by name runs at every size, so its costs can
be studied where they are worst (the shifted GEMMs at 2x2). Winograd's
gradients are not exactly zero where the true gradient is: the transforms
leave rounding residue (1e-13 in float64 beside values of 400, in one
measurement), so work that looks at the exact zeros of a gradient, such as
the receptive-field experiment, selects im2col.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Callable, NamedTuple

import numpy as np

from .. import choices, workers
from . import checks
from .rows import (affine_rows, column_sums, from_pixel_rows, im2col3x3, im2col_product,
                   kernel_matrix, pixel_rows, turned_kernel_rows)

# The adds of the shifted GEMMs and Winograd's transforms run on blocks of about
# this many bytes, so a block is still in the core's own cache (L2 is 1 to 2 MiB on
# current x86 cores) when the next step reads it.
CACHE_BLOCK_BYTES = 1 << 20
# A shifted-GEMM block is at least this many rows: fewer make the products too
# thin for the matrix-multiply routine to run at full speed.
MIN_BLOCK_ROWS = 256
# Winograd's dw uses the shifted GEMMs while their padded positions are at most
# this many times the pixels (16x16 and up), else the im2col GEMM.
SHIFTED_DW_MAX_JUNK = 1.3


class Conv3x3Implementation(NamedTuple):
    """One rung of the ladder.

    ``forward(x, weight, bias, keep_for_dx, keep_for_dw) -> (y, saved)``: y
    (N, K, H, W) and a dict of the arrays backward needs (only those for the
    gradients asked for).

    ``backward(saved, g, need_dx, need_dw, need_db) -> (dx, dw, db)``: saved is
    any object holding forward's arrays as attributes (the op's context, or a
    ``SimpleNamespace``); a gradient not asked for is None.
    """
    forward: Callable
    backward: Callable


# --- naive: loops --------------------------------------------------------------------

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


def naive_forward(x, weight, bias, keep_for_dx, keep_for_dw):
    """``conv_naive``; keeps x and the weight (both gradients need both)."""
    saved = dict(x=x, weight=weight) if keep_for_dx or keep_for_dw else {}
    return conv_naive(x, weight, bias), saved


def naive_backward(saved, g, need_dx, need_dw, need_db):
    """``conv_backward_naive``, which computes all three gradients at once."""
    dx, dw, db = conv_backward_naive(saved.x, saved.weight, g)
    return (dx if need_dx else None), (dw if need_dw else None), (db if need_db else None)


# --- im2col: a 9x copy, one GEMM -------------------------------------------------------

def im2col_forward(x, weight, bias, keep_for_dx, keep_for_dw):
    """im2col rows times the kernel matrix; keeps the kernel matrix for dx, the rows for dw."""
    N, _, H, W = x.shape
    w_matrix = kernel_matrix(weight)
    y_rows, rows = im2col_product(
        x, lambda block, out: affine_rows(block, w_matrix, bias, out=out), w_matrix.shape[0],
        keep_rows=keep_for_dw)
    saved = {}
    if keep_for_dx:
        saved["w_matrix"] = w_matrix
    if keep_for_dw:
        saved["rows"] = rows
    return from_pixel_rows(y_rows, N, H, W), saved


def im2col_backward(saved, g, need_dx, need_dw, need_db):
    """dx = im2col(g) @ turned kernel; dw = g_rows^T @ rows; db = sum of g."""
    N, K, H, W = g.shape
    g_rows = pixel_rows(g)
    dx = dw = db = None
    if need_dx:  # a 3x3 convolution of g with the turned kernel
        turned = turned_kernel_rows(saved.w_matrix)
        dx = from_pixel_rows(
            im2col_product(g, lambda block, out: np.matmul(block, turned, out=out),
                                turned.shape[1])[0], N, H, W)
    if need_dw:
        dw = rows_weight_grad(g_rows, saved.rows)
    if need_db:
        db = column_sums(g_rows)
    return dx, dw, db


def rows_weight_grad(g_rows, rows):
    """dw = g_rows^T @ rows, one GEMM over every pixel, with its columns (u, v, c)
    seen as the (K, C, 3, 3) weight."""
    dw = workers.matmul(g_rows.T, rows)
    return dw.reshape(g_rows.shape[1], 3, 3, -1).transpose(0, 3, 1, 2)


# --- shifted: 9 GEMMs on shifted slices of the padded input ----------------------------

def padded_channels_last(x, height, width):
    """x (N, C, H, W) in a zeroed (N, height, width, C) buffer, at rows 1..H, columns 1..W."""
    N, C, H, W = x.shape
    padded = np.zeros((N, height, width, C), dtype=x.dtype)
    padded[:, 1:H + 1, 1:W + 1, :] = x.transpose(0, 2, 3, 1)
    return padded


def block_rows(itemsize, C, K):
    """Rows per block of the shifted GEMMs: a block of input rows (C wide), its
    product and its sum (K wide) fill about CACHE_BLOCK_BYTES."""
    return max(MIN_BLOCK_ROWS, CACHE_BLOCK_BYTES // (itemsize * (C + 2 * K)))


def tap_shifts(width):
    """Row offsets of the 9 taps (u, v), in (u, v) order, for a padded row pitch of ``width``."""
    return [u * width + v for u in range(3) for v in range(3)]


def shifted_products(padded, taps, bias=None):
    """The 9 shifted GEMMs: rows (len(padded) positions, K) whose row p is the output
    whose 3x3 window starts at padded position p.

    ``taps`` are the 9 (C, K) matrices in (u, v) order. Rows where the window is
    not a real output (the last two rows and columns of each image) are junk;
    the last 2*width + 2 rows, whose windows run off the buffer, are zero.
    """
    N, height, width, C = padded.shape
    K = taps[0].shape[1]
    rows = padded.reshape(-1, C)
    out = np.empty((rows.shape[0], K), dtype=padded.dtype)
    shifts = tap_shifts(width)
    used = max(rows.shape[0] - shifts[-1], 0)
    out[used:] = 0
    block = block_rows(padded.itemsize, C, K)

    def positions(part):  # the blocks of one worker's share of the positions
        product = np.empty((min(block, part.stop - part.start), K), dtype=padded.dtype)
        for start in range(part.start, part.stop, block):
            stop = min(start + block, part.stop)
            acc, scratch = out[start:stop], product[:stop - start]
            np.matmul(rows[start + shifts[0]:stop + shifts[0]], taps[0], out=acc)
            for shift, tap in zip(shifts[1:], taps[1:]):
                np.matmul(rows[start + shift:stop + shift], tap, out=scratch)
                acc += scratch
            if bias is not None:
                acc += bias

    workers.run(positions, used, min_items=block)
    return out


def shifted_weight_grad(padded, g_padded):
    """dw as a (K, 9C) kernel matrix: for each tap, g's rows times the shifted input rows.

    ``g_padded`` is g in a buffer of the same geometry as ``padded`` (at rows and
    columns 1..). Read width + 1 rows further on, it holds at position p the
    gradient of the output whose window starts at p, and zero at every junk
    position, so junk outputs add nothing. The positions are taken in blocks
    that stay in cache while the 9 taps read them.
    """
    N, height, width, C = padded.shape
    K = g_padded.shape[3]
    rows, g_rows = padded.reshape(-1, C), g_padded.reshape(-1, K)
    shifts = tap_shifts(width)
    used = max(rows.shape[0] - shifts[-1], 0)
    g_used = g_rows[width + 1:width + 1 + used]
    dw_taps = np.zeros((9, K, C), dtype=padded.dtype)
    block = block_rows(padded.itemsize, C, K)

    def taps(part):  # a sum over the positions: the workers share out the taps instead
        product = np.empty((K, C), dtype=padded.dtype)
        for start in range(0, used, block):
            stop = min(start + block, used)
            g_block_t = g_used[start:stop].T
            for tap in range(part.start, part.stop):
                shift = shifts[tap]
                np.matmul(g_block_t, rows[start + shift:stop + shift], out=product)
                dw_taps[tap] += product

    workers.run(taps, 9)
    return dw_taps.transpose(1, 0, 2).reshape(K, 9 * C)


def kernel_taps(w_matrix):
    """The 9 (C, K) tap matrices of a (K, 9C) kernel matrix, as views."""
    C = w_matrix.shape[1] // 9
    return [w_matrix[:, tap * C:(tap + 1) * C].T for tap in range(9)]


def turned_kernel_taps(w_matrix):
    """The 9 (K, C) tap matrices of the turned kernel: tap (u, v) is the forward
    tap (2 - u, 2 - v) with in and out channels exchanged, so views again."""
    C = w_matrix.shape[1] // 9
    return [w_matrix[:, (8 - tap) * C:(9 - tap) * C] for tap in range(9)]


def valid_outputs(out_rows, N, height, width, H, W):
    """The (N, K, H, W) outputs inside shifted rows: a view with row pitch ``width``."""
    return out_rows.reshape(N, height, width, out_rows.shape[1])[:, :H, :W].transpose(0, 3, 1, 2)


def shifted_forward(x, weight, bias, keep_for_dx, keep_for_dw):
    """Shifted GEMMs over the padded input; keeps the kernel matrix and the padded input."""
    N, _, H, W = x.shape
    w_matrix = kernel_matrix(weight)
    padded = padded_channels_last(x, H + 2, W + 2)
    saved = {}
    if keep_for_dx:
        saved["w_matrix"] = w_matrix
    if keep_for_dw:
        saved["padded"] = padded
    y_rows = shifted_products(padded, kernel_taps(w_matrix), bias)
    return valid_outputs(y_rows, N, H + 2, W + 2, H, W), saved


def shifted_backward(saved, g, need_dx, need_dw, need_db):
    """dx: shifted GEMMs of the padded g with the turned taps; dw: 9 GEMMs over positions."""
    N, K, H, W = g.shape
    g_padded = padded_channels_last(g, H + 2, W + 2) if need_dx or need_dw else None
    dx = dw = db = None
    if need_dx:
        dx_rows = shifted_products(g_padded, turned_kernel_taps(saved.w_matrix))
        dx = valid_outputs(dx_rows, N, H + 2, W + 2, H, W)
    if need_dw:
        dw = shifted_weight_grad(saved.padded, g_padded).reshape(K, 3, 3, -1).transpose(0, 3, 1, 2)
    if need_db:
        db = g.sum(axis=(0, 2, 3))
    return dx, dw, db


# --- winograd: F(2x2, 3x3) -----------------------------------------------------------

#: Winograd F(2x2, 3x3)'s weight transform (Lavin & Gray's G)
WINOGRAD_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def winograd_weight(w_matrix):
    """U = G g G^T for every channel pair: (4, 4, K, C) from a (K, 9C) kernel matrix.

    With each 3x3 kernel g flattened in row-major (u, v) order, G g G^T is the
    Kronecker product (G x G) times g: one (16, 9) matrix applied to all kernels.
    Its entries (0, +-1/4, +-1/2, 1) are exact in float32."""
    K, C = w_matrix.shape[0], w_matrix.shape[1] // 9
    transform = np.kron(WINOGRAD_G, WINOGRAD_G).astype(w_matrix.dtype)
    return np.tensordot(transform, w_matrix.reshape(K, 9, C), axes=(1, 1)).reshape(4, 4, K, C)


#: tile rows (and columns) 0 and 3 exchanged: the transform of the turned kernel
TURNED_TILE_ORDER = [3, 1, 2, 0]


def winograd_input_tiles(padded, V):
    """V[a, b] = (B^T d B)[a, b] for every 4x4 tile d (stride 2) of a padded block.

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]: applied to
    the tile rows (on whole rows of the block), then to the tile columns.
    padded: (n, 2*th + 2, 2*tw + 2, C); V: (4, 4, n, th, tw, C)."""
    th, tw = V.shape[3], V.shape[4]
    d = [padded[:, a:a + 2 * th:2] for a in range(4)]
    rows = [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
    for a, r in enumerate(rows):
        c = [r[:, :, b:b + 2 * tw:2] for b in range(4)]
        np.subtract(c[0], c[2], out=V[a, 0])
        np.add(c[1], c[2], out=V[a, 1])
        np.subtract(c[2], c[1], out=V[a, 2])
        np.subtract(c[1], c[3], out=V[a, 3])


def winograd_output_tiles(M, Y):
    """The 2x2 output block A^T m A of every tile m, written into Y.

    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]. M: (4, 4, n, th, tw, K);
    Y: (n, th, 2, tw, 2, K), the (n, 2*th, 2*tw, K) output seen as tiles."""
    for out_row in range(2):
        if out_row == 0:  # A^T's first row: m0 + m1 + m2
            s = [M[0, b] + M[1, b] + M[2, b] for b in range(4)]
        else:             # A^T's second row: m1 - m2 - m3
            s = [M[1, b] - M[2, b] - M[3, b] for b in range(4)]
        left, right = Y[:, :, out_row, :, 0], Y[:, :, out_row, :, 1]
        np.add(s[0], s[1], out=left)
        left += s[2]
        np.subtract(s[1], s[2], out=right)
        right -= s[3]


def winograd_products(padded, U, bias=None):
    """F(2x2, 3x3) over a padded channels-last input: (N, 2*th, 2*tw, K) outputs.

    ``U`` is the (4, 4, C, K) transformed weight (views are fine); ``padded`` is
    (N, 2*th + 2, 2*tw + 2, C). Runs per block of images sized for the cache."""
    N, height, width, C = padded.shape
    th, tw = (height - 2) // 2, (width - 2) // 2
    K = U.shape[3]
    Y = np.empty((N, th, 2, tw, 2, K), dtype=padded.dtype)
    U_stack = U.reshape(16, C, K)
    tiles_per_image = th * tw
    per_image = 16 * tiles_per_image * (C + K) * padded.itemsize
    # enough images for the cache budget, but at least MIN_BLOCK_ROWS tiles, so
    # the 16 products stay wide enough to run at full speed
    images = max(1, CACHE_BLOCK_BYTES // max(per_image, 1),
                 -(-MIN_BLOCK_ROWS // max(tiles_per_image, 1)))

    def blocks(part):  # the blocks of one worker's share of the images
        first = min(images, part.stop - part.start)
        V_block = np.empty((4, 4, first, th, tw, C), dtype=padded.dtype)
        M_block = np.empty((16, first * tiles_per_image, K), dtype=padded.dtype)
        for start in range(part.start, part.stop, images):
            stop = min(start + images, part.stop)
            n = stop - start
            V, M = V_block[:, :, :n], M_block[:, :n * tiles_per_image]
            winograd_input_tiles(padded[start:stop], V)
            np.matmul(V.reshape(16, n * tiles_per_image, C), U_stack, out=M)
            M = M.reshape(4, 4, n, th, tw, K)
            if bias is not None:
                # m[1, 1] enters all four outputs of a tile with coefficient +1 (A^T's
                # column 1 is (1, 1)), so adding the bias there adds it to every output
                M[1, 1] += bias
            winograd_output_tiles(M, Y[start:stop])

    workers.run(blocks, N, min_items=images)
    return Y.reshape(N, 2 * th, 2 * tw, K)


def even_padded(x):
    """x in a channels-last buffer padded by one pixel, plus one more row (column)
    below (right of) an odd height (width): the geometry of 2x2 output tiles."""
    N, C, H, W = x.shape
    return padded_channels_last(x, H + H % 2 + 2, W + W % 2 + 2)


def shifted_weight_grad_pays(H, W):
    """Whether Winograd's dw uses the shifted GEMMs (True) or the im2col GEMM (False).

    The shifted GEMMs do junk work at the padding, (H+2)(W+2)/(HW) times the
    flops (with Winograd's even padding); the im2col GEMM does none but copies
    9x the input. The junk work costs more than the copy once the padding is a large
    share of the map, so the shifted GEMMs are used up to SHIFTED_DW_MAX_JUNK (16x16
    maps and up; the measurements are in benchmarks/results/design-measurements-cpu.md)."""
    return (H + H % 2 + 2) * (W + W % 2 + 2) <= SHIFTED_DW_MAX_JUNK * H * W


def winograd_forward(x, weight, bias, keep_for_dx, keep_for_dw):
    """F(2x2, 3x3); keeps the transformed weight for dx, and for dw the padded input
    (shifted GEMMs) or the input itself (im2col GEMM, nothing extra to keep)."""
    N, _, H, W = x.shape
    U = winograd_weight(kernel_matrix(weight))  # (4, 4, K, C)
    padded = even_padded(x)
    saved = {}
    if keep_for_dx:
        saved["winograd_weight"] = U
    if keep_for_dw:
        if shifted_weight_grad_pays(H, W):
            saved["padded"] = padded
        else:
            saved["x"] = x
    Y = winograd_products(padded, U.transpose(0, 1, 3, 2), bias)
    return Y[:, :H, :W].transpose(0, 3, 1, 2), saved


def winograd_backward(saved, g, need_dx, need_dw, need_db):
    """dx: F(2x2, 3x3) of g with the turned kernel; dw: shifted or im2col GEMMs; db: sum of g."""
    N, K, H, W = g.shape
    dx = dw = db = None
    shifted_dw = need_dw and shifted_weight_grad_pays(H, W)
    g_padded = even_padded(g) if need_dx or shifted_dw else None
    if need_dx:
        order = TURNED_TILE_ORDER
        turned = saved.winograd_weight[order][:, order]  # (4, 4, K, C): (K, C) is (in, out) here
        dx = winograd_products(g_padded, turned)[:, :H, :W].transpose(0, 3, 1, 2)
    if shifted_dw:
        dw = shifted_weight_grad(saved.padded, g_padded).reshape(K, 3, 3, -1).transpose(0, 3, 1, 2)
    elif need_dw:
        dw = rows_weight_grad(pixel_rows(g), im2col3x3(saved.x))
    if need_db:
        db = g.sum(axis=(0, 2, 3))
    return dx, dw, db


# --- winograd4x4: F(4x4, 3x3), every pass in the transformed domain --------------------

def toom_cook_matrices(points, m: int, r: int):
    """(A^T, G, B^T) of Winograd's F(m, r) from its m + r - 2 finite interpolation points
    (and the point at infinity), in float64: for a 1-D signal d of m + r - 1 values and
    a filter g of r, ``A^T [(G g) * (B^T d)]`` is the m outputs ``sum_k g[k] d[i + k]``.

    It is the transpose of the Toom-Cook product of two polynomials, evaluated at the
    points and interpolated back. Column j of A^T evaluates the output polynomial at
    p_j (entries p_j^i), row j of G the filter polynomial, divided by
    N_j = prod_{l != j} (p_j - p_l); row j of B^T holds the coefficients of
    prod_{l != j} (x - p_l), the Lagrange numerator. The point at infinity takes the
    leading coefficients: A^T's and G's last entries, and B^T's last row holds
    prod_l (x - p_l). With the points (0, 1, -1, 2, -2) these are Lavin & Gray's."""
    n = m + r - 1
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (n - 1,) or len(set(points)) != n - 1:
        raise ValueError(f"toom_cook_matrices: F({m}, {r}) needs {n - 1} distinct points, "
                         f"got {tuple(points)}")
    AT, G, BT = np.zeros((m, n)), np.zeros((n, r)), np.zeros((n, n))
    for j, pj in enumerate(p):
        others = np.delete(p, j)
        AT[:, j] = pj ** np.arange(m)
        G[j] = pj ** np.arange(r) / np.prod(pj - others)
        # np.poly lists the highest power first, and gives a scalar for no roots
        BT[j, :n - 1] = np.atleast_1d(np.poly(others))[::-1]
    AT[m - 1, n - 1] = G[n - 1, r - 1] = 1.0
    BT[n - 1] = np.poly(p)[::-1]
    return AT, G, BT


#: F(4x4, 3x3)'s finite points: 3 to 4 times less float32 error than Lavin & Gray's
#: (0, 1, -1, 2, -2) (measured in the module docstring), since 1/2 and -2 keep the
#: transforms' powers smaller.
WINOGRAD4X4_POINTS = (0.0, 1.0, -1.0, 0.5, -2.0)
#: (A^T, G, B^T) of F(4x4, 3x3) with those points (the GPU rung uses them too)
WINOGRAD4X4_MATRICES = toom_cook_matrices(WINOGRAD4X4_POINTS, 4, 3)
#: the 2-D transforms on flattened tiles: inputs 6x6 -> 36, kernels 3x3 -> 36,
#: products 36 -> outputs 4x4 (Kronecker products of the 1-D matrices)
_AT, _G, _BT = WINOGRAD4X4_MATRICES
WINOGRAD4X4_INPUT = np.kron(_BT, _BT)      # (36, 36)
WINOGRAD4X4_KERNEL = np.kron(_G, _G)       # (36, 9)
WINOGRAD4X4_OUTPUT = np.kron(_AT, _AT)     # (16, 36)
#: the transformed position whose output coefficients are all 1 (point 1 in both
#: directions): a bias added there is added to all 16 outputs of the tile
WINOGRAD4X4_ALL_ONES = 7 * WINOGRAD4X4_POINTS.index(1.0)


def winograd4x4_kernel(w_matrix):
    """U for a (K, 9C) kernel matrix, (G x G) applied to every 3x3 kernel: a (36, K, C)
    view of (K, 36, C) memory.

    That memory order is the weight's own, (K, 3, 3, C), with 36 values in place of
    9: one product per output channel, with no transposing copy of the weight (U is
    4x the weight: 38 MB at 512 channels, so a copy costs as much as the product).
    Each U[xi] is still a matrix with unit column stride, as the GEMMs need."""
    K, C = w_matrix.shape[0], w_matrix.shape[1] // 9
    transform = WINOGRAD4X4_KERNEL.astype(w_matrix.dtype)
    return np.matmul(transform, w_matrix.reshape(K, 9, C)).transpose(1, 0, 2)


def winograd4x4_tiles(shape):
    """(tile rows, tile columns) covering an H x W output with 4x4 tiles."""
    return -(-shape[0] // 4), -(-shape[1] // 4)


def winograd4x4_forward(x, weight, bias, keep_for_dx, keep_for_dw):
    """F(4x4, 3x3); keeps the transformed kernel U for dx and the transformed input V
    for dw (2.25x the input, where im2col keeps 9x).

    Three stages, each split over the cores (``tinyvgg.workers``): the input transform
    by images, the 36 products by transformed position, the output transform by
    images again."""
    N, C, H, W = x.shape
    K = weight.shape[0]
    th, tw = winograd4x4_tiles((H, W))
    per_image = th * tw
    dtype = x.dtype
    input_transform = WINOGRAD4X4_INPUT.astype(dtype)
    output_transform = WINOGRAD4X4_OUTPUT.astype(dtype)
    x_last = x.transpose(0, 2, 3, 1)
    V = np.empty((36, N * per_image, C), dtype=dtype)
    U = winograd4x4_kernel(kernel_matrix(weight))              # (36, K, C)
    products = np.empty((36, N * per_image, K), dtype=dtype)
    y = np.empty((N, 4 * th, 4 * tw, K), dtype=dtype)

    def transform_inputs(images):
        n = images.stop - images.start
        padded = np.empty((n, 4 * th + 2, 4 * tw + 2, C), dtype=dtype)   # channels-last
        padded[:, 0] = padded[:, H + 1:] = padded[:, :, 0] = padded[:, :, W + 1:] = 0
        padded[:, 1:H + 1, 1:W + 1] = x_last[images]
        tiles = np.empty((6, 6, n, th, tw, C), dtype=dtype)
        for a in range(6):
            for b in range(6):
                tiles[a, b] = padded[:, a:a + 4 * th:4, b:b + 4 * tw:4]
        del padded  # each intermediate is freed once used: the layer's peak memory is lower
        np.matmul(input_transform, tiles.reshape(36, n * per_image * C),
                  out=V[:, _tiles_of(images, per_image)].reshape(36, -1))

    def multiply(positions):
        np.matmul(V[positions], U[positions].transpose(0, 2, 1), out=products[positions])

    def transform_outputs(images):
        n = images.stop - images.start
        out = output_transform @ products[:, _tiles_of(images, per_image)].reshape(36, -1)
        # the 4x4 output tiles back in place: (n, th, 4, tw, 4, K) is (n, 4*th, 4*tw, K)
        y[images].reshape(n, th, 4, tw, 4, K)[...] = (
            out.reshape(4, 4, n, th, tw, K).transpose(2, 3, 0, 4, 1, 5))

    workers.run(transform_inputs, N)
    workers.run(multiply, 36)
    if bias is not None:
        products[WINOGRAD4X4_ALL_ONES] += bias
    workers.run(transform_outputs, N)
    saved = {}
    if keep_for_dx:
        saved["winograd4x4_kernel"] = U
    if keep_for_dw:
        saved["winograd4x4_input"] = V
    return y[:, :H, :W].transpose(0, 3, 1, 2), saved


def _tiles_of(images: slice, per_image: int) -> slice:
    """The tiles (rows of V and of the products) of a slice of images."""
    return slice(images.start * per_image, images.stop * per_image)


def winograd4x4_backward(saved, g, need_dx, need_dw, need_db):
    """Forward's three matrix stages run backwards (each product's transpose):
    dM = (A x A) g, then dU = V^T dM and dw = (G x G)^T dU, and dV = dM U,
    dD = (B x B)^T dV, whose 6x6 tiles are added back where forward read them.
    Split over the cores as forward is: by images, by position, by images."""
    N, K, H, W = g.shape
    th, tw = winograd4x4_tiles((H, W))
    per_image = th * tw
    dtype = g.dtype
    dx = dw = db = None
    if not (need_dx or need_dw):
        return dx, dw, (g.sum(axis=(0, 2, 3)) if need_db else None)
    g_last = g.transpose(0, 2, 3, 1)                                  # (N, H, W, K)
    d_products = np.empty((36, N * per_image, K), dtype=dtype)
    output_transform_t = WINOGRAD4X4_OUTPUT.astype(dtype).T

    def product_grads(images):
        n = images.stop - images.start
        g_part = g_last[images]
        if (H, W) != (4 * th, 4 * tw):   # the cropped outputs get zero gradient
            g_part = np.zeros((n, 4 * th, 4 * tw, K), dtype=dtype)
            g_part[:, :H, :W] = g_last[images]
        g_tiles = np.empty((4, 4, n, th, tw, K), dtype=dtype)
        for a in range(4):
            for b in range(4):
                g_tiles[a, b] = g_part[:, a::4, b::4]
        np.matmul(output_transform_t, g_tiles.reshape(16, n * per_image * K),
                  out=d_products[:, _tiles_of(images, per_image)].reshape(36, -1))

    workers.run(product_grads, N)
    if need_db:
        # forward added the bias at the one position whose outputs are all ones, so its
        # gradient is that position's: a sum over the tiles, not over the 16x more pixels
        db = column_sums(d_products[WINOGRAD4X4_ALL_ONES])
    V = saved.winograd4x4_input if need_dw else None                  # (36, T, C)
    U = saved.winograd4x4_kernel if need_dx else None                 # (36, K, C)
    C = (V if need_dw else U).shape[2]
    # dU in U's memory order (see winograd4x4_kernel)
    dU = np.empty((K, 36, C), dtype=dtype) if need_dw else None
    dV = np.empty((36, N * per_image, C), dtype=dtype) if need_dx else None

    def multiply(positions):
        if need_dw:
            np.matmul(d_products[positions].transpose(0, 2, 1), V[positions],
                      out=dU.transpose(1, 0, 2)[positions])
        if need_dx:
            np.matmul(d_products[positions], U[positions], out=dV[positions])

    workers.run(multiply, 36)
    d_products = None  # freed before dx's buffers are made: a lower peak
    if need_dw:
        kernel_t = WINOGRAD4X4_KERNEL.astype(dtype).T
        dw = np.matmul(kernel_t, dU).reshape(K, 3, 3, C).transpose(0, 3, 1, 2)
    if need_dx:
        input_transform_t = WINOGRAD4X4_INPUT.astype(dtype).T
        d_padded = np.empty((N, 4 * th + 2, 4 * tw + 2, C), dtype=dtype)

        def input_grads(images):
            n = images.stop - images.start
            d_tiles = (input_transform_t @ dV[:, _tiles_of(images, per_image)].reshape(36, -1)
                       ).reshape(6, 6, n, th, tw, C)
            # tile values 0-3 of each row and column cover the padded image once: copied;
            # values 4 and 5 overlap the next tile's 0 and 1 (or the far border): added
            part = d_padded[images]
            part[:, 4 * th:] = part[:, :, 4 * tw:] = 0
            for a in range(6):
                for b in range(6):
                    target = part[:, a:a + 4 * th:4, b:b + 4 * tw:4]
                    if a < 4 and b < 4:
                        target[...] = d_tiles[a, b]
                    else:
                        target += d_tiles[a, b]

        workers.run(input_grads, N)
        dx = d_padded[:, 1:H + 1, 1:W + 1].transpose(0, 3, 1, 2)
    return dx, dw, db


# --- the registry, the selection and "auto" -------------------------------------------

CONV3X3_CPU = {
    "naive": Conv3x3Implementation(naive_forward, naive_backward),
    "im2col": Conv3x3Implementation(im2col_forward, im2col_backward),
    "shifted": Conv3x3Implementation(shifted_forward, shifted_backward),
    "winograd": Conv3x3Implementation(winograd_forward, winograd_backward),
    "winograd4x4": Conv3x3Implementation(winograd4x4_forward, winograd4x4_backward),
}
#: the names ``use_conv3x3_cpu`` accepts: the rungs, and "auto" (a rung per layer shape)
CONV3X3_CPU_CHOICES = (*CONV3X3_CPU, "auto")
#: the rung conv3x3 runs on the CPU unless another is selected
CONV3X3_CPU_DEFAULT = "auto"

# "auto"'s thresholds (see auto_conv3x3_cpu)
AUTO_MIN_CHANNELS = 8           # fewer input channels (an image): im2col
AUTO_MIN_SIZE = 4               # height or width below this: im2col

#: the CPU rung, selected like every kernel choice (tinyvgg.choices): use_conv3x3_cpu(name),
#: ``with using_conv3x3_cpu(name):``, or TINYVGG_CONV3X3_CPU at import. A graph recorded
#: before a change runs its backward with the rung of its forward.
CONV3X3_CPU_CHOICE = choices.Choice("conv3x3_cpu", "conv3x3 CPU implementation",
                                    CONV3X3_CPU_CHOICES, CONV3X3_CPU_DEFAULT)
CONV3X3_CPU_ENV = CONV3X3_CPU_CHOICE.env
use_conv3x3_cpu, using_conv3x3_cpu, conv3x3_cpu = CONV3X3_CPU_CHOICE.functions()


def auto_conv3x3_cpu(in_channels: int, height: int, width: int) -> str:
    """The rung ``"auto"`` runs for a layer with this many input channels and pixels.

    * im2col when the input has fewer than 8 channels (the image: its 9x copy is
      small, and Winograd's 36 GEMMs with C = 3 would be thin) or is smaller than
      4 pixels in height or width (a 2x2 map: F(4x4, 3x3) pads its tile to 4x4,
      4x the work);
    * F(4x4, 3x3) Winograd everywhere else.

    The shifted GEMMs and F(2x2, 3x3) win at no VGG layer; they stay on the ladder
    as the steps between. The per-layer measurements behind the rule are in
    benchmarks/results/design-measurements-cpu.md; ``tinyvgg bench`` measures it
    again on any machine.
    """
    if in_channels < AUTO_MIN_CHANNELS or min(height, width) < AUTO_MIN_SIZE:
        return "im2col"
    return "winograd4x4"


def implementation_for(x_shape, name: str | None = None) -> Conv3x3Implementation:
    """The rung that runs for an input of shape (N, C, H, W): ``name`` (default: the
    selected one), with ``"auto"`` resolved by :func:`auto_conv3x3_cpu`."""
    name = conv3x3_cpu() if name is None else CONV3X3_CPU_CHOICE.checked(name, "implementation_for")
    if name == "auto":
        name = auto_conv3x3_cpu(x_shape[1], x_shape[2], x_shape[3])
    return CONV3X3_CPU[name]


# --- the rungs on plain arrays -----------------------------------------------------------

def _check_arrays(op: str, implementation, x, weight, bias=None, g=None):
    if implementation is not None:
        CONV3X3_CPU_CHOICE.checked(implementation, op)
    for what, array in (("input", x), ("weight", weight), ("bias", bias), ("grad_out", g)):
        if array is not None and not isinstance(array, np.ndarray):
            raise TypeError(f"{op}: {what} must be a NumPy array, got {type(array).__name__}")
    checks.conv_inputs(op, x, weight, bias, 3)
    if g is not None:
        checks.floating(op, input=x, grad_out=g)
        checks.shape(op, "grad_out", g, (x.shape[0], weight.shape[0]) + tuple(x.shape[2:]))


def conv3x3_forward(x, weight, bias=None, implementation: str | None = None):
    """y (N, K, H, W) for NumPy arrays x (N, C, H, W), weight (K, C, 3, 3) and bias (K,),
    computed by the named rung (default: the selected one)."""
    _check_arrays("conv3x3_forward", implementation, x, weight, bias)
    y, _ = implementation_for(x.shape, implementation).forward(x, weight, bias, False, False)
    return y


def conv3x3_backward(x, weight, g, implementation: str | None = None):
    """(dx, dw, db) for the gradient g of the output, computed by the named rung
    (its forward runs first, for what its backward keeps)."""
    _check_arrays("conv3x3_backward", implementation, x, weight, g=g)
    rung = implementation_for(x.shape, implementation)
    _, saved = rung.forward(x, weight, None, True, True)
    return rung.backward(SimpleNamespace(**saved), g, True, True, True)
