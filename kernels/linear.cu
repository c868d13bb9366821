// gemm: C = alpha * op(A) @ op(B) + beta * C for row-major matrices, where
// op(A) is M x K (A stored M x K, or K x M when trans_a) and op(B) is K x N
// (B stored K x N, or N x K when trans_b); plus the bias pass add_bias_rows
// and the column sums sum_rows that linear's backward needs. Three kernels
// compute the product, a ladder of the same sums (the host picks one by
// name: naive, tiled, register); all take the same arguments. With beta == 0,
// C is only written (it may hold garbage or NaN).
//
// gemm_naive ("naive"): one thread per element of C (grid-stride loop over
// the flat index i = m * N + n), summing its K products straight from global
// memory. Consecutive threads take consecutive n: their op(B) loads coalesce
// when B is not transposed, and they all read the same op(A) value.
// Cost: 2 global loads per multiply-add (FMA).
//
// gemm ("tiled"): block (blockIdx.x, blockIdx.y) owns the 64 x 64 tile of C at
// rows 64 * blockIdx.x and columns 64 * blockIdx.y. Its 256 threads form a
// 16 x 16 grid; thread (ty, tx) computes a 4 x 4 register block of that tile,
// rows ty + 16 i and columns tx + 16 j (i, j = 0..3), so a half-warp writes 16
// adjacent columns of C and reads adjacent shared-memory words (no bank
// conflicts). K is walked in chunks of 16: every thread copies 4 elements of
// the 64 x 16 slice of op(A) and 4 of the 16 x 64 slice of op(B) into shared
// memory (consecutive threads read consecutive addresses of the stored
// matrix whether or not it is transposed, so global loads coalesce), the
// block synchronises, and each thread does 16 x 16 multiply-adds from shared
// memory into its 16 accumulators. Elements outside op(A) or op(B) load as
// zero, so any M, N, K works. Shared memory: two 16 x (64 + pad) arrays of
// T, the pad (2 floats or 1 double) chosen so that the column-wise stores of
// a non-transposed operand hit distinct banks: 8.4 KB for float, 16.6 KB for
// double. Cost: 8 global loads (cache hits or not) per 256 FMAs of a thread
// (each staged value serves 64 FMAs of the block); per k a thread reads 8
// values from shared memory for 16 FMAs (0.5 shared loads per FMA).
//
// gemm_register ("register"): bigger register blocks. Block (blockIdx.x,
// blockIdx.y) of 128 threads owns the 64 x 128 tile of C at rows
// 64 * blockIdx.x and columns 128 * blockIdx.y; thread t, as (tm, tn) = (t / 16, t % 16), computes
// rows 4 tm .. + 3 and 32 + 4 tm .. + 3 and columns 4 tn .. + 3 and
// 64 + 4 tn .. + 3 of it, an 8 x 8 block in 64 registers. K is walked in
// slices of 8, staged as a_tile[k][m] (8 x (64 + 8)) and b_tile[k][n]
// (8 x (128 + 8)). Each operand is read in runs of 4 values along its stored
// rows, one 16-byte vector load (float4, or two double2) when the stored
// row length is a multiple of 4 and the matrix 16-byte aligned, else 4 loads
// with bounds checks: op(A) runs go along k (thread t: row t % 64, columns
// 4 (t / 64) ..) or, transposed, along m (row t / 16, columns 4 (t % 16) ..);
// op(B) runs along n (rows t / 32 and t / 32 + 4, columns 4 (t % 32) ..) or,
// transposed, along k (column t, rows 0..3 and 4..7). Per k a thread reads
// its 8 + 8 operands as 4 vector loads from shared memory for 64 FMAs (0.06
// shared loads per FMA, 8 times fewer than the tiled kernel). Shared memory:
// 1664 values, 6.5 KB for float, 13 KB for double. Its 64 x 128 tiles need
// big products to fill a GPU: linear's forward at batch 64 (M = 64) has a
// single row of tiles.
//
// gemm_warptile ("warptile"): the cuBLAS-class rung. 128 x 128 tiles of C, 256 threads
// in 8 warps, each warp a 32 x 64 part, each thread 8 x 8 results, K in slices of 8,
// double-buffered in shared memory and filled with 16-byte loads; what one thread, warp
// and block compute and why these sizes is the opening comment of tiles.cuh, whose
// multiply_tiles is the main loop. Against gemm_register: half the global loads per FMA
// (0.016), one barrier per slice instead of two, the next slice's loads in flight
// during the multiply, and twice the threads per block to cover their latency.
//   Batched: blockIdx.z = b * splits + s covers product b of `batch` products of one
//   shape, A + b * stride_a, B + b * stride_b, C + b * stride_c (one launch where the
//   Winograd convolution made 36).
//   Split-K: split s sums k in [s * k_per_split, (s + 1) * k_per_split) (k_per_split a
//   multiple of 8) and writes its raw sums to partial[(b * splits + s) * M * N + m * N +
//   n]; gemm_sum_splits, one thread per element of C, adds the splits in order and
//   applies the epilogue. A product of few tiles and long K (linear's weight gradient,
//   the Winograd weight gradient) thus fills the GPU, and the result is the same on every
//   run (no atomics). With splits == 1 the epilogue is applied where C is stored.
//   Epilogue (tiles.cuh's Epilogue): alpha * acc + beta * C, plus a bias per row or per
//   column, then ReLU: linear's bias pass and a following ReLU cost no extra pass.
//
// gemm_tf32_pipelined ("tf32-pipelined") and gemm_3xtf32 ("3xtf32"), float only,
// extern "C": gemm_warptile's arguments, batching, split-K (k_per_split a multiple
// of 16) and epilogue on the pipelined tensor-core tile of mma.cuh (what one
// thread, warp and block compute is its header): cp.async copies slices of 16
// three ahead into swizzled shared buffers, 8 warps of 64 x 32 results multiply
// with mma.sync.m16n8k8, in TF32 or in 3xTF32 (float32-level errors from three
// TF32 products). op(A) is copied k-contiguous unless A is stored transposed, op(B)
// when B is; each of the four pairs of storage orders is its own instantiation of
// gemm_mma_tiles, so the inner loop has no branch on them.
//
// add_bias_rows: one thread per element of the rows x cols matrix y; thread i
// adds b[i % cols] to y[i].
//
// sum_rows: the sum over rows of a rows x cols matrix g, for column chunks
// of 32. Block (blockIdx.x, blockIdx.y) with 32 x 8 threads covers columns
// 32 * blockIdx.x + tx and the rows [blockIdx.y * rows_per_chunk, + rows_per_chunk):
// thread (ty, tx) adds every 8th row of its chunk, starting at row ty, then
// the 8 partial sums of each column are added in a fixed order in shared
// memory and written to out[blockIdx.y * cols + column]. With one row chunk
// that is the answer; with several, the host runs the kernel again on the
// (chunks x cols) partial sums. No atomics: the result is the same on every run.

