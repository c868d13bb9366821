// conv3x3: 3x3 convolution, stride 1, zero padding 1, and its gradients, on
// C-contiguous NCHW arrays: x (N, Cin, H, W), w (Cout, Cin, 3, 3), y and g
// (N, Cout, H, W).
//
//   y[n, co, h, w]   = b[co] + sum_{ci, u, v} w[co, ci, u, v] * x[n, ci, h + u - 1, w + v - 1]
//   dw[co, ci, u, v] = sum_{n, h, w} g[n, co, h, w] * x[n, ci, h + u - 1, w + v - 1]
//   db[co]           = sum_{n, h, w} g[n, co, h, w]
//
// with x read as zero outside the image. The input gradient is the forward
// convolution of g with the kernel turned 180 degrees and its in/out
// channels swapped, so the host runs a forward kernel for it (without bias),
// and every step of the forward ladder below serves it too.
// has_bias is 0 or 1; when it is 0, b is not read (it may be null).
//
// THE FORWARD LADDER. Each step computes the same sums as the one before,
// faster for the reason its paragraph gives. Costs count, per multiply-add
// (FMA), the values read from global memory (or the L1/L2 caches in front
// of it) and the shared-memory load instructions. An SM issues about 4 warp
// FMA instructions per clock but only one shared-memory access (32 distinct
// 4-byte words, or one value broadcast to the whole warp) per clock, so a
// kernel needs well under 0.25 shared loads per FMA before the arithmetic,
// not shared memory, sets its speed.
//
// 1. conv3x3_forward_naive: one thread per output element. Thread i (grid-stride
// loop over the flat NCHW index of y) splits i into (n, co, h, w) and sums its
// 9 * Cin products straight from global memory. Cost: 2 global loads per FMA
// (one of x, one of w), mostly cache hits; the load units set the speed.
//
// 2. conv3x3_forward_tiled: block (16, 16) threads. blockIdx.x is a 16 x 16
// tile of output pixels (tiles numbered row-major over the image),
// blockIdx.y a group of 16 output channels, blockIdx.z an image (a
// grid-stride loop over n lets any batch size fit in gridDim.z). Thread
// (tx, ty) owns the output pixel (16 * tile_row + ty, 16 * tile_col + tx)
// and accumulates its value for all 16 channels of the group in registers.
// Input channels are walked in chunks of 8: the block stages in shared memory
// the chunk's input tile with its 1-pixel halo (8 x 18 x 18 values, zero
// outside the image) and the group's weights for the chunk (16 x 8 x 9
// values); then every thread reads its 3x3 window once per input channel and
// multiplies it with the weights of all 16 output channels (every thread of
// the block reads the same weight: a shared-memory broadcast). Shared memory:
// 3744 values, 14,976 bytes for float and 29,952 for double. Threads whose
// pixel lies outside the image help with the loads but write nothing.
// Cost: 0.013 global loads per FMA (each staged input value serves up to
// 9 x 16 FMAs), but every FMA still reads its weight from shared memory:
// 1.06 shared loads per FMA, so shared memory sets the speed.
//
// 3. conv3x3_forward_register: register blocking. Block (8, 16, 2) = 256
// threads; blockIdx.x is a tile of 16 rows x 32 columns of output pixels
// (row-major over the image), blockIdx.y a group of 16 output channels,
// blockIdx.z an image (grid-stride as above). Thread (tx, ty, tz) owns 4
// consecutive pixels of one row, (16 * tile_row + ty, 32 * tile_col + 4 tx
// + p) for p = 0..3, for 8 output channels, 8 tz .. 8 tz + 7 of the group:
// 32 sums in registers. Input channels are staged 4 at a time: the input
// tile with its halo (4 x 18 x 34 values, rows padded to 35 so that the 4
// rows a warp reads start in 4 different banks) and the weights as
// w_tile[c][tap][o] (4 x 9 x 16 values, o innermost and 16-byte aligned so
// the 8 weights of a thread's channels load as 2 vector loads). Per input
// channel and kernel row u a thread reads the 6 input values its 4 pixels
// see, and per tap the 8 weights, then does 8 x 4 FMAs: each value loaded
// from shared memory feeds 4 or 8 FMAs. Shared memory: 3096 values, 12,384
// bytes for float and 24,768 for double. Cost: 0.010 global loads per FMA;
// 36 shared loads per 288 FMAs (0.125 per FMA, 8 times fewer than step 2).
// Its weakness is the spatial tile: at 14 x 14 (VGG's last block) a
// 16 x 32 tile computes 512 pixel slots for 196 pixels.
//
// 4. conv3x3_forward_implicit_gemm: the convolution as one matrix product
// over the whole batch, y (Cout x N*H*W) = w (Cout x K) @ im2col(x)
// (K x N*H*W), K = 9 * Cin, row k = 9 * ci + 3 * u + v of im2col(x) holding
// x[n, ci, h + u - 1, w + v - 1] at column p = (n * H + h) * W + w. The
// im2col matrix is never stored: each block gathers its tile of it from x,
// zero outside the image. Block b (128 threads, 1-D grid) owns the 64 x 128
// tile of y at output channels 64 * (b % channel_tiles) and pixels
// 128 * (b / channel_tiles), so consecutive blocks share their pixels
// (their slice of x stays in L2). K is walked in slices of 8: thread t
// copies 4 consecutive weights of row t % 64 (one vector load when K is a
// multiple of 4 and w 16-byte aligned) and gathers 4 consecutive pixels,
// columns 4 (t % 32) .. + 3, of rows t / 32 and t / 32 + 4 (for the centre
// column v = 1 of the kernel, when W is a multiple of 4 and x aligned, the
// 4 values are 4 aligned neighbours in one row of x: one vector load;
// otherwise 4 loads with bounds checks). Then thread (tm, tn) = (t / 16,
// t % 16) multiplies: it computes rows 4 tm .. + 3 and 32 + 4 tm .. + 3
// (output channels) and columns 4 tn .. + 3 and 64 + 4 tn .. + 3 (pixels),
// an 8 x 8 register block; per k it reads its 8 + 8 operands as 4 vector
// loads. Shared rows are padded (64 + 8 and 128 + 8 values) for step 5's
// fragment reads; the pads keep rows 16-byte aligned. Runs of 4 pixels in
// one image row are stored with one vector store. Shared memory: 1664
// values, 6,656 bytes for float and 13,312 for double. Cost: 0.023 global
// loads per FMA (each x value is gathered once per tap, from cache), 4
// shared loads per 64 FMAs (0.06 per FMA); every layer shape fills the
// tiles, since pixels are numbered across the batch.
//
// 5. conv3x3_forward_tf32 ("tf32-mma", float only, extern "C"): TF32 tensor cores on
// step 4's tiles and staging. TF32 rounds both operands to 10 mantissa bits
// (relative error up to 2^-11 each) and sums in float, so results differ
// from float32 ones by about 1e-3 of their scale; the host refuses float64
// and never picks this kernel by default. The 4 warps of a block each own a
// 32 x 64 part of the tile, 2 x 8 tiles of 16 x 8 results, computed with
// the PTX instruction mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32
// (inline PTX in mma.cuh: NVRTC has no mma.h). In PTX's fragment layout, lane l with
// group = l / 4 and t = l % 4 holds A values (rows group, group + 8;
// columns t, t + 4), B values (rows t, t + 4; column group) and results
// (rows group, group + 8; columns 2 t, 2 t + 1). The shared-row pads of 8
// make the 32 lanes' fragment reads hit 32 different banks. Per slice a
// warp makes 24 shared loads for 16 mma instructions of 1024 FMAs each, so
// the arithmetic is nearly free and the staging (gathers and 2 barriers per
// slice) sets the speed. Needs compute capability 8.0 or newer: the host
// checks, and older GPUs compile a stub that traps.
//
// 6. winograd4x4 (host-side name; three kernels and the warptile gemm of
// kernels/linear.cu): Winograd F(4x4, 3x3), the CPU ladder's winograd4x4 rung on
// the GPU. Every 4 x 4 block of outputs (a "tile"; T = N * ceil(H/4) *
// ceil(W/4) tiles, numbered (n, tile row, tile column) row-major) comes from
// the 6 x 6 input patch at rows 4 i - 1 .. 4 i + 4 and columns 4 j - 1 ..
// 4 j + 4. The 1-D matrices BT (6 x 6), G (6 x 3) and AT (4 x 6) come from
// the host (tinyvgg.ops.conv_ladder.toom_cook_matrices), row-major in T, and
// 36 transformed positions xi = 6 a + b index the transformed arrays.
// winograd4x4_input_transform: thread t owns (tile, ci) = (t / Cin, t % Cin):
//   it reads the tile's 6 x 6 patch of x[n, ci] (zero outside the image; times
//   mask > 0 when there is a mask, as for step 7) and
//   writes (BT d BT^T)[xi] to V[xi * T * Cin + tile * tile_stride + ci *
//   channel_stride]: V[xi, tile, ci] for the forward pass (strides Cin, 1,
//   consecutive threads writing consecutive values) or V[xi, ci, tile] for the
//   weight gradient (strides 1, T).
// winograd4x4_kernel_transform: thread t owns (ci, co) = (t / Cout, t % Cout)
//   and writes U[xi, ci, co] = (G w[co, ci] G^T)[xi].
// The host then runs the 36 products M[xi] (T x Cout) = V[xi] (T x Cin) @ U[xi]
// (Cin x Cout) as one batched launch of gemm_warptile (128 x 128 tiles).
// winograd4x4_output_transform: thread t owns (tile, co) = (t / Cout, t % Cout):
//   it reads M[:, tile, co] and writes y = AT m AT^T + b[co] for the tile's 4 x 4
//   outputs inside the image, through a ReLU when relu is 1.
// Cost: the products do 36 multiplies per tile, channel pair where a direct
// convolution does 144; the transforms are one pass each over V (2.25x the
// input) and M (2.25x the output). A ReLU after the convolution, and its
// mask in the gradients, are applied inside the transforms (no pass of their
// own).
//
// 7. conv3x3_forward_tile128 ("tile128"): step 4's implicit GEMM on the 128 x 128
// tile machinery of tiles.cuh, which linear.cu's warptile rung also runs on. 8
// warps; warp w owns a 32 x 64 part of the tile and lane l 8 x 8 results of it
// (tiles.cuh says which); K in slices of 8, double-buffered: the next slice's
// weights and im2col gathers are in flight while the block multiplies, and one
// barrier per slice instead of two. Thread t gathers one run of 4 pixels of
// im2col row t / 32 per slice (its pixels located once, before the loop).
// Fused epilogue: the bias, and ReLU when the host asks (relu = 1), are applied
// where y is stored, so a ReLU after the convolution costs no pass over memory;
// a mask (the output of such a fused ReLU) multiplies x where it is gathered,
// which is how the input gradient applies the ReLU's backward. Why faster than
// step 4: half the global loads per FMA (0.016), latency hidden by the second
// buffer and twice the warps per block; and for the whole step, the two ReLU
// passes over each activation are gone. Shared memory: 2 x 2 x 8 x 132 values,
// 16.5 KB for float, 33 KB for double.
//
// 8. conv3x3_forward_tf32_pipelined ("tf32-pipelined", float only, extern "C"):
// step 7's implicit GEMM on the tensor cores, on the pipelined tile of mma.cuh
// (whose header says what one thread, warp and block compute): 8 warps, warp w
// the 64 x 32 part at output channels 64 (w / 4) and pixels 32 (w % 4), as 4 x 4
// mma.sync.m16n8k8 products per k-step of 8; K in slices of 16 that cp.async
// copies into three shared buffers, two slices ahead of the multiply. w is
// copied k-contiguous, 16 bytes at a time when 9 Cin is a multiple of 4; im2col(x)
// item-contiguous: thread t copies rows t / 32 and t / 32 + 8 of each slice at
// its 4 pixels 4 (t % 32) .. + 3 (located once), 16 bytes at a time when they
// are 4 neighbours in one image row and the tap does not shift the column, else
// 4 bytes at a time; outside the image the copy's source size is 0 and the
// value lands as zero. Bias and ReLU where y is stored; a fused ReLU's mask is
// applied to g in a pass first (a copy cannot multiply). Why faster than step
// 5: no register staging and one barrier per slice instead of two, the next two
// slices' copies in flight during the multiply, shared reads without bank
// conflicts, and twice the tile. Results in TF32 precision.
//
// 9. conv3x3_forward_3xtf32 ("3xtf32", float only, extern "C"): step 8 with each
// operand v split into TF32 parts big = tf32(v) and small = tf32(v - big), and
// small*big + big*small + big*big added per fragment pair (small*small is below
// float's rounding): float32-level errors from the tensor cores, three products
// where step 8 makes one.
//
// 10. conv3x3_forward_tf32_nhwc ("tf32-nhwc") and 11. conv3x3_forward_3xtf32_nhwc
// ("3xtf32-nhwc"), float only, extern "C": steps 8 and 9 with x read in NHWC order
// and K numbered k = tap Cin + ci (the host converts x and reorders w to Cout x 3 x 3
// x Cin; the conversions are part of the op). im2col(x) is then copied
// k-contiguous: thread t copies pixels t / 4 and t / 4 + 64 of the tile (located
// once) at k 4 (t % 4) .. + 3 of each slice, following its (tap, channel) from
// slice to slice (TapRun) without dividing. With Cin a multiple of 4 each run is 4
// neighbouring channels of one tap at one pixel: one 16-byte copy for every tap,
// where step 8 copies 4 bytes at a time for the taps that shift the column (6 of 9).
// Against that stand the two conversions, a pass over x and one over w: which
// layout wins is for a GPU to measure.
//
// THE WEIGHT-GRADIENT LADDER.
//
// 1. conv3x3_weight_grad: one block of 256 threads per (co, ci) pair
// (blockIdx.x = co * Cin + ci). The threads stride over the n * H * W output
// pixels, each adding g[n, co, h, w] times the 9 neighbours of (h, w) in
// x[n, ci] into 9 registers; a shared-memory tree reduction (9 x 256 values)
// then adds the 256 partial sums in a fixed order, and threads 0..8 write
// dw[co, ci, :, :]. Cost: 10 global loads per 9 FMAs, and g is read Cin
// times, x Cout times.
//
// 2. conv3x3_weight_grad_implicit_gemm: dw (Cout x K) = g (Cout x N*H*W) @
// im2col(x)^T, with step 4's 64 x 128 tiles, 128 threads, 8 x 8 results
// per thread and inner loop; the reduction runs over pixels, 8 per slice.
// Block (blockIdx.x, blockIdx.y, blockIdx.z) computes dw rows (output
// channels) 64 * blockIdx.y .. + 63 and columns (ci, u, v) 128 * blockIdx.x
// .. + 127 over split blockIdx.z of the pixels: split s of S = gridDim.z
// covers pixels [s * ceil(NHW / S), (s + 1) * ceil(NHW / S)), and its sums go
// to partial[s, co, k]. The host adds the splits in order (conv1x1_sum_splits
// of kernels/conv1x1.cu). Thread t stages pixel t % 8 of each slice: 4
// output channels of g (rows t / 8 + 16 i) and 8 columns of im2col(x)
// (t / 8 + 16 j), so a warp reads runs of 8 neighbouring pixels; it steps
// its pixel's (n, h, w) along by 8 instead of dividing, and splits its 8
// columns into (channel, tap) once, before the loop. Cost as step 4.
//
// 3. winograd4x4 (host-side name): step 6's stages transposed. The host
// transforms x into V[xi, ci, tile] (winograd4x4_input_transform, channel-major
// strides). winograd4x4_output_adjoint: thread t owns (co, tile) = (t / T,
// t % T) and writes dM[xi, co, tile] = (AT^T g AT)[xi] for the tile's 4 x 4
// block of g (zero past the image's edge; g times mask > 0 when there is a mask). Then the 36 products dU[xi]^T (Cout x
// Cin) = dM[xi] @ V[xi]^T over the tiles are one batched launch of gemm_warptile,
// split along the tiles (K) until the GPU is full, the splits added in order; and
// winograd4x4_kernel_adjoint: thread t owns (co, ci) = (t / Cin, t % Cin) and
// writes dw[co, ci] = G^T dU[:, ci, co] G (3 x 3). Cost: a quarter of a direct
// weight gradient's multiplies; each transform is one pass over its arrays.
//
// 4. conv3x3_weight_grad_tile128 ("tile128"): step 2 on the 128 x 128 tile
// machinery: dw (Cout x 9 Cin) = g' (Cout x pixels) @ im2col(x)^T, both operands
// k-contiguous (4 consecutive pixels per thread and slice, stashed transposed),
// double-buffered, one barrier per slice. The pixels are split among blocks
// (blockIdx.z) in whole slices when dw has few tiles; the splits' sums are added
// in order by conv1x1_sum_splits. A thread follows its 4 pixels from slice to
// slice by stepping them 8 along (PixelRun), without dividing; its column (ci,
// tap) is split once. g' is g, or g * (mask > 0) when the ReLU after the
// convolution was fused into it: the mask is applied where g is loaded.
//
// 5. conv3x3_weight_grad_tf32_pipelined ("tf32-pipelined") and 6.
// conv3x3_weight_grad_3xtf32 ("3xtf32"), float only, extern "C": step 4's
// product on forward step 8's pipelined tensor-core tile, in TF32 or 3xTF32.
// Both operands are k-contiguous, K being the pixels: thread t copies output
// channels t / 4 and t / 4 + 64 of g and columns (ci, tap) t / 4 and t / 4 + 64
// of im2col(x)^T at its 4 pixels 4 (t % 4) .. + 3 of each slice of 16, which it
// steps along from slice to slice (PixelRun); g 16 bytes at a time when the 4
// pixels are neighbours in one image. Pixels split among blocks in whole slices,
// the splits added in order by conv1x1_sum_splits; g arrives masked when a ReLU
// was fused into the forward pass.
//
// 7. conv3x3_weight_grad_tf32_nhwc ("tf32-nhwc") and 8.
// conv3x3_weight_grad_3xtf32_nhwc ("3xtf32-nhwc"), float only, extern "C": steps 5
// and 6 with x read in NHWC order (converted by the host) and dw's columns numbered
// (tap, channel). im2col(x)^T is copied item-contiguous: thread t copies pixels
// t / 32 and t / 32 + 8 of each slice (each followed by its own PixelRun of one) at
// columns 4 (t % 32) .. + 3, which with Cin a multiple of 4 are 4 neighbouring
// channels of one tap: one 16-byte copy where steps 5 and 6 make four 4-byte ones.
// The host adds the splits and reorders dw from (co, tap, ci) to (co, ci, tap).
//
// All weight gradients are deterministic: no atomics, fixed summation order.
//
// conv3x3_bias_grad: one block of 256 threads per channel c of g (N, C, HW):
// each thread adds every 256th value of g[:, c, :], then a shared-memory tree
// reduction gives db[c]. conv1x1's backward uses it too. With a mask (the output
// of a ReLU that followed the convolution, or null), g counts only where mask > 0.

