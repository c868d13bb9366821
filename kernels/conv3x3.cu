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
// channels swapped, so the host runs a forward kernel for it (without bias).
// has_bias is 0 or 1; when it is 0, b is not read (it may be null).
//
// conv3x3_forward_naive: one thread per output element. Thread i (grid-stride
// loop over the flat NCHW index of y) splits i into (n, co, h, w) and sums its
// 9 * Cin products straight from global memory.
//
// conv3x3_forward_tiled: block (16, 16) threads. blockIdx.x is a 16 x 16
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
//
// conv3x3_weight_grad: one block of 256 threads per (co, ci) pair
// (blockIdx.x = co * Cin + ci). The threads stride over the n * H * W output
// pixels, each adding g[n, co, h, w] times the 9 neighbours of (h, w) in
// x[n, ci] into 9 registers; a shared-memory tree reduction (9 x 256 values)
// then adds the 256 partial sums in a fixed order, and threads 0..8 write
// dw[co, ci, :, :]. No atomics: the result is the same on every run.
//
// conv3x3_bias_grad: one block of 256 threads per channel c of g (N, C, HW):
// each thread adds every 256th value of g[:, c, :], then a shared-memory tree
// reduction gives db[c]. conv1x1's backward uses it too.

#define CONV_TILE 16                      // output tile side, and block side
#define CONV_HALO_TILE (CONV_TILE + 2)    // input tile side with the 1-pixel halo
#define CONV_OUT_GROUP 16                 // output channels per block
#define CONV_IN_CHUNK 8                   // input channels staged at a time
#define CONV_BLOCK_THREADS (CONV_TILE * CONV_TILE)
#define REDUCE_THREADS 256                // block size of the two reductions (a power of 2)

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
__global__ void conv3x3_bias_grad(const T* g, T* db, long long N, long long C, long long hw) {
    __shared__ T partial[REDUCE_THREADS];

    const int thread = threadIdx.x;
    const long long c = blockIdx.x;
    T acc = T(0);
    for (long long image = 0; image < N; ++image) {
        const T* g_plane = g + (image * C + c) * hw;
        for (long long p = thread; p < hw; p += REDUCE_THREADS) acc += g_plane[p];
    }

    partial[thread] = acc;
    __syncthreads();
    for (int half = REDUCE_THREADS / 2; half > 0; half /= 2) {
        if (thread < half) partial[thread] += partial[thread + half];
        __syncthreads();
    }
    if (thread == 0) db[c] = partial[0];
}