#include "tiles.cuh"    // aligned16, load4, load_run4, the 128 x 128 tile machinery
#include "mma.cuh"      // the pipelined tensor-core tile machinery

#define GEMM_TILE 64
#define GEMM_CHUNK_K 16
#define GEMM_THREADS_SIDE 16
#define GEMM_PER_THREAD 4
#define GEMM_THREADS (GEMM_THREADS_SIDE * GEMM_THREADS_SIDE)
#define GEMM_LOADS_PER_THREAD (GEMM_TILE * GEMM_CHUNK_K / GEMM_THREADS)
// Shared-array padding, in elements: 8 bytes' worth, so that a half-warp
// writing one element to each of 16 rows meets 16 different banks.
#define GEMM_PAD (8 / sizeof(T))

#define SUM_COLUMNS 32
#define SUM_ROW_THREADS 8

// gemm_register: 1-D blocks of REG_THREADS threads, each computing 8 x 8 values
#define REG_BM 64                     // rows of C per block
#define REG_BN 128                    // columns of C per block
#define REG_BK 8                      // slice of K staged at a time
#define REG_THREADS 128
#define REG_A_STRIDE (REG_BM + 8)     // rows padded by 8 values, kept 16-byte aligned
#define REG_B_STRIDE (REG_BN + 8)

template <typename T>
__global__ void gemm_naive(const T* A, const T* B, T* C, long long M, long long N, long long K,
                           long long trans_a, long long trans_b, T alpha, T beta) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < M * N;
         i += (long long)gridDim.x * blockDim.x) {
        const long long m = i / N;
        const long long n = i % N;
        T acc = T(0);
        for (long long k = 0; k < K; ++k) {
            const T a = trans_a ? A[k * M + m] : A[m * K + k];
            const T b = trans_b ? B[n * K + k] : B[k * N + n];
            acc += a * b;
        }
        C[i] = beta == T(0) ? alpha * acc : alpha * acc + beta * C[i];
    }
}