#include "tiles.cuh"    // aligned16, load4, store4, load_run4, the 128 x 128 tile machinery
#include "mma.cuh"      // TF32 rounding, mma.sync, the pipelined tensor-core tile machinery

// g where the ReLU that followed the convolution passed its input (mask[i] > 0), else 0;
// g itself when there is no mask. mask is that ReLU's output, of g's shape.
template <typename T>
__device__ __forceinline__ T relu_masked(T g, const T* mask, long long i) {
    return mask && !(mask[i] > T(0)) ? T(0) : g;
}

#define CONV_TILE 16                      // output tile side, and block side
#define CONV_HALO_TILE (CONV_TILE + 2)    // input tile side with the 1-pixel halo
#define CONV_OUT_GROUP 16                 // output channels per block
#define CONV_IN_CHUNK 8                   // input channels staged at a time
#define CONV_BLOCK_THREADS (CONV_TILE * CONV_TILE)
#define REDUCE_THREADS 256                // block size of the two reductions (a power of 2)

// conv3x3_forward_register: block (REG_THREADS_X, REG_ROWS, REG_LAYERS)
#define REG_ROWS 16                       // output rows per block, one per thread row
#define REG_COLS 32                       // output columns per block
#define REG_PIXELS 4                      // consecutive pixels per thread
#define REG_THREADS_X 8                   // REG_COLS / REG_PIXELS
#define REG_CHANNELS 8                    // output channels per thread
#define REG_LAYERS 2                      // thread layers, each with its own 8 channels
#define REG_OUT_GROUP 16                  // output channels per block: REG_LAYERS * REG_CHANNELS
#define REG_IN_CHUNK 4                    // input channels staged at a time
#define REG_HALO_ROWS (REG_ROWS + 2)
#define REG_HALO_COLS (REG_COLS + 2)
#define REG_HALO_STRIDE (REG_HALO_COLS + 1)   // odd row length: see the header
#define REG_THREADS (REG_THREADS_X * REG_ROWS * REG_LAYERS)

// The implicit-GEMM kernels (forward, TF32 forward, weight gradient): 1-D blocks.
#define IG_BM 64                          // rows of the product tile (output channels)
#define IG_BN 128                         // columns of the product tile
#define IG_BK 8                           // reduction slice staged at a time
#define IG_THREADS 128                    // 16 x 8 threads, 8 x 8 results each
#define IG_A_STRIDE (IG_BM + 8)           // padded shared rows: see the header
#define IG_B_STRIDE (IG_BN + 8)

template <typename T>
__global__ void conv3x3_forward_naive(const T* x, const T* w, const T* b, T* y,
                                      long long Cin, long long Cout, long long H, long long W,
                                      long long has_bias, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long col = i % W;
        const long long row = (i / W) % H;
        const long long co = (i / (W * H)) % Cout;
        const long long image = i / (W * H * Cout);
        T acc = T(0);
        for (long long ci = 0; ci < Cin; ++ci) {
            const T* x_plane = x + (image * Cin + ci) * H * W;
            const T* w_taps = w + (co * Cin + ci) * 9;
            for (int u = 0; u < 3; ++u) {
                const long long r = row + u - 1;
                if (r < 0 || r >= H) continue;
                for (int v = 0; v < 3; ++v) {
                    const long long c = col + v - 1;
                    if (c < 0 || c >= W) continue;
                    acc += w_taps[u * 3 + v] * x_plane[r * W + c];
                }
            }
        }
        y[i] = has_bias ? acc + b[co] : acc;
    }
}

