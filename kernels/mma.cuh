// mma.cuh: the tensor-core machinery, written once: TF32 rounding and the warp's
// mma.sync product (the tf32-mma rung of conv3x3.cu uses them alone), and the pipelined
// 128 x 128 block tile that the tf32-pipelined and 3xtf32 rungs run on (linear.cu's
// matrix product; conv3x3.cu's forward and weight gradient, also in their -nhwc forms).
// Float only. Like the .cu
// files it includes nothing (NVRTC compiles without system headers); its inline PTX has
// TINYVGG_HOST_EMULATION branches that call tests/host_cuda's C++ stand-ins, and below
// compute capability 8.0 (no TF32 tensor cores, no cp.async) stubs that trap: the host
// refuses these rungs there.
//
// One block computes a 128 x 128 tile of C = A @ B (A: rows x K, B: K x columns) with 256
// threads, walking K in slices of 16.
//
//   Block:  8 warps; warp w owns the 64 x 32 part of the tile at rows 64 (w / 4) and
//           columns 32 (w % 4).
//   Warp:   per k-step of 8, 4 x 4 mma.sync.m16n8k8 products (16 x 8 results each,
//           1024 multiply-adds an instruction) over its part.
//   Thread: in PTX's fragment layout lane l, with g = l / 4 and t = l % 4, holds of each
//           16 x 8 x 8 product A(g, t), A(g + 8, t), A(g, t + 4), A(g + 8, t + 4),
//           B(t, g), B(t + 4, g), and the results (g, 2t), (g, 2t + 1), (g + 8, 2t),
//           (g + 8, 2t + 1): 64 results in registers, 24 shared loads per k-step.
//
// The pipeline. Slices are copied global -> shared with cp.async (no registers on the
// way, so the copies of later slices fly while the warps multiply) into MMA_STAGES = 3
// buffers: while slice s is multiplied, s + 1 has landed or is landing and s + 2 is
// being requested. Each thread commits one group of copies per slice; before slice s
// it waits until only the newest group (slice s + 1) may be pending, then one barrier
// makes every thread's copies of s visible and frees the buffer slice s - 1 used, which
// the copies of slice s + 2 then fill. Out-of-range values are copied with a source size
// of 0, which cp.async fills with zeros: padding and ragged edges cost no branches in
// the product. 3 stages x 2 operands x 2048 floats = 48 KB, the most a block may declare
// statically.
//
// Why these sizes. A 128 x 128 tile copies 2 x 128 values per k for 16384 multiply-adds
// (0.016 global loads per FMA, what operands served from L2 need at tensor-core rates). A
// warp's 64 x 32 part takes 24 fragment loads for 16 products of 1024 multiply-adds; the
// 64 accumulators, the fragments (twice as many for 3xTF32) and the copies' addresses
// need more than 128 registers a thread, so one block (8 warps) runs per SM, and it is
// the two slices in flight, not more warps, that hide the copies' latency. Slices of 16
// halve the barriers of slices of 8, and three stages of them fill the 48 KB.
//
// Shared layouts without bank conflicts and without padding. An operand slice holds 128
// items (rows of A, or columns of B) x 16 k, in one of two layouts, chosen by which way
// the operand runs in global memory so that 16-byte copies stay 16-byte copies:
//   k-contiguous (A stored rows x K, B stored columns x K): item i's 16 values at 16 i,
//     its four runs of 4 swapped around as run ^ ((i / 2) % 4). A fragment load reads
//     items g (8 rows) at k = t (4 values): without the swap, rows 2 apart hit the same
//     banks; with it, (g % 2, (g / 2) % 4, t) are 32 different banks.
//   item-contiguous (A stored K x rows, B stored K x columns): k's 128 items at 128 k,
//     item i stored at i ^ 8 (k % 4). A fragment load reads k = t, items g: without the
//     swap every t hits the same 8 banks; with it, 32 different ones.
// Either way a run of 4 values stays 4 neighbouring, 16-byte aligned floats.
//
// Copies: per slice and operand, thread t copies 2 runs of 4 values:
//   k-contiguous: items t / 4 and t / 4 + 64, k 4 (t % 4) .. + 3 (a warp reads 8 rows x
//     64 bytes);
//   item-contiguous: k t / 32 and t / 32 + 8, items 4 (t % 32) .. + 3 (a warp reads 512
//     neighbouring bytes);
// one 16-byte cp.async where the run lies whole and aligned in global memory, else four
// 4-byte ones (the convolution's gathers).
//
// Precision. "tf32": each operand rounded to TF32 (10 mantissa bits, cvt.rna), one
// product per fragment pair, sums in float: errors about 1e-3 of the result's scale.
// "3xtf32": each operand split as v = big + small, both TF32 (small holds the next 11
// bits), and big*small + small*big + big*big summed in float (the small*small term is
// below float's rounding): float32-level errors at three products per fragment pair.