template <typename T>
__global__ void gemm(const T* A, const T* B, T* C, long long M, long long N, long long K,
                     long long trans_a, long long trans_b, T alpha, T beta) {
    __shared__ T a_tile[GEMM_CHUNK_K][GEMM_TILE + GEMM_PAD];  // [k][m] = op(A)[m0 + m, k0 + k]
    __shared__ T b_tile[GEMM_CHUNK_K][GEMM_TILE + GEMM_PAD];  // [k][n] = op(B)[k0 + k, n0 + n]

    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int thread = ty * GEMM_THREADS_SIDE + tx;
    const long long m0 = (long long)blockIdx.x * GEMM_TILE;
    const long long n0 = (long long)blockIdx.y * GEMM_TILE;

    T acc[GEMM_PER_THREAD][GEMM_PER_THREAD];
#pragma unroll
    for (int i = 0; i < GEMM_PER_THREAD; ++i)
#pragma unroll
        for (int j = 0; j < GEMM_PER_THREAD; ++j)
            acc[i][j] = T(0);

    for (long long k0 = 0; k0 < K; k0 += GEMM_CHUNK_K) {
#pragma unroll
        for (int l = 0; l < GEMM_LOADS_PER_THREAD; ++l) {
            const int e = thread + l * GEMM_THREADS;
            // A is M x K (k contiguous) or, transposed, K x M (m contiguous):
            // let consecutive threads take the contiguous index.
            int m, k;
            if (trans_a) { m = e % GEMM_TILE; k = e / GEMM_TILE; }
            else         { k = e % GEMM_CHUNK_K; m = e / GEMM_CHUNK_K; }
            const long long gm = m0 + m, gk = k0 + k;
            T v = T(0);
            if (gm < M && gk < K)
                v = trans_a ? A[gk * M + gm] : A[gm * K + gk];
            a_tile[k][m] = v;

            // B is K x N (n contiguous) or, transposed, N x K (k contiguous).
            int n;
            if (trans_b) { k = e % GEMM_CHUNK_K; n = e / GEMM_CHUNK_K; }
            else         { n = e % GEMM_TILE; k = e / GEMM_TILE; }
            const long long gn = n0 + n, gkb = k0 + k;
            T w = T(0);
            if (gn < N && gkb < K)
                w = trans_b ? B[gn * K + gkb] : B[gkb * N + gn];
            b_tile[k][n] = w;
        }
        __syncthreads();

#pragma unroll
        for (int k = 0; k < GEMM_CHUNK_K; ++k) {
            T a[GEMM_PER_THREAD], b[GEMM_PER_THREAD];
#pragma unroll
            for (int i = 0; i < GEMM_PER_THREAD; ++i)
                a[i] = a_tile[k][ty + i * GEMM_THREADS_SIDE];
#pragma unroll
            for (int j = 0; j < GEMM_PER_THREAD; ++j)
                b[j] = b_tile[k][tx + j * GEMM_THREADS_SIDE];
#pragma unroll
            for (int i = 0; i < GEMM_PER_THREAD; ++i)
#pragma unroll
                for (int j = 0; j < GEMM_PER_THREAD; ++j)
                    acc[i][j] += a[i] * b[j];
        }
        // The next chunk overwrites the tiles: wait until everyone has read them.
        __syncthreads();
    }

    for (int i = 0; i < GEMM_PER_THREAD; ++i) {
        const long long gm = m0 + ty + i * GEMM_THREADS_SIDE;
        if (gm >= M)
            continue;
        for (int j = 0; j < GEMM_PER_THREAD; ++j) {
            const long long gn = n0 + tx + j * GEMM_THREADS_SIDE;
            if (gn >= N)
                continue;
            T* c = C + gm * N + gn;
            *c = beta == T(0) ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *c;
        }
    }
}

// aligned16, load4 and load_run4 (the 16-byte vector loads) are in common.cuh.