template <typename T>
__global__ void conv3x3_forward_tiled(const T* x, const T* w, const T* b, T* y,
                                      long long N, long long Cin, long long Cout,
                                      long long H, long long W, long long has_bias) {
    __shared__ T in_tile[CONV_IN_CHUNK][CONV_HALO_TILE][CONV_HALO_TILE];
    __shared__ T w_tile[CONV_OUT_GROUP][CONV_IN_CHUNK][9];

    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int thread = ty * CONV_TILE + tx;
    const long long tiles_per_row = (W + CONV_TILE - 1) / CONV_TILE;
    const long long row0 = ((long long)blockIdx.x / tiles_per_row) * CONV_TILE;
    const long long col0 = ((long long)blockIdx.x % tiles_per_row) * CONV_TILE;
    const long long co0 = (long long)blockIdx.y * CONV_OUT_GROUP;
    const long long row = row0 + ty;
    const long long col = col0 + tx;

    for (long long image = blockIdx.z; image < N; image += gridDim.z) {
        T acc[CONV_OUT_GROUP];
#pragma unroll
        for (int o = 0; o < CONV_OUT_GROUP; ++o) acc[o] = T(0);

        for (long long ci0 = 0; ci0 < Cin; ci0 += CONV_IN_CHUNK) {
            const int chunk = Cin - ci0 < CONV_IN_CHUNK ? (int)(Cin - ci0) : CONV_IN_CHUNK;

            // Consecutive threads take consecutive columns of a tile row: coalesced reads.
            for (int e = thread; e < CONV_IN_CHUNK * CONV_HALO_TILE * CONV_HALO_TILE;
                 e += CONV_BLOCK_THREADS) {
                const int c = e / (CONV_HALO_TILE * CONV_HALO_TILE);
                const int r = (e / CONV_HALO_TILE) % CONV_HALO_TILE;
                const int q = e % CONV_HALO_TILE;
                const long long gr = row0 + r - 1;
                const long long gc = col0 + q - 1;
                T v = T(0);
                if (c < chunk && gr >= 0 && gr < H && gc >= 0 && gc < W)
                    v = x[((image * Cin + ci0 + c) * H + gr) * W + gc];
                in_tile[c][r][q] = v;
            }
            // The 9 * chunk weights of one output channel are contiguous in w.
            for (int e = thread; e < CONV_OUT_GROUP * CONV_IN_CHUNK * 9; e += CONV_BLOCK_THREADS) {
                const int o = e / (CONV_IN_CHUNK * 9);
                const int c = (e / 9) % CONV_IN_CHUNK;
                const int k = e % 9;
                T v = T(0);
                if (co0 + o < Cout && c < chunk)
                    v = w[((co0 + o) * Cin + ci0 + c) * 9 + k];
                w_tile[o][c][k] = v;
            }
            __syncthreads();

            for (int c = 0; c < chunk; ++c) {
                T window[9];
#pragma unroll
                for (int u = 0; u < 3; ++u)
#pragma unroll
                    for (int v = 0; v < 3; ++v)
                        window[u * 3 + v] = in_tile[c][ty + u][tx + v];
#pragma unroll
                for (int o = 0; o < CONV_OUT_GROUP; ++o) {
                    T sum = acc[o];
#pragma unroll
                    for (int k = 0; k < 9; ++k) sum += w_tile[o][c][k] * window[k];
                    acc[o] = sum;
                }
            }
            // The next chunk overwrites the tiles: wait until every thread is done with them.
            __syncthreads();
        }

        if (row < H && col < W) {
#pragma unroll
            for (int o = 0; o < CONV_OUT_GROUP; ++o) {
                const long long co = co0 + o;
                if (co < Cout)
                    y[((image * Cout + co) * H + row) * W + col] = has_bias ? acc[o] + b[co] : acc[o];
            }
        }
    }
}

template <typename T>
__global__ void conv3x3_forward_register(const T* x, const T* w, const T* b, T* y,
                                         long long N, long long Cin, long long Cout,
                                         long long H, long long W, long long has_bias) {
    __shared__ T in_tile[REG_IN_CHUNK][REG_HALO_ROWS][REG_HALO_STRIDE];
    __shared__ __align__(16) T w_tile[REG_IN_CHUNK][9][REG_OUT_GROUP];  // [c][tap][o]

    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int tz = threadIdx.z;
    const int thread = (tz * REG_ROWS + ty) * REG_THREADS_X + tx;
    const long long tiles_per_row = (W + REG_COLS - 1) / REG_COLS;
    const long long row0 = ((long long)blockIdx.x / tiles_per_row) * REG_ROWS;
    const long long col0 = ((long long)blockIdx.x % tiles_per_row) * REG_COLS;
    const long long co0 = (long long)blockIdx.y * REG_OUT_GROUP;
    const int first_channel = tz * REG_CHANNELS;  // within the block's group
    const long long row = row0 + ty;
    const long long col = col0 + tx * REG_PIXELS;  // the first of the thread's pixels

    for (long long image = blockIdx.z; image < N; image += gridDim.z) {
        T acc[REG_CHANNELS][REG_PIXELS];
#pragma unroll
        for (int o = 0; o < REG_CHANNELS; ++o)
#pragma unroll
            for (int p = 0; p < REG_PIXELS; ++p) acc[o][p] = T(0);

        for (long long ci0 = 0; ci0 < Cin; ci0 += REG_IN_CHUNK) {
            const int chunk = Cin - ci0 < REG_IN_CHUNK ? (int)(Cin - ci0) : REG_IN_CHUNK;

            // Consecutive threads take consecutive columns of a tile row: coalesced reads.
            // Unrolled 3 times, not 10: loads enough in flight, and few enough registers
            // (about 128 for float) that two blocks fit on an SM.
#pragma unroll 3
            for (int e = thread; e < REG_IN_CHUNK * REG_HALO_ROWS * REG_HALO_COLS;
                 e += REG_THREADS) {
                const int c = e / (REG_HALO_ROWS * REG_HALO_COLS);
                const int r = (e / REG_HALO_COLS) % REG_HALO_ROWS;
                const int q = e % REG_HALO_COLS;
                const long long gr = row0 + r - 1;
                const long long gc = col0 + q - 1;
                T v = T(0);
                if (c < chunk && gr >= 0 && gr < H && gc >= 0 && gc < W)
                    v = x[((image * Cin + ci0 + c) * H + gr) * W + gc];
                in_tile[c][r][q] = v;
            }
            // Read in w's order (the 9 * chunk weights of one output channel are
            // contiguous), stored with the output channel innermost.
#pragma unroll 1
            for (int e = thread; e < REG_OUT_GROUP * REG_IN_CHUNK * 9; e += REG_THREADS) {
                const int o = e / (REG_IN_CHUNK * 9);
                const int c = (e / 9) % REG_IN_CHUNK;
                const int k = e % 9;
                T v = T(0);
                if (co0 + o < Cout && c < chunk)
                    v = w[((co0 + o) * Cin + ci0 + c) * 9 + k];
                w_tile[c][k][o] = v;
            }
            __syncthreads();

            // Channels past the chunk are zeros in both tiles: the loop can have a fixed length.
#pragma unroll
            for (int c = 0; c < REG_IN_CHUNK; ++c) {
#pragma unroll
                for (int u = 0; u < 3; ++u) {
                    T in_row[REG_PIXELS + 2];
#pragma unroll
                    for (int q = 0; q < REG_PIXELS + 2; ++q)
                        in_row[q] = in_tile[c][ty + u][tx * REG_PIXELS + q];
#pragma unroll
                    for (int v = 0; v < 3; ++v) {
                        T weight[REG_CHANNELS];
#pragma unroll
                        for (int o = 0; o < REG_CHANNELS; ++o)
                            weight[o] = w_tile[c][u * 3 + v][first_channel + o];
#pragma unroll
                        for (int o = 0; o < REG_CHANNELS; ++o)
#pragma unroll
                            for (int p = 0; p < REG_PIXELS; ++p)
                                acc[o][p] += weight[o] * in_row[p + v];
                    }
                }
            }
            // The next chunk overwrites the tiles: wait until every thread is done with them.
            __syncthreads();
        }

        if (row < H) {
#pragma unroll
            for (int o = 0; o < REG_CHANNELS; ++o) {
                const long long co = co0 + first_channel + o;
                if (co >= Cout) continue;
                const T bias = has_bias ? b[co] : T(0);
                T* y_row = y + ((image * Cout + co) * H + row) * W;
#pragma unroll
                for (int p = 0; p < REG_PIXELS; ++p)
                    if (col + p < W) y_row[col + p] = acc[o][p] + bias;
            }
        }
    }
}

// --- the implicit-GEMM kernels' parts ---------------------------------------------

// aligned16, load4, store4 and load_run4 (the 16-byte vector accesses) are in common.cuh.

// Pixel p = (image * H + row) * W + col of the batch; valid is false from p = end on.
struct Pixel {
    int image, row, col;
    bool valid;
};

__device__ __forceinline__ Pixel locate(long long p, long long end, long long H, long long W) {
    Pixel at = {0, 0, 0, p < end};
    if (at.valid) {
        at.image = (int)(p / (H * W));
        const long long hw = p - at.image * H * W;
        at.row = (int)(hw / W);
        at.col = (int)(hw - at.row * W);
    }
    return at;
}

// The index of channel c at pixel `at` in a C-contiguous (N, C, H, W) array.
__device__ __forceinline__ long long nchw_index(const Pixel& at, long long c, long long C,
                                                long long H, long long W) {
    return ((at.image * C + c) * H + at.row) * W + at.col;
}

// y[n, co, pixel] = v[j] for the run of 4 pixels out[0..3] of channel co: one vector store
// when the run lies in one image row (vector: W a multiple of 4, y 16-byte aligned).
template <typename T>
__device__ __forceinline__ void store_pixel_run(T* y, const Pixel* out, long long co,
                                                long long Cout, long long H, long long W,
                                                bool vector, const T* v) {
    if (vector && out[0].valid) {
        store4(y + nchw_index(out[0], co, Cout, H, W), v);
        return;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j)
        if (out[j].valid) y[nchw_index(out[j], co, Cout, H, W)] = v[j];
}

// a_tile[k][m] = w[co0 + m, k0 + k] of the (Cout, K) weight matrix, zero outside it.
// Thread t copies the run of 4 values at row t % 64, columns 4 (t / 64) .. + 3: a warp
// takes 32 consecutive rows, so its stores down a column of a_tile meet 32 banks.
template <typename T>
__device__ __forceinline__ void stage_weights(T (*a_tile)[IG_A_STRIDE], const T* w, long long co0,
                                              long long Cout, long long k0, long long K,
                                              bool vector, int thread) {
    const int m = thread % IG_BM;
    const int kq = (thread / IG_BM) * 4;
    T v[4] = {T(0), T(0), T(0), T(0)};
    if (co0 + m < Cout) load_run4(w + (co0 + m) * K, k0 + kq, K, vector, v);
#pragma unroll
    for (int j = 0; j < 4; ++j) a_tile[kq + j][m] = v[j];
}