#ifndef TINYVGG_KERNELS_MMA_CUH
#define TINYVGG_KERNELS_MMA_CUH

#define MMA_BM 128                    // rows of C per block
#define MMA_BN 128                    // columns of C per block
#define MMA_BK 16                     // slice of K copied at a time
#define MMA_STAGES 3                  // slices in shared memory at once
#define MMA_THREADS 256               // 8 warps
#define MMA_SLICE (MMA_BM * MMA_BK)   // values of one operand's slice (MMA_BN == MMA_BM)

// The float's bits rounded to TF32 (10 mantissa bits, to nearest, ties away from zero).
__device__ __forceinline__ unsigned tf32_bits(float v) {
    unsigned bits;
#if defined(TINYVGG_HOST_EMULATION)
    bits = host_tf32_bits(v);  // tests/host_cuda: the same rounding, in C++
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    bits = __float_as_uint(v);  // never run: the host refuses TF32 below compute capability 8.0
#else
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(bits) : "f"(v));
#endif
    return bits;
}

// d += a @ b on the tensor cores for one 16 x 8 x 8 tile, in PTX's fragment layout (see
// the header). Every lane of the warp must take part.
__device__ __forceinline__ void mma_tf32(float* d, const unsigned* a, const unsigned* b) {
#if defined(TINYVGG_HOST_EMULATION)
    host_mma_tf32(d, a, b);  // tests/host_cuda: the warp's lanes meet at a barrier
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();  // never run: the host refuses TF32 below compute capability 8.0
#else
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// Copies BYTES (4 or 16) bytes global -> shared without passing through registers: the
// first src_bytes (BYTES or 0) from src, zeros for the rest. src must be a valid address
// even when src_bytes is 0. 4-byte copies go through L1 (the convolution's gathers read
// each value up to 9 times), 16-byte ones only through L2.
template <int BYTES>
__device__ __forceinline__ void cp_async(void* dst, const void* src, int src_bytes) {
#if defined(TINYVGG_HOST_EMULATION)
    host_cp_async(dst, src, BYTES, src_bytes);  // tests/host_cuda: performed at the wait
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();  // never run: the host refuses these rungs below compute capability 8.0
#else
    unsigned shared;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }"
        : "=r"(shared) : "l"(dst));
    if (BYTES == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
                     :: "r"(shared), "l"(src), "r"(src_bytes) : "memory");
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;"
                     :: "r"(shared), "l"(src), "r"(src_bytes) : "memory");
#endif
}

// Closes this thread's group of copies issued since the last commit.
__device__ __forceinline__ void cp_async_commit() {
#if defined(TINYVGG_HOST_EMULATION)
    host_cp_async_commit();
#elif !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}

// Waits until at most PENDING of this thread's newest committed groups are still in flight.
template <int PENDING>
__device__ __forceinline__ void cp_async_wait() {
#if defined(TINYVGG_HOST_EMULATION)
    host_cp_async_wait(PENDING);
#elif !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;" :: "n"(PENDING) : "memory");
#endif
}

// Where operand value (item, k) of a slice lies, in the layouts of the header.
template <bool K_CONTIGUOUS>
__device__ __forceinline__ int slice_offset(int item, int k) {
    if (K_CONTIGUOUS) return item * MMA_BK + ((((k >> 2) ^ (item >> 1)) & 3) << 2) + (k & 3);
    return k * MMA_BM + (item ^ ((k & 3) << 3));
}

// Thread t's two runs of an operand slice: run j (0, 1) is items item + j * item_gap at
// k .. k + 3 (k-contiguous), or k + j * k_gap at items item .. item + 3 (item-contiguous).
struct SliceRuns {
    int item, k, item_gap, k_gap;
};

template <bool K_CONTIGUOUS>
__device__ __forceinline__ SliceRuns slice_runs(int thread) {
    if (K_CONTIGUOUS) return {thread / 4, 4 * (thread % 4), 64, 0};
    return {4 * (thread % 32), thread / 32, 0, 8};
}

// A matrix operand as a fetch functor of multiply_mma_tiles: op(P) is L x K (items x k),
// stored as P (L x K) when K_CONTIGUOUS or as P^T (K x L); items from l0, k below k_end.
// vector: P 16-byte aligned and its stored rows a multiple of 4 long.
template <bool K_CONTIGUOUS>
struct MatrixSlices {
    const float* P;
    long long L, K, k_end, l0;
    bool vector;
    int thread;

    __device__ __forceinline__ void operator()(float* slice, long long k0) const {
        const SliceRuns r = slice_runs<K_CONTIGUOUS>(thread);
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            const int item = r.item + j * r.item_gap, kk = r.k + j * r.k_gap;
            float* dst = slice + slice_offset<K_CONTIGUOUS>(item, kk);
            const long long l = l0 + item, k = k0 + kk;
            if (K_CONTIGUOUS) {   // values (l, k .. k + 3) at P[l * K + k ..]
                const float* row = P + l * K;
                if (vector && l < L && k + 4 <= k_end) {
                    cp_async<16>(dst, row + k, 16);
                    continue;
                }
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const bool in = l < L && k + e < k_end;
                    cp_async<4>(dst + e, in ? row + k + e : P, in ? 4 : 0);
                }
            } else {              // values (l .. l + 3, k) at P[k * L + l ..]
                const float* row = P + k * L;
                if (vector && k < k_end && l + 4 <= L) {
                    cp_async<16>(dst, row + l, 16);
                    continue;
                }
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const bool in = k < k_end && l + e < L;
                    cp_async<4>(dst + e, in ? row + l + e : P, in ? 4 : 0);
                }
            }
        }
    }
};