template <typename T>
__global__ void gemm_register(const T* A, const T* B, T* C, long long M, long long N,
                              long long K, long long trans_a, long long trans_b, T alpha,
                              T beta) {
    __shared__ __align__(16) T a_tile[REG_BK][REG_A_STRIDE];  // [k][m] = op(A)[m0 + m, k0 + k]
    __shared__ __align__(16) T b_tile[REG_BK][REG_B_STRIDE];  // [k][n] = op(B)[k0 + k, n0 + n]

    const int thread = threadIdx.x;
    const int tm = thread / 16;
    const int tn = thread % 16;
    const long long m0 = (long long)blockIdx.x * REG_BM;
    const long long n0 = (long long)blockIdx.y * REG_BN;
    // Vector loads need every stored row to start 16-byte aligned.
    const bool a_vector = (trans_a ? M : K) % 4 == 0 && aligned16(A);
    const bool b_vector = (trans_b ? K : N) % 4 == 0 && aligned16(B);

    T acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = T(0);

    for (long long k0 = 0; k0 < K; k0 += REG_BK) {
        T v[4] = {T(0), T(0), T(0), T(0)};
        if (!trans_a) {  // A is M x K: a run along k, stored down a column of a_tile
            const int m = thread % REG_BM;
            const int k = (thread / REG_BM) * 4;
            if (m0 + m < M) load_run4(A + (m0 + m) * K, k0 + k, K, a_vector, v);
#pragma unroll
            for (int j = 0; j < 4; ++j) a_tile[k + j][m] = v[j];
        } else {         // A is K x M: a run along m
            const int k = thread / (REG_BM / 4);
            const int m = (thread % (REG_BM / 4)) * 4;
            if (k0 + k < K) load_run4(A + (k0 + k) * M, m0 + m, M, a_vector, v);
#pragma unroll
            for (int j = 0; j < 4; ++j) a_tile[k][m + j] = v[j];
        }
#pragma unroll
        for (int half = 0; half < 2; ++half) {
#pragma unroll
            for (int j = 0; j < 4; ++j) v[j] = T(0);
            if (!trans_b) {  // B is K x N: a run along n
                const int k = thread / (REG_BN / 4) + 4 * half;
                const int n = (thread % (REG_BN / 4)) * 4;
                if (k0 + k < K) load_run4(B + (k0 + k) * N, n0 + n, N, b_vector, v);
#pragma unroll
                for (int j = 0; j < 4; ++j) b_tile[k][n + j] = v[j];
            } else {         // B is N x K: a run along k, stored down a column of b_tile
                const int n = thread;
                const int k = 4 * half;
                if (n0 + n < N) load_run4(B + (n0 + n) * K, k0 + k, K, b_vector, v);
#pragma unroll
                for (int j = 0; j < 4; ++j) b_tile[k + j][n] = v[j];
            }
        }
        __syncthreads();

        multiply_slice<REG_BK, REG_BM, REG_BN, REG_A_STRIDE, REG_B_STRIDE>(a_tile, b_tile, acc,
                                                                           tm, tn);
        // The next slice overwrites the tiles: wait until everyone has read them.
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const long long m = m0 + (i / 4) * (REG_BM / 2) + 4 * tm + i % 4;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const long long n = n0 + (j / 4) * (REG_BN / 2) + 4 * tn + j % 4;
            if (n >= N) continue;
            T* c = C + m * N + n;
            *c = beta == T(0) ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *c;
        }
    }
}

template <typename T>
__global__ void add_bias_rows(T* y, const T* b, long long cols, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        y[i] += b[i % cols];
    }
}

template <typename T>
__global__ void sum_rows(const T* g, T* out, long long rows, long long cols,
                         long long rows_per_chunk) {
    __shared__ T partial[SUM_ROW_THREADS][SUM_COLUMNS + 1];

    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const long long col = (long long)blockIdx.x * SUM_COLUMNS + tx;
    const long long first = (long long)blockIdx.y * rows_per_chunk;
    long long last = first + rows_per_chunk;
    if (last > rows)
        last = rows;

    T s = T(0);
    if (col < cols)
        for (long long r = first + ty; r < last; r += SUM_ROW_THREADS)
            s += g[r * cols + col];
    partial[ty][tx] = s;
    __syncthreads();

    if (ty == 0 && col < cols) {
        T total = partial[0][tx];
        for (int t = 1; t < SUM_ROW_THREADS; ++t)
            total += partial[t][tx];
        out[(long long)blockIdx.y * cols + col] = total;
    }
}


