// tiles.cuh: the block-tile machinery of the large-tile rungs, written once and used by
// the matrix product of linear.cu (gemm_warptile, plain and batched, with split-K) and
// the implicit-GEMM convolutions of conv3x3.cu (conv3x3_*_tile128). Like the .cu files it
// includes nothing but common.cuh (NVRTC compiles without system headers).
//
// One block computes a 128 x 128 tile of a product C = A @ B (A: rows x K, B: K x
// columns) with 256 threads, walking K in slices of 8.
//
//   Block:  8 warps; warp w owns the 32 x 64 part of the tile at rows 32 (w / 2) and
//           columns 64 (w % 2).
//   Warp:   its 32 lanes form a 4 x 8 grid; lane l computes rows 4 (l / 8) + i and
//           16 + 4 (l / 8) + i and columns 4 (l % 8) + j and 32 + 4 (l % 8) + j of its
//           warp's part (i, j = 0..3): an 8 x 8 block of results in 64 registers.
//   Thread: per k of a slice it reads 8 values of A and 8 of B from shared memory, as
//           four 16-byte loads, and does 64 multiply-adds.
//
// Why these sizes. A 128 x 128 tile reads 128 + 128 values per k for 16384
// multiply-adds: 0.016 global loads per FMA, half the 64 x 128 tile's 0.023, which is
// what a product whose operands come from L2 needs at 50 TFLOP/s. In a warp's 4 x 8
// lane grid the 8 B values of a k are 8 neighbouring runs of 16 bytes (one 128-byte
// shared-memory wavefront) and the A values are 4 runs that 8 lanes each share (a
// broadcast), so shared memory serves 64 FMAs per 2 wavefronts: 0.03 wavefronts per
// FMA, well under the 0.25 at which it would set the speed. 64 accumulators, 16 operands
// and 8 prefetched values per thread fit in 128 registers, so two blocks (16 warps) share
// an SM: enough warps to hide the latency of shared memory.
//
// Double buffering. The slices live in two shared buffers. While the block multiplies
// slice s from one buffer, each thread's global loads for slice s + 1 are already in
// flight into registers; after the multiply it writes them into the other buffer, and
// one barrier per slice (instead of two) separates the phases: nobody still reads the
// buffer being written, because everybody passed the barrier after reading it.
//
// Staging. Each operand is staged as tile[k][i] (k the slice row, i the row of A or
// the column of B), 128 + 4 values per row: the rows stay 16-byte aligned, and the
// column stores of a k-contiguous operand (A stored transposed in shared memory) land in
// 32 different banks. Thread t fetches one run of 4 values per operand and slice:
//   k-contiguous operand (A rows x K, or B stored columns x K): item t / 2, k 4 (t % 2)
//     .. + 3: a warp reads 16 rows x 32 bytes, whole 32-byte sectors;
//   item-contiguous operand (A stored K x rows, B K x columns): k t / 32, items
//     4 (t % 32) .. + 3: a warp reads 512 consecutive bytes.
// With 16-byte loads and stores (float4, or two double2) when the stored rows allow.

#ifndef TINYVGG_KERNELS_TILES_CUH
#define TINYVGG_KERNELS_TILES_CUH

#include "common.cuh"   // aligned16, load4, store4, load_run4, multiply_8x8

#define TILE_BM 128                  // rows of C per block
#define TILE_BN 128                  // columns of C per block
#define TILE_BK 8                    // slice of K staged at a time
#define TILE_THREADS 256             // 8 warps
#define TILE_STRIDE (TILE_BM + 4)    // shared row length: 16-byte aligned, bank-shifted
// Blocks per SM that the kernels' __launch_bounds__ ask registers for: two for float (128
// registers a thread); one for double, whose 64 accumulators alone take 128 registers.
#define TILE_BLOCKS_PER_SM(T) (sizeof(T) == 4 ? 2 : 1)

// Where thread `thread` of a block puts its 8 x 8 results: rows row0 + i and row0 + 16 + i,
// columns col0 + j and col0 + 32 + j of the block's tile (i, j = 0..3).
struct TileThread {
    int row0, col0;
};

__device__ __forceinline__ TileThread tile_thread(int thread) {
    const int warp = thread / 32, lane = thread % 32;
    return {32 * (warp / 2) + 4 * (lane / 8), 64 * (warp % 2) + 4 * (lane % 8)};
}

// The two buffers of one operand: buffer b is tile[b], a TILE_BK x TILE_STRIDE array.
template <typename T>
using TileBuffer = T[TILE_BK][TILE_STRIDE];

// Thread t's run of 4 values of one operand slice goes to tile[k][item] as the staging
// comment above says. run[0..3] runs along k (k_contiguous) or along the items.
template <typename T>
__device__ __forceinline__ void stash_run(T (*tile)[TILE_STRIDE], bool k_contiguous, int thread,
                                          const T* run) {
    if (k_contiguous) {
        const int item = thread / 2, k = 4 * (thread % 2);
#pragma unroll
        for (int j = 0; j < 4; ++j) tile[k + j][item] = run[j];
    } else {
        store4(&tile[thread / 32][4 * (thread % 32)], run);
    }
}