// b_tile[k][q] = im2col(x)[k0 + k, p0 + q]: for k = 9 ci + 3 u + v and pixel p = (n, h, w),
// x[n, ci, h + u - 1, w + v - 1], zero outside the image and past the batch. Thread t
// gathers rows t / 32 and t / 32 + 4 for its 4 pixels at[0..3], columns 4 (t % 32) .. + 3.
// vector: the 4 pixels lie in one image row from a column that is a multiple of 4, W is a
// multiple of 4 and x is 16-byte aligned, so the centre column's 4 values are one vector.
template <typename T>
__device__ __forceinline__ void stage_im2col(T (*b_tile)[IG_B_STRIDE], const T* x,
                                             const Pixel* at, bool vector, long long k0,
                                             long long K, long long Cin, long long H,
                                             long long W, int thread) {
    const int q = (thread % 32) * 4;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int kk = thread / 32 + 4 * half;
        const long long k = k0 + kk;
        T v[4] = {T(0), T(0), T(0), T(0)};
        if (k < K) {
            const long long ci = k / 9;
            const int tap = (int)(k - ci * 9);
            const int du = tap / 3 - 1;
            const int dv = tap % 3 - 1;
            if (vector && dv == 0) {
                const long long r = at[0].row + du;
                if (r >= 0 && r < H)
                    load4(x + ((at[0].image * Cin + ci) * H + r) * W + at[0].col, v);
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const long long r = at[j].row + du;
                    const long long c = at[j].col + dv;
                    if (at[j].valid && r >= 0 && r < H && c >= 0 && c < W)
                        v[j] = x[((at[j].image * Cin + ci) * H + r) * W + c];
                }
            }
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) b_tile[kk][q + j] = v[j];
    }
}

template <typename T>
__global__ void conv3x3_forward_implicit_gemm(const T* x, const T* w, const T* b, T* y,
                                              long long N, long long Cin, long long Cout,
                                              long long H, long long W, long long has_bias) {
    __shared__ __align__(16) T a_tile[IG_BK][IG_A_STRIDE];  // [k][m] = w[co0 + m, k0 + k]
    __shared__ __align__(16) T b_tile[IG_BK][IG_B_STRIDE];  // [k][q] = im2col(x)[k0 + k, p0 + q]

    const int thread = threadIdx.x;
    const int tm = thread / 16;
    const int tn = thread % 16;
    const long long channel_tiles = (Cout + IG_BM - 1) / IG_BM;
    const long long co0 = ((long long)blockIdx.x % channel_tiles) * IG_BM;
    const long long p0 = ((long long)blockIdx.x / channel_tiles) * IG_BN;
    const long long P = N * H * W;
    const long long K = 9 * Cin;
    const bool w_vector = K % 4 == 0 && aligned16(w);

    // The 4 pixels this thread gathers, located once (no division in the K loop).
    Pixel at[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) at[j] = locate(p0 + (thread % 32) * 4 + j, P, H, W);
    const bool x_vector = W % 4 == 0 && aligned16(x) && at[0].valid;

    T acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = T(0);

    for (long long k0 = 0; k0 < K; k0 += IG_BK) {
        stage_weights(a_tile, w, co0, Cout, k0, K, w_vector, thread);
        stage_im2col(b_tile, x, at, x_vector, k0, K, Cin, H, W, thread);
        __syncthreads();
        multiply_slice<IG_BK, IG_BM, IG_BN, IG_A_STRIDE, IG_B_STRIDE>(a_tile, b_tile, acc, tm, tn);
        // The next slice overwrites the tiles: wait until every thread is done with them.
        __syncthreads();
    }

    // With W a multiple of 4, each run of 4 pixels lies in one image row: one vector store.
    const bool y_vector = W % 4 == 0 && aligned16(y);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        Pixel out[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) out[j] = locate(p0 + half * (IG_BN / 2) + 4 * tn + j, P, H, W);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const long long co = co0 + (i / 4) * (IG_BM / 2) + 4 * tm + i % 4;
            if (co >= Cout) continue;
            const T bias = has_bias ? b[co] : T(0);
            T v[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) v[j] = acc[i][4 * half + j] + bias;
            store_pixel_run(y, out, co, Cout, H, W, y_vector, v);
        }
    }
}

extern "C" __global__ void conv3x3_forward_tf32(const float* x, const float* w, const float* b,
                                                float* y, long long N, long long Cin,
                                                long long Cout, long long H, long long W,
                                                long long has_bias) {
    __shared__ __align__(16) float a_tile[IG_BK][IG_A_STRIDE];
    __shared__ __align__(16) float b_tile[IG_BK][IG_B_STRIDE];

    const int thread = threadIdx.x;
    const int warp = thread / 32;
    const int group = (thread % 32) / 4;  // PTX's groupID
    const int t = thread % 4;             // PTX's threadID_in_group
    const int warp_m = (warp / 2) * 32;   // the warp's 32 x 64 part of the block tile
    const int warp_n = (warp % 2) * 64;
    const long long channel_tiles = (Cout + IG_BM - 1) / IG_BM;
    const long long co0 = ((long long)blockIdx.x % channel_tiles) * IG_BM;
    const long long p0 = ((long long)blockIdx.x / channel_tiles) * IG_BN;
    const long long P = N * H * W;
    const long long K = 9 * Cin;
    const bool w_vector = K % 4 == 0 && aligned16(w);

    Pixel at[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) at[j] = locate(p0 + (thread % 32) * 4 + j, P, H, W);
    const bool x_vector = W % 4 == 0 && aligned16(x) && at[0].valid;

    float acc[2][8][4];  // [16-row tile][8-column tile][fragment value]
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[mt][nt][r] = 0.0f;

    for (long long k0 = 0; k0 < K; k0 += IG_BK) {
        stage_weights(a_tile, w, co0, Cout, k0, K, w_vector, thread);
        stage_im2col(b_tile, x, at, x_vector, k0, K, Cin, H, W, thread);
        __syncthreads();

        unsigned a_frag[2][4], b_frag[8][2];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
            const int m = warp_m + 16 * mt + group;
            a_frag[mt][0] = tf32_bits(a_tile[t][m]);
            a_frag[mt][1] = tf32_bits(a_tile[t][m + 8]);
            a_frag[mt][2] = tf32_bits(a_tile[t + 4][m]);
            a_frag[mt][3] = tf32_bits(a_tile[t + 4][m + 8]);
        }
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
            const int n = warp_n + 8 * nt + group;
            b_frag[nt][0] = tf32_bits(b_tile[t][n]);
            b_frag[nt][1] = tf32_bits(b_tile[t + 4][n]);
        }
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) mma_tf32(acc[mt][nt], a_frag[mt], b_frag[nt]);
        // The next slice overwrites the tiles: wait until every warp is done with them.
        __syncthreads();
    }

    // Result r of tile (mt, nt) is row 16 mt + group + 8 (r / 2), column 8 nt + 2 t + r % 2.
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const Pixel out = locate(p0 + warp_n + 8 * nt + 2 * t + e, P, H, W);
            if (!out.valid) continue;
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const long long co = co0 + warp_m + 16 * mt + group + 8 * half;
                    if (co < Cout)
                        y[nchw_index(out, co, Cout, H, W)] =
                            acc[mt][nt][2 * half + e] + (has_bias ? b[co] : 0.0f);
                }
            }
        }
    }
}

template <typename T>
__global__ void conv3x3_weight_grad(const T* x, const T* g, T* dw, long long N, long long Cin,
                                    long long Cout, long long H, long long W) {
    __shared__ T partial[9][REDUCE_THREADS];

    const int thread = threadIdx.x;
    const long long co = blockIdx.x / Cin;
    const long long ci = blockIdx.x % Cin;
    const long long hw = H * W;

    T acc[9];
#pragma unroll
    for (int k = 0; k < 9; ++k) acc[k] = T(0);

    for (long long image = 0; image < N; ++image) {
        const T* g_plane = g + (image * Cout + co) * hw;
        const T* x_plane = x + (image * Cin + ci) * hw;
        for (long long p = thread; p < hw; p += REDUCE_THREADS) {
            const long long row = p / W;
            const long long col = p % W;
            const T grad = g_plane[p];
#pragma unroll
            for (int u = 0; u < 3; ++u) {
                const long long r = row + u - 1;
#pragma unroll
                for (int v = 0; v < 3; ++v) {
                    const long long c = col + v - 1;
                    if (r >= 0 && r < H && c >= 0 && c < W)
                        acc[u * 3 + v] += grad * x_plane[r * W + c];
                }
            }
        }
    }

#pragma unroll
    for (int k = 0; k < 9; ++k) partial[k][thread] = acc[k];
    __syncthreads();
    for (int half = REDUCE_THREADS / 2; half > 0; half /= 2) {
        if (thread < half) {
#pragma unroll
            for (int k = 0; k < 9; ++k) partial[k][thread] += partial[k][thread + half];
        }
        __syncthreads();
    }
    if (thread < 9) dw[(long long)blockIdx.x * 9 + thread] = partial[thread][0];
}