// At most 128 registers a thread for float, so that two blocks share an SM (tiles.cuh).
// What block (blockIdx.x, blockIdx.y, blockIdx.z) of a batched, split-K launch computes:
// the tile at rows m0 and columns n0 of product blockIdx.z / splits, over k in [k_begin,
// k_end), split blockIdx.z % splits of K.
struct BlockProduct {
    long long product, m0, n0, k_begin, k_end;
};

__device__ __forceinline__ BlockProduct block_product(int tile_rows, int tile_columns,
                                                      long long K, long long splits,
                                                      long long k_per_split) {
    const long long split = blockIdx.z % splits, k_begin = split * k_per_split;
    return {blockIdx.z / splits, (long long)blockIdx.x * tile_rows,
            (long long)blockIdx.y * tile_columns, k_begin,
            k_begin + k_per_split < K ? k_begin + k_per_split : K};
}

template <typename T>
__global__ void __launch_bounds__(TILE_THREADS, TILE_BLOCKS_PER_SM(T)) gemm_warptile(const T* A, const T* B, T* C, T* partial, long long M, long long N,
                              long long K, long long trans_a, long long trans_b, T alpha,
                              T beta, const T* bias, long long bias_mode, long long relu,
                              long long stride_a, long long stride_b, long long stride_c,
                              long long splits, long long k_per_split) {
    __shared__ __align__(16) T a_tile[2][TILE_BK][TILE_STRIDE];  // [k][m] = op(A)[m0 + m, k]
    __shared__ __align__(16) T b_tile[2][TILE_BK][TILE_STRIDE];  // [k][n] = op(B)[k, n0 + n]

    const int thread = threadIdx.x;
    const BlockProduct my = block_product(TILE_BM, TILE_BN, K, splits, k_per_split);
    const long long product = my.product, m0 = my.m0, n0 = my.n0, k_begin = my.k_begin,
                    k_end = my.k_end;
    A += product * stride_a;
    B += product * stride_b;
    // op(A) is M x K: k-contiguous unless stored transposed; op(B) is K x N, whose columns
    // are k-contiguous when it is stored transposed (N x K).
    const MatrixRuns<T> fetch_a = {A, M, K, k_end, !trans_a,
                                   (trans_a ? M : K) % 4 == 0 && aligned16(A), m0, thread};
    const MatrixRuns<T> fetch_b = {B, N, K, k_end, bool(trans_b),
                                   (trans_b ? K : N) % 4 == 0 && aligned16(B), n0, thread};

    T acc[8][8];   // multiply_tiles sets it
    const TileThread at = tile_thread(thread);
    multiply_tiles(a_tile, b_tile, fetch_a, !trans_a, fetch_b, bool(trans_b), k_begin, k_end,
                   acc, at, thread);

    const Epilogue<T> epi = {alpha, beta, bias, bias_mode, relu};
    if (splits == 1)
        store_tile_results(C + product * stride_c, M, N, m0, n0, at, acc, epi, false);
    else
        store_tile_results(partial + blockIdx.z * M * N, M, N, m0, n0, at, acc, epi, true);
}

// gemm_warptile's product on the pipelined tensor-core tile of mma.cuh, for one pair of
// storage orders (the operand layouts are template arguments, so the inner loop has no
// branch on them): the same batching, split-K (k_per_split a multiple of 16) and epilogue.
template <int PASSES, bool A_K_CONTIGUOUS, bool B_K_CONTIGUOUS>
__device__ __forceinline__ void gemm_mma_tiles(float* a_slices, float* b_slices,
                                               const float* A, const float* B, float* C,
                                               float* partial, long long M, long long N,
                                               long long K, float alpha, float beta,
                                               const float* bias, long long bias_mode,
                                               long long relu, long long stride_a,
                                               long long stride_b, long long stride_c,
                                               long long splits, long long k_per_split) {
    const int thread = threadIdx.x;
    const BlockProduct my = block_product(MMA_BM, MMA_BN, K, splits, k_per_split);
    const long long product = my.product, m0 = my.m0, n0 = my.n0, k_begin = my.k_begin,
                    k_end = my.k_end;
    A += product * stride_a;
    B += product * stride_b;
    const MatrixSlices<A_K_CONTIGUOUS> fetch_a = {
        A, M, K, k_end, m0, (A_K_CONTIGUOUS ? K : M) % 4 == 0 && aligned16(A), thread};
    const MatrixSlices<B_K_CONTIGUOUS> fetch_b = {
        B, N, K, k_end, n0, (B_K_CONTIGUOUS ? K : N) % 4 == 0 && aligned16(B), thread};

    float acc[4][4][4];   // multiply_mma_tiles sets it
    multiply_mma_tiles<PASSES, A_K_CONTIGUOUS, B_K_CONTIGUOUS>(a_slices, b_slices, fetch_a,
                                                               fetch_b, k_begin, k_end, acc,
                                                               thread);

    const Epilogue<float> epi = {alpha, beta, bias, bias_mode, relu};
    const MmaThread at = mma_thread(thread);
    if (splits == 1)
        store_mma_results(C + product * stride_c, M, N, m0, n0, at, acc, epi, false);
    else
        store_mma_results(partial + (long long)blockIdx.z * M * N, M, N, m0, n0, at, acc, epi,
                          true);
}