// v as TF32 fragments: big, its rounding; with PASSES 3 also small, the rounding of what
// big dropped (v = big + small to about 22 bits).
template <int PASSES>
__device__ __forceinline__ void split_tf32(float v, unsigned& big, unsigned& small) {
    big = tf32_bits(v);
    if (PASSES == 3) small = tf32_bits(v - __uint_as_float(big));
}

// Where a lane's fragment values lie in a slice buffer. A fragment value is item W + 8 j + g
// (W the warp's first row or column, a multiple of 32; j = 0..7) at k = k8 + t + 4 r (k8 =
// 0 or 8, r = 0 or 1). In either layout its offset is one of 4 per-lane numbers plus a
// constant the compiler folds into the load instruction, so the 24 fragment loads of a
// k-step cost no address arithmetic and no registers beyond these 4:
//   k-contiguous: 16 (W + 8 j + g) + 4 ((k / 4) ^ (g / 2) % 4) + t, the swap the same for
//     all of a lane's items (8 j moves item / 2 by multiples of 4): lane[k / 4] + 16 (8 j);
//   item-contiguous: 128 k + ((W + 8 j + g) ^ 8 t) = 128 (k8 + 4 r) + W + 32 (j / 4) +
//     (128 t + g + 8 ((j % 4) ^ t)): lane[j % 4] + the rest.
template <bool K_CONTIGUOUS>
struct FragmentLanes {
    int lane[4];

    __device__ __forceinline__ FragmentLanes(int W, int g, int t) {
#pragma unroll
        for (int q = 0; q < 4; ++q)
            lane[q] = K_CONTIGUOUS ? MMA_BK * (W + g) + 4 * ((q ^ (g >> 1)) & 3) + t
                                   : W + MMA_BM * t + g + 8 * (q ^ t);
    }
    __device__ __forceinline__ int at(int j, int k8, int r) const {
        if (K_CONTIGUOUS) return lane[k8 / 4 + r] + MMA_BK * 8 * j;
        return lane[j % 4] + MMA_BM * (k8 + 4 * r) + 32 * (j / 4);
    }
};

// The 4 x 4 products of one k-step (8) of a warp's 64 x 32 part, from slice buffers a and
// b: acc[mt][nt] += A(rows 16 mt ..) @ B(columns 8 nt ..), in PASSES products each.
template <int PASSES, bool A_K_CONTIGUOUS, bool B_K_CONTIGUOUS>
__device__ __forceinline__ void multiply_k_step(const float* a, const float* b, int k8,
                                                const FragmentLanes<A_K_CONTIGUOUS>& a_lanes,
                                                const FragmentLanes<B_K_CONTIGUOUS>& b_lanes,
                                                float (*acc)[4][4]) {
    unsigned a_big[4][4], a_small[4][4], b_big[4][2], b_small[4][2];
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int r = 0; r < 4; ++r)   // rows 16 mt + g + 8 (r % 2), k k8 + t + 4 (r / 2)
            split_tf32<PASSES>(a[a_lanes.at(2 * mt + r % 2, k8, r / 2)], a_big[mt][r],
                               a_small[mt][r]);
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int r = 0; r < 2; ++r)   // column 8 nt + g, k k8 + t + 4 r
            split_tf32<PASSES>(b[b_lanes.at(nt, k8, r)], b_big[nt][r], b_small[nt][r]);
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
            if (PASSES == 3) {   // the small terms first: they are the least significant
                mma_tf32(acc[mt][nt], a_small[mt], b_big[nt]);
                mma_tf32(acc[mt][nt], a_big[mt], b_small[nt]);
            }
            mma_tf32(acc[mt][nt], a_big[mt], b_big[nt]);
        }
}

