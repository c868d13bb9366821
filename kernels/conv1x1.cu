// conv1x1: 1x1 convolution and its weight gradient, on C-contiguous NCHW
// arrays seen as x (N, Cin, P), y and g (N, Cout, P) with P = H * W pixels,
// and w (Cout, Cin):
//
//   y[n, co, p] = b[co] + sum_ci w[co, ci] * x[n, ci, p]
//   dw[co, ci]  = sum_{n, p} g[n, co, p] * x[n, ci, p]
//
// Both are matrix products over the batch's columns q = n * P + p (column q
// of x is x[n, :, p]): y = w @ x and dw = g @ x^T. The input gradient,
// dx[n, ci, p] = sum_co w[co, ci] * g[n, co, p], is the forward product with
// the transposed weight (the host passes w^T (Cin, Cout) and no bias).
// has_bias is 0 or 1; when it is 0, b is not read (it may be null).
//
// Both product kernels use the same tiling. A block has 16 x 16 threads and
// owns a 64 x 64 tile of the result; thread (tx, ty) computes a 4 x 4
// register block of it, rows ty + 16 i and columns tx + 16 j (i, j = 0..3),
// so a half-warp writes 16 adjacent columns and reads adjacent shared-memory
// words. The reduction index is walked in chunks of 16: each thread copies 4
// elements of each operand's 64 x 16 slice into shared memory (two 16 x 65
// arrays of T: 8.3 KB for float, 16.6 KB for double), the block
// synchronises, and each thread does 16 x 16 multiply-adds from shared
// memory. Elements outside the matrices load as zero, so any size works.
//
// conv1x1_forward_tiled: block (blockIdx.x, blockIdx.y) computes output
// channels 64 * blockIdx.y .. + 63 for batch columns 64 * blockIdx.x .. + 63
// (columns may span images), reducing over the input channels.
//
// conv1x1_weight_grad: block (blockIdx.x, blockIdx.y, blockIdx.z) computes
// dw rows (output channels) 64 * blockIdx.y .. + 63 and columns (input
// channels) 64 * blockIdx.x .. + 63, reducing over split blockIdx.z of the
// N * P batch columns: split s of S = gridDim.z covers the columns
// [s * ceil(NP / S), (s + 1) * ceil(NP / S)), and its sums go to
// partial[s, co, ci]. With one split that is dw itself; with several, the host
// then runs conv1x1_sum_splits.
//
// conv1x1_sum_splits: one thread per element i of dw (grid-stride loop); it
// adds partial[0, i], partial[1, i], ... in that order. With no atomics the
// weight gradient is the same on every run.

#define GEMM_TILE 64
#define GEMM_CHUNK 16
#define GEMM_SIDE 16                        // threads per block side
#define GEMM_PER_THREAD 4                   // register block side: GEMM_TILE / GEMM_SIDE
#define GEMM_THREADS (GEMM_SIDE * GEMM_SIDE)
#define GEMM_LOADS (GEMM_TILE * GEMM_CHUNK / GEMM_THREADS)

// The inner product both kernels share: thread (tx, ty) adds one staged chunk to
// its register block, acc[i][j] += sum_k rows[k][ty + 16 i] * cols[k][tx + 16 j].
template <typename T>
__device__ __forceinline__ void multiply_staged_chunk(const T (*rows)[GEMM_TILE + 1],
                                                      const T (*cols)[GEMM_TILE + 1],
                                                      T (*acc)[GEMM_PER_THREAD], int tx, int ty) {
#pragma unroll
    for (int k = 0; k < GEMM_CHUNK; ++k) {
        T a[GEMM_PER_THREAD], c[GEMM_PER_THREAD];
#pragma unroll
        for (int i = 0; i < GEMM_PER_THREAD; ++i) a[i] = rows[k][ty + GEMM_SIDE * i];
#pragma unroll
        for (int j = 0; j < GEMM_PER_THREAD; ++j) c[j] = cols[k][tx + GEMM_SIDE * j];
#pragma unroll
        for (int i = 0; i < GEMM_PER_THREAD; ++i)
#pragma unroll
            for (int j = 0; j < GEMM_PER_THREAD; ++j) acc[i][j] += a[i] * c[j];
    }
}