// op(A) is k-contiguous unless A is stored transposed; op(B) when B is. The shared buffers
// are declared here, once for the four instantiations.
template <int PASSES>
__device__ __forceinline__ void gemm_mma(const float* A, const float* B, float* C,
                                         float* partial, long long M, long long N, long long K,
                                         long long trans_a, long long trans_b, float alpha,
                                         float beta, const float* bias, long long bias_mode,
                                         long long relu, long long stride_a, long long stride_b,
                                         long long stride_c, long long splits,
                                         long long k_per_split) {
    __shared__ __align__(16) float a_slices[MMA_STAGES * MMA_SLICE];  // op(A)[m0 + m, k]
    __shared__ __align__(16) float b_slices[MMA_STAGES * MMA_SLICE];  // op(B)[k, n0 + n]
#define GEMM_MMA_ARGS a_slices, b_slices, A, B, C, partial, M, N, K, alpha, beta, bias, bias_mode, relu, \
                      stride_a, stride_b, stride_c, splits, k_per_split
    if (!trans_a && !trans_b) gemm_mma_tiles<PASSES, true, false>(GEMM_MMA_ARGS);
    else if (!trans_a) gemm_mma_tiles<PASSES, true, true>(GEMM_MMA_ARGS);
    else if (!trans_b) gemm_mma_tiles<PASSES, false, false>(GEMM_MMA_ARGS);
    else gemm_mma_tiles<PASSES, false, true>(GEMM_MMA_ARGS);
#undef GEMM_MMA_ARGS
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 1)
gemm_tf32_pipelined(const float* A, const float* B, float* C, float* partial, long long M,
                    long long N, long long K, long long trans_a, long long trans_b, float alpha,
                    float beta, const float* bias, long long bias_mode, long long relu,
                    long long stride_a, long long stride_b, long long stride_c,
                    long long splits, long long k_per_split) {
    gemm_mma<1>(A, B, C, partial, M, N, K, trans_a, trans_b, alpha, beta, bias, bias_mode, relu,
                stride_a, stride_b, stride_c, splits, k_per_split);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 1)
gemm_3xtf32(const float* A, const float* B, float* C, float* partial, long long M, long long N,
            long long K, long long trans_a, long long trans_b, float alpha, float beta,
            const float* bias, long long bias_mode, long long relu, long long stride_a,
            long long stride_b, long long stride_c, long long splits, long long k_per_split) {
    gemm_mma<3>(A, B, C, partial, M, N, K, trans_a, trans_b, alpha, beta, bias, bias_mode, relu,
                stride_a, stride_b, stride_c, splits, k_per_split);
}

// C[b][i] = epilogue(sum_s partial[b * splits + s][i]), the splits added in order: one
// thread per element i of the batch's M x N results (grid-stride loop over n = batch * M
// * N), C's products stride_c apart.
template <typename T>
__global__ void gemm_sum_splits(const T* partial, T* C, long long M, long long N, T alpha,
                                T beta, const T* bias, long long bias_mode, long long relu,
                                long long stride_c, long long splits, long long n) {
    const Epilogue<T> epi = {alpha, beta, bias, bias_mode, relu};
    const long long MN = M * N;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long product = i / MN, e = i % MN;
        const T* p = partial + product * splits * MN + e;
        T sum = T(0);
        for (long long s = 0; s < splits; ++s) sum += p[s * MN];
        T* c = C + product * stride_c + e;
        *c = epi.apply(sum, c, e / N, e % N);
    }
}
