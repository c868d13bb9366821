// common.cuh: device helpers that several kernel files share, defined once here.
// A .cu file that uses them has #include "common.cuh"; every compiler of the
// sources (NVRTC in tinyvgg/cuda.py, nvcc and NVRTC in
// tests/test_kernels_compile.py, g++ in tests/host_cuda) is given the kernels
// folder as an include path. Like the .cu files, this header includes nothing
// (NVRTC compiles without system headers).
//
// The 16-byte vector accesses of the implicit-GEMM convolution (conv3x3.cu) and
// the register-blocked matrix product (linear.cu):
//   aligned16(p)   whether p may be read or written 16 bytes at a time; a kernel
//                  tests its array's base once and uses vector accesses only then.
//   load4(p, v)    v[0..3] = p[0..3], p 16-byte aligned: one float4, or two double2.
//   store4(p, v)   p[0..3] = v[0..3], p 16-byte aligned: one float4, or two double2.
//   load_run4(row, i, n, vector, v)
//                  v[j] = row[i + j] for j = 0..3, zero from the row's length n on
//                  (the ragged edge of a tile); one load4 when the caller allows
//                  it (row 16-byte aligned, i a multiple of 4) and the run is whole.
//
// The inner loop every register-blocked product shares (linear.cu's gemm_register and
// gemm_warptile, conv3x3.cu's implicit GEMMs):
//   multiply_8x8<BK, A_STRIDE, B_STRIDE, ROW_GAP, COL_GAP>(a_tile, b_tile, acc, row0, col0)
//                  one staged K slice: a thread adds a_tile[k][row] * b_tile[k][column]
//                  to its 8 x 8 results acc, for two runs of 4 rows and two of 4 columns;
//   multiply_slice<BK, BM, BN, A_STRIDE, B_STRIDE>(a_tile, b_tile, acc, tm, tn)
//                  the same for thread (tm, tn) of a grid over a BM x BN tile.

#ifndef TINYVGG_KERNELS_COMMON_CUH
#define TINYVGG_KERNELS_COMMON_CUH

__device__ __forceinline__ bool aligned16(const void* p) {
    return ((unsigned long long)p & 15) == 0;
}

// Four consecutive values at p (16-byte aligned) with 16-byte accesses:
// one float4, or two double2.
__device__ __forceinline__ void load4(const float* p, float* v) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
}

__device__ __forceinline__ void load4(const double* p, double* v) {
    const double2 lo = *reinterpret_cast<const double2*>(p);
    const double2 hi = *reinterpret_cast<const double2*>(p + 2);
    v[0] = lo.x; v[1] = lo.y; v[2] = hi.x; v[3] = hi.y;
}

__device__ __forceinline__ void store4(float* p, const float* v) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}

__device__ __forceinline__ void store4(double* p, const double* v) {
    *reinterpret_cast<double2*>(p) = make_double2(v[0], v[1]);
    *reinterpret_cast<double2*>(p + 2) = make_double2(v[2], v[3]);
}

// v[j] = row[i + j] for j = 0..3, zero from the row's length n on. One vector load when
// the caller allows it (row 16-byte aligned, i a multiple of 4) and the run is whole.
template <typename T>
__device__ __forceinline__ void load_run4(const T* row, long long i, long long n, bool vector,
                                          T* v) {
    if (vector && i + 4 <= n) {
        load4(row + i, v);
        return;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = i + j < n ? row[i + j] : T(0);
}

// acc[i][j] += sum_k a_tile[k][row i] * b_tile[k][column j] over one staged slice of BK,
// for the thread whose rows are row0 + i and row0 + ROW_GAP + i and whose columns are
// col0 + j and col0 + COL_GAP + j (i, j = 0..3; acc rows and columns 4..7 are the second
// ones). Each k reads 8 + 8 values from shared memory, four runs of 4, for 64
// multiply-adds. The block's thread grid decides row0 and col0: multiply_slice below
// for the 64 x 128 tiles, tile_thread in tiles.cuh for the warp-tiled 128 x 128 ones.
template <int BK, int A_STRIDE, int B_STRIDE, int ROW_GAP, int COL_GAP, typename T>
__device__ __forceinline__ void multiply_8x8(const T (*a_tile)[A_STRIDE],
                                             const T (*b_tile)[B_STRIDE], T (*acc)[8],
                                             int row0, int col0) {
#pragma unroll
    for (int k = 0; k < BK; ++k) {
        T a[8], b[8];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            a[i] = a_tile[k][row0 + i];
            a[4 + i] = a_tile[k][row0 + ROW_GAP + i];
            b[i] = b_tile[k][col0 + i];
            b[4 + i] = b_tile[k][col0 + COL_GAP + i];
        }
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[i][j] += a[i] * b[j];
    }
}

// multiply_8x8 for thread (tm, tn) of a BM x BN block tile whose threads form a grid over
// the whole tile: rows 4 tm + i and BM/2 + 4 tm + i, columns 4 tn + j and BN/2 + 4 tn + j.
template <int BK, int BM, int BN, int A_STRIDE, int B_STRIDE, typename T>
__device__ __forceinline__ void multiply_slice(const T (*a_tile)[A_STRIDE],
                                               const T (*b_tile)[B_STRIDE], T (*acc)[8],
                                               int tm, int tn) {
    multiply_8x8<BK, A_STRIDE, B_STRIDE, BM / 2, BN / 2>(a_tile, b_tile, acc, 4 * tm, 4 * tn);
}

#endif  // TINYVGG_KERNELS_COMMON_CUH