template <typename T>
__global__ void conv1x1_forward_tiled(const T* x, const T* w, const T* b, T* y,
                                      long long N, long long Cin, long long Cout, long long P,
                                      long long has_bias) {
    // +1 column of padding: the weight loads write down a column of w_tile.
    __shared__ T w_tile[GEMM_CHUNK][GEMM_TILE + 1];  // w_tile[k][m] = w[co0 + m, ci0 + k]
    __shared__ T x_tile[GEMM_CHUNK][GEMM_TILE + 1];  // x_tile[k][q] = x column q0 + q, channel ci0 + k

    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int thread = ty * GEMM_SIDE + tx;
    const long long columns = N * P;
    const long long q0 = (long long)blockIdx.x * GEMM_TILE;
    const long long co0 = (long long)blockIdx.y * GEMM_TILE;

    // A thread loads the same tile column in every chunk (GEMM_THREADS is a multiple of
    // GEMM_TILE), so the division of its column into (image, pixel) happens once.
    const int load_q = thread % GEMM_TILE;
    const long long load_column = q0 + load_q;
    const bool load_column_ok = load_column < columns;
    const long long load_offset =
        load_column_ok ? (load_column / P) * Cin * P + load_column % P : 0;

    T acc[GEMM_PER_THREAD][GEMM_PER_THREAD];
#pragma unroll
    for (int i = 0; i < GEMM_PER_THREAD; ++i)
#pragma unroll
        for (int j = 0; j < GEMM_PER_THREAD; ++j) acc[i][j] = T(0);

    for (long long ci0 = 0; ci0 < Cin; ci0 += GEMM_CHUNK) {
#pragma unroll
        for (int l = 0; l < GEMM_LOADS; ++l) {
            const int e = thread + l * GEMM_THREADS;
            // w is (Cout, Cin): consecutive threads take consecutive input channels.
            const int wk = e % GEMM_CHUNK;
            const int wm = e / GEMM_CHUNK;
            const long long co = co0 + wm;
            const long long ci = ci0 + wk;
            w_tile[wk][wm] = (co < Cout && ci < Cin) ? w[co * Cin + ci] : T(0);
            // x rows are pixels: consecutive threads take consecutive columns.
            const int xk = e / GEMM_TILE;
            const long long xci = ci0 + xk;
            x_tile[xk][load_q] = (load_column_ok && xci < Cin) ? x[load_offset + xci * P] : T(0);
        }
        __syncthreads();

        multiply_staged_chunk(w_tile, x_tile, acc, tx, ty);
        // The next chunk overwrites the tiles: wait until every thread is done with them.
        __syncthreads();
    }

#pragma unroll
    for (int j = 0; j < GEMM_PER_THREAD; ++j) {
        const long long column = q0 + tx + GEMM_SIDE * j;
        if (column >= columns) continue;
        const long long image = column / P;
        const long long pixel = column % P;
#pragma unroll
        for (int i = 0; i < GEMM_PER_THREAD; ++i) {
            const long long co = co0 + ty + GEMM_SIDE * i;
            if (co < Cout)
                y[(image * Cout + co) * P + pixel] = has_bias ? acc[i][j] + b[co] : acc[i][j];
        }
    }
}

template <typename T>
__global__ void conv1x1_weight_grad(const T* x, const T* g, T* partial, long long N,
                                    long long Cin, long long Cout, long long P) {
    // +1 column of padding: both operands' loads write down a column of the tile.
    __shared__ T g_tile[GEMM_CHUNK][GEMM_TILE + 1];  // g_tile[k][m] = g[co0 + m] at batch column k0 + k
    __shared__ T x_tile[GEMM_CHUNK][GEMM_TILE + 1];  // x_tile[k][c] = x[ci0 + c] at batch column k0 + k

    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int thread = ty * GEMM_SIDE + tx;
    const long long ci0 = (long long)blockIdx.x * GEMM_TILE;
    const long long co0 = (long long)blockIdx.y * GEMM_TILE;
    const long long columns = N * P;
    const long long per_split = (columns + gridDim.z - 1) / gridDim.z;
    const long long begin = (long long)blockIdx.z * per_split;
    const long long end = begin + per_split < columns ? begin + per_split : columns;

    // Consecutive threads take consecutive batch columns (pixels are contiguous in g
    // and x), and a thread keeps the same column offset k in every chunk.
    const int load_k = thread % GEMM_CHUNK;

    T acc[GEMM_PER_THREAD][GEMM_PER_THREAD];
#pragma unroll
    for (int i = 0; i < GEMM_PER_THREAD; ++i)
#pragma unroll
        for (int j = 0; j < GEMM_PER_THREAD; ++j) acc[i][j] = T(0);

    for (long long k0 = begin; k0 < end; k0 += GEMM_CHUNK) {
        const long long column = k0 + load_k;
        const bool column_ok = column < end;
        const long long image = column_ok ? column / P : 0;
        const long long pixel = column_ok ? column % P : 0;
        const T* g_column = g + image * Cout * P + pixel;
        const T* x_column = x + image * Cin * P + pixel;
#pragma unroll
        for (int l = 0; l < GEMM_LOADS; ++l) {
            const int row = (thread + l * GEMM_THREADS) / GEMM_CHUNK;
            const long long co = co0 + row;
            const long long ci = ci0 + row;
            g_tile[load_k][row] = (column_ok && co < Cout) ? g_column[co * P] : T(0);
            x_tile[load_k][row] = (column_ok && ci < Cin) ? x_column[ci * P] : T(0);
        }
        __syncthreads();

        multiply_staged_chunk(g_tile, x_tile, acc, tx, ty);
        // The next chunk overwrites the tiles: wait until every thread is done with them.
        __syncthreads();
    }

    T* out = partial + (long long)blockIdx.z * Cout * Cin;
#pragma unroll
    for (int i = 0; i < GEMM_PER_THREAD; ++i) {
        const long long co = co0 + ty + GEMM_SIDE * i;
        if (co >= Cout) continue;
#pragma unroll
        for (int j = 0; j < GEMM_PER_THREAD; ++j) {
            const long long ci = ci0 + tx + GEMM_SIDE * j;
            if (ci < Cin) out[co * Cin + ci] = acc[i][j];
        }
    }
}

template <typename T>
__global__ void conv1x1_sum_splits(const T* partial, T* dw, long long splits, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        T sum = T(0);
        for (long long s = 0; s < splits; ++s) sum += partial[s * n + i];
        dw[i] = sum;
    }
}