// The run of 4 values thread t fetches of op(P), an L x K operand stored as P (L x K,
// k-contiguous) or P^T (K x L); items from l0, k from k0, zero outside [0, L) x [0, k_end).
// vector: P 16-byte aligned and its stored rows a multiple of 4 long.
template <typename T>
__device__ __forceinline__ void fetch_matrix_run(const T* P, long long L, long long K,
                                                 long long k_end, bool k_contiguous,
                                                 bool vector, long long l0, long long k0,
                                                 int thread, T* run) {
#pragma unroll
    for (int j = 0; j < 4; ++j) run[j] = T(0);
    if (k_contiguous) {
        const long long l = l0 + thread / 2;
        if (l < L) load_run4(P + l * K, k0 + 4 * (thread % 2), k_end, vector, run);
    } else {
        const long long k = k0 + thread / 32;
        if (k < k_end) load_run4(P + k * L, l0 + 4 * (thread % 32), L, vector, run);
    }
}

template <typename T>
struct MatrixRuns {   // fetch_matrix_run as the fetch functor of multiply_tiles
    const T* P;
    long long L, K, k_end;
    bool k_contiguous, vector;
    long long l0;
    int thread;
    __device__ __forceinline__ void operator()(long long k0, T* run) const {
        fetch_matrix_run(P, L, K, k_end, k_contiguous, vector, l0, k0, thread, run);
    }
};

// The main loop: acc = A[:, k_begin:k_end] @ B[k_begin:k_end, :] over the block's tile,
// double-buffered as above. fetch_a(k0, run) and fetch_b(k0, run) read thread t's runs of
// the slice at k0 from global memory (zero outside the operand); a_k_contiguous and
// b_k_contiguous say how each is stashed. Every thread of the block must call this.
template <typename T, typename FetchA, typename FetchB>
__device__ __forceinline__ void multiply_tiles(TileBuffer<T>* a_tile, TileBuffer<T>* b_tile,
                                               FetchA& fetch_a, bool a_k_contiguous,
                                               FetchB& fetch_b, bool b_k_contiguous,
                                               long long k_begin, long long k_end,
                                               T (*acc)[8], TileThread at, int thread) {
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = T(0);
    if (k_begin >= k_end) return;   // the same for every thread of the block
    T a_run[4], b_run[4];
    fetch_a(k_begin, a_run);
    fetch_b(k_begin, b_run);
    stash_run(a_tile[0], a_k_contiguous, thread, a_run);
    stash_run(b_tile[0], b_k_contiguous, thread, b_run);
    __syncthreads();
    int buffer = 0;
    for (long long k0 = k_begin; k0 < k_end; k0 += TILE_BK) {
        const bool more = k0 + TILE_BK < k_end;
        if (more) {   // the next slice's loads are in flight during the multiply
            fetch_a(k0 + TILE_BK, a_run);
            fetch_b(k0 + TILE_BK, b_run);
        }
        multiply_8x8<TILE_BK, TILE_STRIDE, TILE_STRIDE, 16, 32>(a_tile[buffer], b_tile[buffer],
                                                              acc, at.row0, at.col0);
        if (more) {
            stash_run(a_tile[buffer ^ 1], a_k_contiguous, thread, a_run);
            stash_run(b_tile[buffer ^ 1], b_k_contiguous, thread, b_run);
        }
        // One barrier per slice: the stashes above go to the buffer nobody reads now, and
        // after it the block reads them while the next stash goes to this one.
        __syncthreads();
        buffer ^= 1;
    }
}

// What is done to a result where it is stored: C = alpha * acc + beta * C (C only written
// when beta is 0), then + bias[row] (bias_mode 1) or bias[column] (bias_mode 2), then
// max(., 0) when relu is 1.
template <typename T>
struct Epilogue {
    T alpha, beta;
    const T* bias;
    long long bias_mode, relu;

    __device__ __forceinline__ T apply(T value, const T* c, long long row, long long column) const {
        T v = alpha * value;
        if (beta != T(0)) v += beta * *c;
        if (bias_mode == 1) v += bias[row];
        else if (bias_mode == 2) v += bias[column];
        return relu && !(v > T(0)) ? T(0) : v;
    }
};

// The 8 x 8 results of one thread of a 128 x 128 tile at (m0, n0): stored through the
// epilogue into C (M x N, row-major), or raw into partial when the product is split.
template <typename T>
__device__ __forceinline__ void store_tile_results(T* C, long long M, long long N, long long m0,
                                                   long long n0, TileThread at,
                                                   const T (*acc)[8], const Epilogue<T>& epi,
                                                   bool raw) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const long long m = m0 + at.row0 + (i / 4) * 16 + i % 4;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const long long n = n0 + at.col0 + (j / 4) * 32 + j % 4;
            if (n >= N) continue;
            T* c = C + m * N + n;
            *c = raw ? acc[i][j] : epi.apply(acc[i][j], c, m, n);
        }
    }
}

#endif  // TINYVGG_KERNELS_TILES_CUH