template <typename T>
__global__ void conv3x3_weight_grad_implicit_gemm(const T* x, const T* g, T* partial, long long N,
                                                  long long Cin, long long Cout, long long H,
                                                  long long W) {
    __shared__ __align__(16) T a_tile[IG_BK][IG_A_STRIDE];  // [kk][m] = g[pixel pc + kk, co0 + m]
    __shared__ __align__(16) T b_tile[IG_BK][IG_B_STRIDE];  // [kk][j] = im2col(x)[k0 + j, pc + kk]

    const int thread = threadIdx.x;
    const int tm = thread / 16;
    const int tn = thread % 16;
    const long long K = 9 * Cin;
    const long long HW = H * W;
    const long long k0 = (long long)blockIdx.x * IG_BN;
    const long long co0 = (long long)blockIdx.y * IG_BM;
    const long long P = N * HW;
    const long long per_split = (P + gridDim.z - 1) / gridDim.z;
    const long long begin = (long long)blockIdx.z * per_split;
    const long long end = begin + per_split < P ? begin + per_split : P;

    // Thread t stages pixel pc + t % 8 of every slice, for 4 channels and 8 columns.
    const int kk = thread % IG_BK;
    const int lead = thread / IG_BK;  // 0..15: its first channel and first column
    long long p = begin + kk;
    Pixel at = locate(p, end, H, W);

    // A thread's 8 columns k = (ci, tap) are the same in every slice: split them into the
    // channel's plane offset and the tap (-1 past the last column) once, here, because
    // a 64-bit division per column and slice cost as much as the slice's 512 FMAs.
    int plane[IG_BN / 16];  // ci * H * W: the host checks that one image has under 2^31 values
    int tap_of[IG_BN / 16];
#pragma unroll
    for (int i = 0; i < IG_BN / 16; ++i) {
        const long long k = k0 + lead + 16 * i;
        const long long ci = k < K ? k / 9 : 0;
        plane[i] = (int)(ci * HW);
        tap_of[i] = k < K ? (int)(k - 9 * ci) : -1;
    }

    T acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = T(0);

    for (long long pc = begin; pc < end; pc += IG_BK) {
        const long long g_pixel = ((long long)at.image * Cout * H + at.row) * W + at.col;
        const long long x_image = (long long)at.image * Cin * HW;
#pragma unroll
        for (int i = 0; i < IG_BM / 16; ++i) {
            const int m = lead + 16 * i;
            const long long co = co0 + m;
            a_tile[kk][m] = at.valid && co < Cout ? g[g_pixel + co * HW] : T(0);
        }
#pragma unroll
        for (int i = 0; i < IG_BN / 16; ++i) {
            const int tap = tap_of[i];
            const int r = at.row + tap / 3 - 1;
            const int c = at.col + tap % 3 - 1;
            const bool inside = at.valid && tap >= 0 && r >= 0 && r < H && c >= 0 && c < W;
            b_tile[kk][lead + 16 * i] = inside ? x[x_image + plane[i] + (long long)r * W + c]
                                               : T(0);
        }
        __syncthreads();
        multiply_slice<IG_BK, IG_BM, IG_BN, IG_A_STRIDE, IG_B_STRIDE>(a_tile, b_tile, acc, tm, tn);
        // The next slice overwrites the tiles: wait until every thread is done with them.
        __syncthreads();

        // Step this thread's pixel IG_BK further along the batch, without dividing.
        p += IG_BK;
        at.valid = p < end;
        at.col += IG_BK;
        while (at.valid && at.col >= W) {
            at.col -= (int)W;
            if (++at.row == H) {
                at.row = 0;
                ++at.image;
            }
        }
    }

    T* out = partial + (long long)blockIdx.z * Cout * K;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const long long co = co0 + (i / 4) * (IG_BM / 2) + 4 * tm + i % 4;
        if (co >= Cout) continue;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const long long k = k0 + (j / 4) * (IG_BN / 2) + 4 * tn + j % 4;
            if (k < K) out[co * K + k] = acc[i][j];
        }
    }
}

// --- the 128 x 128 tile rungs (forward step 7, weight-gradient step 4) -------------------

// Forward operand B: thread t's run of 4 values of row k0 + t / 32 of im2col(src) at its
// 4 pixels at[0..3] (columns 4 (t % 32) .. + 3 of the tile), each times the ReLU mask
// when there is one; zero outside the image, past K and past the batch.
template <typename T>
struct Im2colRuns {
    const T* src;
    const T* mask;
    const Pixel* at;
    long long K, Cin, H, W;
    bool vector;   // the 4 pixels are one aligned run of an image row: see stage_im2col
    int thread;
    __device__ __forceinline__ void operator()(long long k0, T* run) const {
#pragma unroll
        for (int j = 0; j < 4; ++j) run[j] = T(0);
        const long long k = k0 + thread / 32;
        if (k >= K) return;
        const long long ci = k / 9;
        const int tap = (int)(k - ci * 9);
        const int du = tap / 3 - 1, dv = tap % 3 - 1;
        if (vector && dv == 0) {
            const long long r = at[0].row + du;
            if (r < 0 || r >= H) return;
            const long long i = ((at[0].image * Cin + ci) * H + r) * W + at[0].col;
            load4(src + i, run);
            if (mask) {
#pragma unroll
                for (int j = 0; j < 4; ++j) run[j] = relu_masked(run[j], mask, i + j);
            }
            return;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const long long r = at[j].row + du, c = at[j].col + dv;
            if (at[j].valid && r >= 0 && r < H && c >= 0 && c < W) {
                const long long i = ((at[j].image * Cin + ci) * H + r) * W + c;
                run[j] = relu_masked(src[i], mask, i);
            }
        }
    }
};

// conv3x3_forward_tile128 (forward step 7, "tile128"): y (Cout x N*H*W) = w (Cout x 9 Cin)
// @ im2col(x), step 4's implicit GEMM on the 128 x 128 tile machinery of tiles.cuh (8
// warps, 8 x 8 results a thread, double-buffered slices of 8, one barrier a slice).
// Block b (1-D grid) owns output channels 128 (b % channel_tiles) and pixels 128 (b /
// channel_tiles). Its epilogue adds the bias and, when relu is 1, applies ReLU where y is
// stored, so a ReLU that follows the convolution costs no pass of its own. mask (or
// null): x is read as x * (mask > 0), which is how the input gradient applies the mask
// of such a fused ReLU where it loads g.
template <typename T>
__global__ void __launch_bounds__(TILE_THREADS, TILE_BLOCKS_PER_SM(T))
conv3x3_forward_tile128(const T* x, const T* w, const T* b, T* y, const T* mask, long long N,
                        long long Cin, long long Cout, long long H, long long W,
                        long long has_bias, long long relu) {
    __shared__ __align__(16) T a_tile[2][TILE_BK][TILE_STRIDE];  // [k][m] = w[co0 + m, k]
    __shared__ __align__(16) T b_tile[2][TILE_BK][TILE_STRIDE];  // [k][q] = im2col(x)[k, p0 + q]

    const int thread = threadIdx.x;
    const long long channel_tiles = (Cout + TILE_BM - 1) / TILE_BM;
    const long long co0 = ((long long)blockIdx.x % channel_tiles) * TILE_BM;
    const long long p0 = ((long long)blockIdx.x / channel_tiles) * TILE_BN;
    const long long P = N * H * W;
    const long long K = 9 * Cin;

    Pixel at[4];   // the 4 pixels this thread gathers, located once
#pragma unroll
    for (int j = 0; j < 4; ++j) at[j] = locate(p0 + 4 * (thread % 32) + j, P, H, W);
    const bool x_vector = W % 4 == 0 && aligned16(x) && (!mask || aligned16(mask)) &&
                          at[0].valid;
    const MatrixRuns<T> fetch_w = {w, Cout, K, K, true, K % 4 == 0 && aligned16(w), co0, thread};
    const Im2colRuns<T> fetch_x = {x, mask, at, K, Cin, H, W, x_vector, thread};

    T acc[8][8];   // multiply_tiles sets it
    const TileThread me = tile_thread(thread);
    multiply_tiles(a_tile, b_tile, fetch_w, true, fetch_x, false, 0, K, acc, me, thread);

    // Columns col0 + j and col0 + 32 + j: two runs of 4 pixels, each one vector store when
    // it lies in one image row (W a multiple of 4).
    const Epilogue<T> epi = {T(1), T(0), b, has_bias ? 1 : 0, relu};
    const bool y_vector = W % 4 == 0 && aligned16(y);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        Pixel out[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) out[j] = locate(p0 + me.col0 + 32 * half + j, P, H, W);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const long long co = co0 + me.row0 + (i / 4) * 16 + i % 4;
            if (co >= Cout) continue;
            T v[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) v[j] = epi.apply(acc[i][4 * half + j], y, co, 0);
            store_pixel_run(y, out, co, Cout, H, W, y_vector, v);
        }
    }
}

// What block (blockIdx.x, blockIdx.y, blockIdx.z) of a weight-gradient launch on square
// tiles of side `tile` computes: dw's columns (ci, tap) kc0 .. and rows (output channels)
// co0 .., summed over the pixels [begin, end) of split blockIdx.z, per_split pixels long.
struct WeightGradBlock {
    long long K, kc0, co0, begin, end;
};

__device__ __forceinline__ WeightGradBlock weight_grad_block(int tile, long long N, long long Cin,
                                                             long long H, long long W,
                                                             long long per_split) {
    const long long P = N * H * W, begin = (long long)blockIdx.z * per_split;
    return {9 * Cin, (long long)blockIdx.x * tile, (long long)blockIdx.y * tile, begin,
            begin + per_split < P ? begin + per_split : P};
}

// The weight gradient's K is the batch's pixels: thread t's runs are pixels k0 + 4 (t % 2)
// .. + 3 for both operands. PixelRun follows them: multiply_tiles asks for the slices in
// order, 8 pixels apart, so it steps its pixels along without dividing (a division per
// pixel and slice would cost a third of the slice's multiply-adds).
template <int COUNT = 4>
struct PixelRun {
    Pixel at[COUNT];
    long long first, end, H, W;   // at[j] is pixel first + j; pixels from end on are invalid
    int step;                     // how far apart the slices are: TILE_BK or MMA_BK

    // Nothing located yet: the first move_to locates its pixels.
    __device__ __forceinline__ void start(long long end_, long long H_, long long W_, int step_) {
        first = -2 * (long long)step_;
        end = end_;
        H = H_;
        W = W_;
        step = step_;
    }

    __device__ __forceinline__ void move_to(long long p) {
        if (p == first + step) {
#pragma unroll
            for (int j = 0; j < COUNT; ++j) {
                at[j].valid = p + j < end;
                at[j].col += step;
                while (at[j].valid && at[j].col >= W) {
                    at[j].col -= (int)W;
                    if (++at[j].row == H) {
                        at[j].row = 0;
                        ++at[j].image;
                    }
                }
            }
        } else if (p != first) {
#pragma unroll
            for (int j = 0; j < COUNT; ++j) at[j] = locate(p + j, end, H, W);
        }
        first = p;
    }
};

// Weight-gradient operand A, g' (Cout x pixels): thread t's run is output channel co0 + t / 2
// at its 4 pixels, times the ReLU mask when there is one. It moves the shared PixelRun, so
// multiply_tiles must call it before the B operand of the same slice (it does).
template <typename T>
struct GradientRuns {
    const T* g;
    const T* mask;
    PixelRun<>* pixels;
    long long co0, Cout, H, W;
    int thread;
    __device__ __forceinline__ void operator()(long long k0, T* run) const {
        pixels->move_to(k0 + 4 * (thread % 2));
        const long long co = co0 + thread / 2;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const Pixel& at = pixels->at[j];
            run[j] = T(0);
            if (at.valid && co < Cout) {
                const long long i = nchw_index(at, co, Cout, H, W);
                run[j] = relu_masked(g[i], mask, i);
            }
        }
    }
};

// Weight-gradient operand B, im2col(x)^T (pixels x 9 Cin), stored column by column: thread
// t's run is column k = (ci, tap) = kc0 + t / 2 at its 4 pixels. Its channel's plane
// offset and tap are split once (tap -1 past the last column).
template <typename T>
struct ColumnRuns {
    const T* x;
    const PixelRun<>* pixels;
    long long Cin, H, W;
    long long plane;   // ci * H * W
    int tap;
    __device__ __forceinline__ void operator()(long long, T* run) const {
        const int du = tap / 3 - 1, dv = tap % 3 - 1;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const Pixel& at = pixels->at[j];
            const long long r = at.row + du, c = at.col + dv;
            run[j] = at.valid && tap >= 0 && r >= 0 && r < H && c >= 0 && c < W
                         ? x[at.image * Cin * H * W + plane + r * W + c] : T(0);
        }
    }
};