// Where a thread's results lie in the block's tile: acc[mt][nt][r] is row
// row0 + 16 mt + 8 (r / 2), column col0 + 8 nt + r % 2.
struct MmaThread {
    int row0, col0;
};

__device__ __forceinline__ MmaThread mma_thread(int thread) {
    const int warp = thread / 32, lane = thread % 32;
    return {64 * (warp / 4) + lane / 4, 32 * (warp % 4) + 2 * (lane % 4)};
}

// The main loop: acc = A[:, k_begin:k_end] @ B[k_begin:k_end, :] over the block's tile,
// pipelined as the header says. fetch_a(slice, k0) and fetch_b(slice, k0) issue thread
// t's copies of the slice at k0 into a slice buffer (zeros outside the operand).
// a_slices and b_slices are MMA_STAGES buffers of MMA_SLICE floats each, 16-byte aligned.
// Every thread of the block must call this.
template <int PASSES, bool A_K_CONTIGUOUS, bool B_K_CONTIGUOUS, typename FetchA,
          typename FetchB>
__device__ __forceinline__ void multiply_mma_tiles(float* a_slices, float* b_slices,
                                                   const FetchA& fetch_a, const FetchB& fetch_b,
                                                   long long k_begin, long long k_end,
                                                   float (*acc)[4][4], int thread) {
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[mt][nt][r] = 0.0f;
    const int warp = thread / 32, g = (thread % 32) / 4, t = thread % 4;
    const FragmentLanes<A_K_CONTIGUOUS> a_lanes(64 * (warp / 4), g, t);
    const FragmentLanes<B_K_CONTIGUOUS> b_lanes(32 * (warp % 4), g, t);
    // The first MMA_STAGES - 1 slices in flight, a group each (empty past k_end, so that
    // every thread always has the same number of groups behind the one it waits for).
#pragma unroll
    for (int s = 0; s < MMA_STAGES - 1; ++s) {
        const long long k0 = k_begin + s * MMA_BK;
        if (k0 < k_end) {
            fetch_a(a_slices + s * MMA_SLICE, k0);
            fetch_b(b_slices + s * MMA_SLICE, k0);
        }
        cp_async_commit();
    }
    int stage = 0;
    for (long long k0 = k_begin; k0 < k_end; k0 += MMA_BK) {
        cp_async_wait<MMA_STAGES - 2>();   // this thread's copies of slice k0 have landed
        // Everybody's copies of slice k0 are visible, and everybody is done with the
        // buffer of the slice before it, which the copies below refill.
        __syncthreads();
        const long long k_next = k0 + (MMA_STAGES - 1) * MMA_BK;
        const int next = stage == 0 ? MMA_STAGES - 1 : stage - 1;
        if (k_next < k_end) {
            fetch_a(a_slices + next * MMA_SLICE, k_next);
            fetch_b(b_slices + next * MMA_SLICE, k_next);
        }
        cp_async_commit();
        const float* a = a_slices + stage * MMA_SLICE;
        const float* b = b_slices + stage * MMA_SLICE;
#pragma unroll
        for (int k8 = 0; k8 < MMA_BK; k8 += 8)
            multiply_k_step<PASSES>(a, b, k8, a_lanes, b_lanes, acc);
        stage = stage == MMA_STAGES - 1 ? 0 : stage + 1;
    }
    cp_async_wait<0>();   // only empty groups are left; nothing lands after the loop
}

// The 64 results of one thread of a 128 x 128 tile at (m0, n0): stored through the
// epilogue into C (M x N, row-major), or raw into partial when the product is split.
// Epilogue is tiles.cuh's.
template <typename Epi>
__device__ __forceinline__ void store_mma_results(float* C, long long M, long long N,
                                                  long long m0, long long n0, MmaThread at,
                                                  const float (*acc)[4][4], const Epi& epi,
                                                  bool raw) {
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const long long m = m0 + at.row0 + 16 * mt + 8 * (r / 2);
            if (m >= M) continue;
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) {
                const long long n = n0 + at.col0 + 8 * nt + r % 2;
                if (n >= N) continue;
                float* c = C + m * N + n;
                *c = raw ? acc[mt][nt][r] : epi.apply(acc[mt][nt][r], c, m, n);
            }
        }
}

#endif  // TINYVGG_KERNELS_MMA_CUH
