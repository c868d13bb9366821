// gemm: C = alpha * op(A) @ op(B) + beta * C for row-major matrices, where
// op(A) is M x K (A stored M x K, or K x M when trans_a) and op(B) is K x N
// (B stored K x N, or N x K when trans_b); plus the bias pass add_bias_rows
// and the column sums sum_rows that linear's backward needs.
//
// gemm tiling: block (blockIdx.x, blockIdx.y) owns the 64 x 64 tile of C at
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
// double. With beta == 0, C is only written (it may hold garbage or NaN).
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