// conv3x3_weight_grad_tile128 (weight-gradient step 4, "tile128"): dw (Cout x 9 Cin) = g'
// (Cout x N*H*W) @ im2col(x)^T on the 128 x 128 tile machinery, both operands k-contiguous
// (stashed transposed). Block (blockIdx.x, blockIdx.y, blockIdx.z) computes columns
// 128 blockIdx.x of dw, rows (output channels) 128 blockIdx.y, over split blockIdx.z of the
// pixels (splits a multiple of 8 pixels long, the last one shorter); its raw sums go to
// partial[split, co, k] and the host adds the splits in order (conv1x1_sum_splits).
// mask (or null): g is read as g * (mask > 0), the backward of a ReLU fused into the
// forward pass.
template <typename T>
__global__ void __launch_bounds__(TILE_THREADS, TILE_BLOCKS_PER_SM(T))
conv3x3_weight_grad_tile128(const T* x, const T* g, const T* mask, T* partial, long long N,
                            long long Cin, long long Cout, long long H, long long W,
                            long long per_split) {
    __shared__ __align__(16) T a_tile[2][TILE_BK][TILE_STRIDE];  // [kk][m] = g'[co0 + m, pixel]
    __shared__ __align__(16) T b_tile[2][TILE_BK][TILE_STRIDE];  // [kk][q] = im2col(x)[kc0 + q, pixel]

    const int thread = threadIdx.x;
    const WeightGradBlock my = weight_grad_block(TILE_BM, N, Cin, H, W, per_split);
    const long long K = my.K, kc0 = my.kc0, co0 = my.co0, begin = my.begin, end = my.end;

    PixelRun<> pixels;
    pixels.start(end, H, W, TILE_BK);
    const long long column = kc0 + thread / 2;
    const long long ci = column < K ? column / 9 : 0;
    const GradientRuns<T> fetch_g = {g, mask, &pixels, co0, Cout, H, W, thread};
    const ColumnRuns<T> fetch_x = {x, &pixels, Cin, H, W, ci * H * W,
                                   column < K ? (int)(column - 9 * ci) : -1};

    T acc[8][8];   // multiply_tiles sets it
    const TileThread me = tile_thread(thread);
    multiply_tiles(a_tile, b_tile, fetch_g, true, fetch_x, true, begin, end, acc, me, thread);

    const Epilogue<T> raw = {T(1), T(0), nullptr, 0, 0};
    store_tile_results(partial + (long long)blockIdx.z * Cout * K, Cout, K, co0, kc0, me, acc,
                       raw, true);
}

// Forward operand B of the pipelined tensor-core rungs, im2col(x) (9 Cin x pixels), stored
// item-contiguous: thread t's runs are rows k0 + t / 32 and k0 + t / 32 + 8 at its 4
// pixels p0 + 4 (t % 32) .. + 3, located once, with their offsets in x at channel 0
// (so a value's offset is one addition: base + (ci H + du) W + dv). One 16-byte copy where
// the run is 4 neighbouring values of one image row (W a multiple of 4, the tap's column
// shift 0); else four 4-byte copies, zero-filled outside the image.
struct Im2colSlices {
    const float* x;
    const Pixel* at;
    const long long* base;   // base[e] = ((image Cin) H + row) W + col of pixel e
    long long K, Cin, H, W;
    bool vector;   // W % 4 == 0, x 16-byte aligned, the run's first pixel valid
    int thread;

    __device__ __forceinline__ void operator()(float* slice, long long k0) const {
        const SliceRuns runs = slice_runs<false>(thread);
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            const int kk = runs.k + j * runs.k_gap;
            float* dst = slice + slice_offset<false>(runs.item, kk);
            const long long k = k0 + kk;
            const long long ci = k / 9;
            const int tap = (int)(k - 9 * ci), du = tap / 3 - 1, dv = tap % 3 - 1;
            const long long shift = (ci * H + du) * W + dv;
            if (vector && dv == 0) {
                const long long r = at[0].row + du;
                const bool in = k < K && r >= 0 && r < H;
                cp_async<16>(dst, in ? x + base[0] + shift : x, in ? 16 : 0);
                continue;
            }
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int r = at[e].row + du, c = at[e].col + dv;
                const bool in = k < K && at[e].valid && r >= 0 && r < H && c >= 0 && c < W;
                cp_async<4>(dst + e, in ? x + base[e] + shift : x, in ? 4 : 0);
            }
        }
    }
};

// The forward pass's results of one thread of the pipelined tile: output channels co0 +
// rows, pixels p0 + columns, stored into y (NCHW) with the bias and, when relu is 1, ReLU.
__device__ __forceinline__ void store_conv_mma_results(float* y, const float* b, long long co0,
                                                       long long p0, long long Cout, long long H,
                                                       long long W, long long P,
                                                       long long has_bias, long long relu,
                                                       const float (*acc)[4][4], int thread) {
    const MmaThread me = mma_thread(thread);
    const Epilogue<float> epi = {1.0f, 0.0f, b, has_bias ? 1 : 0, relu};
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const Pixel out = locate(p0 + me.col0 + 8 * nt + e, P, H, W);
            if (!out.valid) continue;
#pragma unroll
            for (int mt = 0; mt < 4; ++mt)
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const long long co = co0 + me.row0 + 16 * mt + 8 * half;
                    if (co < Cout)
                        y[nchw_index(out, co, Cout, H, W)] =
                            epi.apply(acc[mt][nt][2 * half + e], y, co, 0);
                }
        }
}

// Forward steps 8 ("tf32-pipelined", PASSES 1) and 9 ("3xtf32", PASSES 3): y (Cout x
// N*H*W) = w (Cout x 9 Cin) @ im2col(x) on the pipelined tensor-core tile of mma.cuh.
// Block b (1-D grid) owns output channels 128 (b % channel_tiles) and pixels 128 (b /
// channel_tiles); w is copied k-contiguous, im2col(x) item-contiguous. The epilogue adds
// the bias and, when relu is 1, applies ReLU where y is stored. (No mask: the copies go
// to shared memory untouched, so a fused ReLU's mask is applied to g in a pass first.)
template <int PASSES>
__device__ __forceinline__ void conv3x3_forward_mma(const float* x, const float* w,
                                                    const float* b, float* y, long long N,
                                                    long long Cin, long long Cout, long long H,
                                                    long long W, long long has_bias,
                                                    long long relu) {
    __shared__ __align__(16) float a_slices[MMA_STAGES * MMA_SLICE];  // w[co0 + m, k]
    __shared__ __align__(16) float b_slices[MMA_STAGES * MMA_SLICE];  // im2col(x)[k, p0 + q]

    const int thread = threadIdx.x;
    const long long channel_tiles = (Cout + MMA_BM - 1) / MMA_BM;
    const long long co0 = ((long long)blockIdx.x % channel_tiles) * MMA_BM;
    const long long p0 = ((long long)blockIdx.x / channel_tiles) * MMA_BN;
    const long long P = N * H * W;
    const long long K = 9 * Cin;

    Pixel at[4];   // the 4 pixels this thread copies, located once
    long long base[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        at[e] = locate(p0 + slice_runs<false>(thread).item + e, P, H, W);
        base[e] = (at[e].image * Cin * H + at[e].row) * W + at[e].col;
    }
    const MatrixSlices<true> fetch_w = {w, Cout, K, K, co0, K % 4 == 0 && aligned16(w), thread};
    const Im2colSlices fetch_x = {x, at, base, K, Cin, H, W,
                                  W % 4 == 0 && aligned16(x) && at[0].valid, thread};

    float acc[4][4][4];   // multiply_mma_tiles sets it
    multiply_mma_tiles<PASSES, true, false>(a_slices, b_slices, fetch_w, fetch_x, 0, K, acc,
                                            thread);

    store_conv_mma_results(y, b, co0, p0, Cout, H, W, P, has_bias, relu, acc, thread);
}

// One block an SM (8 warps, up to 255 registers a thread): at 128 registers (two blocks)
// the 64 accumulators, the fragments and the copies' addresses spill.
extern "C" __global__ void __launch_bounds__(MMA_THREADS, 1)
conv3x3_forward_tf32_pipelined(const float* x, const float* w, const float* b, float* y,
                               long long N, long long Cin, long long Cout, long long H,
                               long long W, long long has_bias, long long relu) {
    conv3x3_forward_mma<1>(x, w, b, y, N, Cin, Cout, H, W, has_bias, relu);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 1)
conv3x3_forward_3xtf32(const float* x, const float* w, const float* b, float* y, long long N,
                       long long Cin, long long Cout, long long H, long long W,
                       long long has_bias, long long relu) {
    conv3x3_forward_mma<3>(x, w, b, y, N, Cin, Cout, H, W, has_bias, relu);
}

// Where a thread of the NHWC forward is along K = 9 Cin, numbered k = tap Cin + ci: the
// (tap, channel) of its run's first k, followed from slice to slice (16 apart) without
// dividing, as PixelRun follows pixels.
struct TapRun {
    long long k, ci, Cin;
    int tap;

    __device__ __forceinline__ void move_to(long long k_new) {
        if (k_new == k + MMA_BK) {
            ci += MMA_BK;
            while (ci >= Cin) {
                ci -= Cin;
                ++tap;
            }
        } else if (k_new != k) {
            tap = (int)(k_new / Cin);
            ci = k_new - tap * Cin;
        }
        k = k_new;
    }
};

// Forward operand B of steps 10 and 11: im2col(x) read from x stored NHWC (xh), its rows k
// = tap Cin + ci (the weights reordered to match), copied k-contiguous: thread t's runs
// are pixels p0 + t / 4 and p0 + t / 4 + 64 (located once, with their offsets in xh) at
// k0 + 4 (t % 4) .. + 3. When Cin is a multiple of 4 such a run is 4 neighbouring channels
// of one tap at one pixel: one 16-byte copy, whatever the tap (step 8 copies 4 bytes at a
// time for the taps that shift the column). Else four 4-byte copies.
struct NhwcSlices {
    const float* xh;
    const Pixel* at;          // the 2 pixels
    const long long* base;    // base[j] = ((image H + row) W + col) Cin of pixel j
    TapRun* taps;
    long long K, Cin, H, W;
    bool vector;              // Cin % 4 == 0 and xh 16-byte aligned
    int thread;

    __device__ __forceinline__ void operator()(float* slice, long long k0) const {
        const SliceRuns runs = slice_runs<true>(thread);
        taps->move_to(k0 + runs.k);
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            float* dst = slice + slice_offset<true>(runs.item + j * runs.item_gap, runs.k);
            if (vector) {   // the run's 4 channels share the tap
                const int r = at[j].row + taps->tap / 3 - 1, c = at[j].col + taps->tap % 3 - 1;
                const bool in = taps->k < K && at[j].valid && r >= 0 && r < H && c >= 0 && c < W;
                const long long shift = ((taps->tap / 3 - 1) * W + taps->tap % 3 - 1) * Cin;
                cp_async<16>(dst, in ? xh + base[j] + shift + taps->ci : xh, in ? 16 : 0);
                continue;
            }
            long long ci = taps->ci;
            int tap = taps->tap;
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                if (e > 0 && ++ci == Cin) {
                    ci = 0;
                    ++tap;
                }
                const int du = tap / 3 - 1, dv = tap % 3 - 1;
                const int r = at[j].row + du, c = at[j].col + dv;
                const bool in = taps->k + e < K && at[j].valid && r >= 0 && r < H && c >= 0 &&
                                c < W;
                cp_async<4>(dst + e, in ? xh + base[j] + (du * W + dv) * Cin + ci : xh,
                            in ? 4 : 0);
            }
        }
    }
};

// Forward steps 10 ("tf32-nhwc", PASSES 1) and 11 ("3xtf32-nhwc", PASSES 3): steps 8 and
// 9 with x read in NHWC order (xh; the host converts, and the conversion is part of the
// op's time) and the weights as wt (Cout x 3 x 3 x Cin), so that both operands are copied
// k-contiguous in runs of 4 channels. The product, epilogue and precisions are steps 8
// and 9's. Whether NHWC's 16-byte copies repay the conversions is for a GPU to measure.
template <int PASSES>
__device__ __forceinline__ void conv3x3_forward_nhwc_mma(const float* xh, const float* wt,
                                                         const float* b, float* y, long long N,
                                                         long long Cin, long long Cout,
                                                         long long H, long long W,
                                                         long long has_bias, long long relu) {
    __shared__ __align__(16) float a_slices[MMA_STAGES * MMA_SLICE];  // wt[co0 + m, k]
    __shared__ __align__(16) float b_slices[MMA_STAGES * MMA_SLICE];  // im2col(x)[k, p0 + q]

    const int thread = threadIdx.x;
    const long long channel_tiles = (Cout + MMA_BM - 1) / MMA_BM;
    const long long co0 = ((long long)blockIdx.x % channel_tiles) * MMA_BM;
    const long long p0 = ((long long)blockIdx.x / channel_tiles) * MMA_BN;
    const long long P = N * H * W;
    const long long K = 9 * Cin;

    Pixel at[2];   // the 2 pixels this thread copies, located once
    long long base[2];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
        at[j] = locate(p0 + slice_runs<true>(thread).item + 64 * j, P, H, W);
        base[j] = ((at[j].image * H + at[j].row) * W + at[j].col) * Cin;
    }
    TapRun taps = {-2 * MMA_BK, 0, Cin, 0};   // nothing located yet
    const MatrixSlices<true> fetch_w = {wt, Cout, K, K, co0, K % 4 == 0 && aligned16(wt),
                                        thread};
    const NhwcSlices fetch_x = {xh, at, base, &taps, K, Cin, H, W,
                                Cin % 4 == 0 && aligned16(xh), thread};

    float acc[4][4][4];   // multiply_mma_tiles sets it
    multiply_mma_tiles<PASSES, true, true>(a_slices, b_slices, fetch_w, fetch_x, 0, K, acc,
                                           thread);
    store_conv_mma_results(y, b, co0, p0, Cout, H, W, P, has_bias, relu, acc, thread);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 1)
conv3x3_forward_tf32_nhwc(const float* xh, const float* wt, const float* b, float* y,
                          long long N, long long Cin, long long Cout, long long H, long long W,
                          long long has_bias, long long relu) {
    conv3x3_forward_nhwc_mma<1>(xh, wt, b, y, N, Cin, Cout, H, W, has_bias, relu);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 1)
conv3x3_forward_3xtf32_nhwc(const float* xh, const float* wt, const float* b, float* y,
                            long long N, long long Cin, long long Cout, long long H,
                            long long W, long long has_bias, long long relu) {
    conv3x3_forward_nhwc_mma<3>(xh, wt, b, y, N, Cin, Cout, H, W, has_bias, relu);
}

// Weight-gradient operand A of the pipelined rungs, g (Cout x pixels), k-contiguous: thread
// t's runs are output channels co0 + t / 4 and co0 + t / 4 + 64 at pixels k0 + 4 (t % 4)
// .. + 3, which it follows from slice to slice in the shared PixelRun (moved here, so
// multiply_mma_tiles must call it before operand B of the same slice: it does). One
// 16-byte copy when the 4 pixels are neighbours in one image (H W a multiple of 4).
struct GradientSlices {
    const float* g;
    PixelRun<>* pixels;
    long long co0, Cout, H, W;
    bool vector;   // H W % 4 == 0 and g 16-byte aligned
    int thread;

    __device__ __forceinline__ void operator()(float* slice, long long k0) const {
        const SliceRuns runs = slice_runs<true>(thread);
        pixels->move_to(k0 + runs.k);
        const Pixel* at = pixels->at;
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            const int item = runs.item + j * runs.item_gap;
            float* dst = slice + slice_offset<true>(item, runs.k);
            const long long co = co0 + item;
            if (vector && co < Cout && at[0].valid && at[3].valid) {
                cp_async<16>(dst, g + nchw_index(at[0], co, Cout, H, W), 16);
                continue;
            }
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const bool in = co < Cout && at[e].valid;
                cp_async<4>(dst + e, in ? g + nchw_index(at[e], co, Cout, H, W) : g, in ? 4 : 0);
            }
        }
    }
};

// Weight-gradient operand B, im2col(x)^T (pixels x 9 Cin), k-contiguous: thread t's runs are
// columns (ci, tap) kc0 + t / 4 and kc0 + t / 4 + 64 at its 4 pixels; each column's plane
// offset ci H W and tap are split once (tap -1 past the last column).
struct ColumnSlices {
    const float* x;
    const PixelRun<>* pixels;
    long long Cin, H, W;
    long long plane[2];
    int tap[2];
    int thread;

    __device__ __forceinline__ void operator()(float* slice, long long) const {
        const SliceRuns runs = slice_runs<true>(thread);
        const Pixel* at = pixels->at;
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            float* dst = slice + slice_offset<true>(runs.item + j * runs.item_gap, runs.k);
            const int du = tap[j] / 3 - 1, dv = tap[j] % 3 - 1;
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const long long r = at[e].row + du, c = at[e].col + dv;
                const bool in = tap[j] >= 0 && at[e].valid && r >= 0 && r < H && c >= 0 && c < W;
                cp_async<4>(dst + e, in ? x + at[e].image * Cin * H * W + plane[j] + r * W + c
                                        : x, in ? 4 : 0);
            }
        }
    }
};

// The pipelined product of a weight-gradient block (operand B copied k-contiguous or not)
// and the store of its raw sums into partial[split, co, column].
template <int PASSES, bool B_K_CONTIGUOUS, typename FetchB>
__device__ __forceinline__ void weight_grad_mma_tiles(float* a_slices, float* b_slices,
                                                      const GradientSlices& fetch_g,
                                                      const FetchB& fetch_x,
                                                      const WeightGradBlock& my, float* partial,
                                                      long long Cout, int thread) {
    float acc[4][4][4];   // multiply_mma_tiles sets it
    multiply_mma_tiles<PASSES, true, B_K_CONTIGUOUS>(a_slices, b_slices, fetch_g, fetch_x,
                                                     my.begin, my.end, acc, thread);
    const Epilogue<float> raw = {1.0f, 0.0f, nullptr, 0, 0};
    store_mma_results(partial + (long long)blockIdx.z * Cout * my.K, Cout, my.K, my.co0, my.kc0,
                      mma_thread(thread), acc, raw, true);
}

// Weight-gradient steps 5 ("tf32-pipelined") and 6 ("3xtf32"): dw (Cout x 9 Cin) = g (Cout
// x N*H*W) @ im2col(x)^T on the pipelined tensor-core tile, both operands k-contiguous
// (the pixels are K). Block (blockIdx.x, blockIdx.y, blockIdx.z) computes columns 128
// blockIdx.x of dw, rows 128 blockIdx.y, over split blockIdx.z of the pixels (splits a
// multiple of 16 pixels long, the last one shorter); its raw sums go to partial[split,
// co, k] and the host adds the splits in order (conv1x1_sum_splits). No mask: g arrives
// masked when a ReLU was fused into the forward pass.
template <int PASSES>
__device__ __forceinline__ void conv3x3_weight_grad_mma(const float* x, const float* g,
                                                        float* partial, long long N,
                                                        long long Cin, long long Cout,
                                                        long long H, long long W,
                                                        long long per_split) {
    __shared__ __align__(16) float a_slices[MMA_STAGES * MMA_SLICE];  // g[co0 + m, pixel]
    __shared__ __align__(16) float b_slices[MMA_STAGES * MMA_SLICE];  // im2col(x)[kc0 + q, pixel]

    const int thread = threadIdx.x;
    const WeightGradBlock my = weight_grad_block(MMA_BM, N, Cin, H, W, per_split);
    const long long K = my.K, kc0 = my.kc0, co0 = my.co0, end = my.end;

    PixelRun<> pixels;
    pixels.start(end, H, W, MMA_BK);
    const GradientSlices fetch_g = {g, &pixels, co0, Cout, H, W,
                                    (H * W) % 4 == 0 && aligned16(g), thread};
    ColumnSlices fetch_x = {x, &pixels, Cin, H, W, {0, 0}, {-1, -1}, thread};
#pragma unroll
    for (int j = 0; j < 2; ++j) {
        const long long column = kc0 + slice_runs<true>(thread).item + 64 * j;
        if (column < K) {
            fetch_x.plane[j] = column / 9 * H * W;
            fetch_x.tap[j] = (int)(column % 9);
        }
    }

    weight_grad_mma_tiles<PASSES, true>(a_slices, b_slices, fetch_g, fetch_x, my, partial,
                                        Cout, thread);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 1)
conv3x3_weight_grad_tf32_pipelined(const float* x, const float* g, float* partial, long long N,
                                   long long Cin, long long Cout, long long H, long long W,
                                   long long per_split) {
    conv3x3_weight_grad_mma<1>(x, g, partial, N, Cin, Cout, H, W, per_split);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 1)
conv3x3_weight_grad_3xtf32(const float* x, const float* g, float* partial, long long N,
                           long long Cin, long long Cout, long long H, long long W,
                           long long per_split) {
    conv3x3_weight_grad_mma<3>(x, g, partial, N, Cin, Cout, H, W, per_split);
}

// Weight-gradient operand B of steps 7 and 8, im2col(x)^T (pixels x 9 Cin) read from x
// stored NHWC (xh), its columns k' = tap Cin + ci, copied item-contiguous: thread t's runs
// are pixels k0 + t / 32 and k0 + t / 32 + 8 of each slice (each followed by a PixelRun of
// one) at columns kc0 + 4 (t % 32) .. + 3, whose (tap, channel) is split once. With Cin a
// multiple of 4 the 4 columns are neighbouring channels of one tap: one 16-byte copy.
struct NhwcColumnSlices {
    const float* xh;
    PixelRun<1>* pixels;   // pixels[j] follows k0 + t / 32 + 8 j
    long long Cin, H, W, ci;
    int tap;               // of the first column; -1 past the last column
    bool vector;           // Cin % 4 == 0 and xh 16-byte aligned
    int thread;

    __device__ __forceinline__ void operator()(float* slice, long long k0) const {
        const SliceRuns runs = slice_runs<false>(thread);
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            const int kk = runs.k + j * runs.k_gap;
            pixels[j].move_to(k0 + kk);
            const Pixel at = pixels[j].at[0];
            const long long base = ((at.image * H + at.row) * W + at.col) * Cin;
            float* dst = slice + slice_offset<false>(runs.item, kk);
            if (vector) {   // the 4 columns share the tap
                const int du = tap / 3 - 1, dv = tap % 3 - 1;
                const int r = at.row + du, c = at.col + dv;
                const bool in = tap >= 0 && at.valid && r >= 0 && r < H && c >= 0 && c < W;
                cp_async<16>(dst, in ? xh + base + (du * W + dv) * Cin + ci : xh, in ? 16 : 0);
                continue;
            }
            long long channel = ci;
            int t = tap;
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                if (e > 0 && ++channel == Cin) {
                    channel = 0;
                    ++t;
                }
                const int du = t / 3 - 1, dv = t % 3 - 1;
                const int r = at.row + du, c = at.col + dv;
                const bool in = tap >= 0 && t < 9 && at.valid && r >= 0 && r < H && c >= 0 &&
                                c < W;
                cp_async<4>(dst + e, in ? xh + base + (du * W + dv) * Cin + channel : xh,
                            in ? 4 : 0);
            }
        }
    }
};

// Weight-gradient steps 7 ("tf32-nhwc") and 8 ("3xtf32-nhwc"): steps 5 and 6 with x read
// in NHWC order (xh, converted by the host), so that im2col(x)^T is copied in runs of 4
// channels; g is copied as in steps 5 and 6. The columns of dw come out in (tap, channel)
// order, partial[split, co, tap Cin + ci], which the host reorders to (co, ci, tap) after
// adding the splits.
template <int PASSES>
__device__ __forceinline__ void conv3x3_weight_grad_nhwc_mma(const float* xh, const float* g,
                                                             float* partial, long long N,
                                                             long long Cin, long long Cout,
                                                             long long H, long long W,
                                                             long long per_split) {
    __shared__ __align__(16) float a_slices[MMA_STAGES * MMA_SLICE];  // g[co0 + m, pixel]
    __shared__ __align__(16) float b_slices[MMA_STAGES * MMA_SLICE];  // im2col(x)[pixel, kc0 + q]

    const int thread = threadIdx.x;
    const WeightGradBlock my = weight_grad_block(MMA_BM, N, Cin, H, W, per_split);
    const long long K = my.K, kc0 = my.kc0, co0 = my.co0, end = my.end;

    PixelRun<> pixels;
    pixels.start(end, H, W, MMA_BK);
    PixelRun<1> column_pixels[2];
    column_pixels[0].start(end, H, W, MMA_BK);
    column_pixels[1].start(end, H, W, MMA_BK);
    const GradientSlices fetch_g = {g, &pixels, co0, Cout, H, W,
                                    (H * W) % 4 == 0 && aligned16(g), thread};
    const long long column = kc0 + slice_runs<false>(thread).item;
    const NhwcColumnSlices fetch_x = {xh, column_pixels, Cin, H, W,
                                      column < K ? column % Cin : 0,
                                      column < K ? (int)(column / Cin) : -1,
                                      Cin % 4 == 0 && aligned16(xh), thread};

    weight_grad_mma_tiles<PASSES, false>(a_slices, b_slices, fetch_g, fetch_x, my, partial,
                                         Cout, thread);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 1)
conv3x3_weight_grad_tf32_nhwc(const float* xh, const float* g, float* partial, long long N,
                              long long Cin, long long Cout, long long H, long long W,
                              long long per_split) {
    conv3x3_weight_grad_nhwc_mma<1>(xh, g, partial, N, Cin, Cout, H, W, per_split);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 1)
conv3x3_weight_grad_3xtf32_nhwc(const float* xh, const float* g, float* partial, long long N,
                                long long Cin, long long Cout, long long H, long long W,
                                long long per_split) {
    conv3x3_weight_grad_nhwc_mma<3>(xh, g, partial, N, Cin, Cout, H, W, per_split);
}

template <typename T>
__global__ void conv3x3_bias_grad(const T* g, const T* mask, T* db, long long N, long long C,
                                  long long hw) {
    __shared__ T partial[REDUCE_THREADS];

    const int thread = threadIdx.x;
    const long long c = blockIdx.x;
    T acc = T(0);
    for (long long image = 0; image < N; ++image) {
        const long long plane = (image * C + c) * hw;
        for (long long p = thread; p < hw; p += REDUCE_THREADS)
            acc += relu_masked(g[plane + p], mask, plane + p);
    }

    partial[thread] = acc;
    __syncthreads();
    for (int half = REDUCE_THREADS / 2; half > 0; half /= 2) {
        if (thread < half) partial[thread] += partial[thread + half];
        __syncthreads();
    }
    if (thread == 0) db[c] = partial[0];
}

// --- 6. Winograd F(4x4, 3x3): the transforms (the products run in kernels/linear.cu) ---

// Which tile and which of its 6 x 6 input rows and columns: tile = (n * th + i) * tw + j.
struct Tile {
    long long image, row0, col0;  // image, and the top-left output pixel (4 i, 4 j)
};

__device__ __forceinline__ Tile locate_tile(long long tile, long long th, long long tw) {
    Tile at;
    at.col0 = 4 * (tile % tw);
    at.row0 = 4 * ((tile / tw) % th);
    at.image = tile / (tw * th);
    return at;
}

// out[i][j] = sum_{a, b} L(i, a) X[a][b] R(j, b), with L(i, a) = left[i * l_row + a * l_col]
// and R(j, b) = right[j * r_row + b * r_col]. Every transform and every transposed one is
// such a product, with a 1-D matrix on both sides, read as it is stored or transposed.
template <typename T, int I, int A, int B, int J>
__device__ __forceinline__ void two_sided(const T* left, int l_row, int l_col,
                                          const T (&X)[A][B], const T* right, int r_row,
                                          int r_col, T (&out)[I][J]) {
    T rows[I][B];  // L X
#pragma unroll
    for (int i = 0; i < I; ++i)
#pragma unroll
        for (int b = 0; b < B; ++b) {
            T sum = T(0);
#pragma unroll
            for (int a = 0; a < A; ++a) sum += left[i * l_row + a * l_col] * X[a][b];
            rows[i][b] = sum;
        }
#pragma unroll
    for (int i = 0; i < I; ++i)
#pragma unroll
        for (int j = 0; j < J; ++j) {
            T sum = T(0);
#pragma unroll
            for (int b = 0; b < B; ++b) sum += rows[i][b] * right[j * r_row + b * r_col];
            out[i][j] = sum;
        }
}

template <typename T>
__global__ void winograd4x4_input_transform(const T* x, const T* mask, const T* BT, T* V,
                                            long long Cin, long long H, long long W,
                                            long long th, long long tw, long long tile_stride,
                                            long long channel_stride, long long n) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        const long long ci = t % Cin, tile = t / Cin;
        const Tile at = locate_tile(tile, th, tw);
        const long long plane = (at.image * Cin + ci) * H * W;
        T d[6][6], v[6][6];
#pragma unroll
        for (int a = 0; a < 6; ++a) {
            const long long r = at.row0 + a - 1;
#pragma unroll
            for (int b = 0; b < 6; ++b) {
                const long long c = at.col0 + b - 1, i = plane + r * W + c;
                d[a][b] = r >= 0 && r < H && c >= 0 && c < W ? relu_masked(x[i], mask, i) : T(0);
            }
        }
        two_sided(BT, 6, 1, d, BT, 6, 1, v);  // BT d BT^T
#pragma unroll
        for (int xi = 0; xi < 36; ++xi)
            V[xi * n + tile * tile_stride + ci * channel_stride] = v[xi / 6][xi % 6];
    }
}

template <typename T>
__global__ void winograd4x4_kernel_transform(const T* w, const T* G, T* U, long long Cin,
                                             long long Cout, long long n) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        const long long co = t % Cout, ci = t / Cout;
        const T* k = w + (co * Cin + ci) * 9;
        T kernel[3][3], u[6][6];
#pragma unroll
        for (int tap = 0; tap < 9; ++tap) kernel[tap / 3][tap % 3] = k[tap];
        two_sided(G, 3, 1, kernel, G, 3, 1, u);  // G k G^T
#pragma unroll
        for (int xi = 0; xi < 36; ++xi) U[xi * n + t] = u[xi / 6][xi % 6];  // t = ci * Cout + co
    }
}

template <typename T>
__global__ void winograd4x4_output_transform(const T* M, const T* AT, const T* b, T* y,
                                             long long Cout, long long H, long long W,
                                             long long th, long long tw, long long has_bias,
                                             long long relu, long long n) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        const long long co = t % Cout, tile = t / Cout;
        const Tile at = locate_tile(tile, th, tw);
        T m[6][6], out[4][4];
#pragma unroll
        for (int xi = 0; xi < 36; ++xi) m[xi / 6][xi % 6] = M[xi * n + t];  // t = tile * Cout + co
        two_sided(AT, 6, 1, m, AT, 6, 1, out);  // AT m AT^T
        const T bias = has_bias ? b[co] : T(0);
        T* plane = y + (at.image * Cout + co) * H * W;
#pragma unroll
        for (int p = 0; p < 4; ++p)
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const long long r = at.row0 + p, c = at.col0 + q;
                const T v = out[p][q] + bias;
                if (r < H && c < W) plane[r * W + c] = relu && !(v > T(0)) ? T(0) : v;
            }
    }
}

template <typename T>
__global__ void winograd4x4_output_adjoint(const T* g, const T* mask, const T* AT, T* dM,
                                           long long Cout, long long H, long long W,
                                           long long th, long long tw, long long n) {
    const long long tiles = n / Cout;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        const long long tile = t % tiles, co = t / tiles;
        const Tile at = locate_tile(tile, th, tw);
        const long long plane = (at.image * Cout + co) * H * W;
        T block[4][4], dm[6][6];
#pragma unroll
        for (int p = 0; p < 4; ++p)
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const long long r = at.row0 + p, c = at.col0 + q, i = plane + r * W + c;
                block[p][q] = r < H && c < W ? relu_masked(g[i], mask, i) : T(0);
            }
        two_sided(AT, 1, 6, block, AT, 1, 6, dm);  // AT^T g AT
#pragma unroll
        for (int xi = 0; xi < 36; ++xi) dM[xi * n + t] = dm[xi / 6][xi % 6];  // t = co * T + tile
    }
}

template <typename T>
__global__ void winograd4x4_kernel_adjoint(const T* dUt, const T* G, T* dw, long long n) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        T du[6][6], dk[3][3];  // du: dUt[xi, co, ci] for this thread's t = co * Cin + ci
#pragma unroll
        for (int xi = 0; xi < 36; ++xi) du[xi / 6][xi % 6] = dUt[xi * n + t];
        two_sided(G, 1, 3, du, G, 1, 3, dk);  // G^T du G
        T* out = dw + t * 9;  // dw is (Cout, Cin, 3, 3)
#pragma unroll
        for (int tap = 0; tap < 9; ++tap) out[tap] = dk[tap / 3][tap % 3];
    }
}
