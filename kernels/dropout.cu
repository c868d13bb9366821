// dropout: inverted dropout whose keep-mask is Philox-4x32-10 of (seed, element index),
// bit for bit the CPU path's tinyvgg.random.element_bits, so one seed gives one mask on
// every device.
//
// Element i is its flat index in C order of the logical NCHW shape (arrays here are
// C-contiguous, so it is also the element's offset). Its 32 random bits are word i % 4 of
//   philox4x32_10(counter = (low 32 bits of i / 4, high 32 bits of i / 4, 0, 0),
//                 key     = (low 32 bits of seed, high 32 bits of seed)),
// and it is kept when those bits >= threshold = floor(p * 2**32). The threshold is 64-bit
// because p = 1 gives 2**32, which no 32-bit word reaches: nothing is kept.
//
// One thread per element: thread t (global index blockIdx.x * blockDim.x + threadIdx.x,
// in a grid-stride loop) computes the Philox block of element first + t on its own and
// keeps the word of its element; the four threads of a block recompute the same 10
// rounds, which costs less than sharing them and keeps every thread independent.
//   dropout_bits:     bits[t] = the 32 bits of element first + t (for tests and study).
//   dropout_mask:     mask[t] = bits of element first + t >= threshold.
//   dropout_forward:  mask[t] as above, y[t] = x[t] * mask[t] * scale.
// first is 0 for a batch run whole, and the index of the part's first element in the
// whole batch for a part of a batch split over processes (tinyvgg.random.set_first_sample).
//   dropout_backward: dx[t] = g[t] * mask[t] * scale.
// The products keep the CPU path's order, (x * m) * scale with m = 1 or 0, so results
// match it exactly, an infinite or NaN input dropped to NaN included.

constexpr unsigned int PHILOX_M0 = 0xD2511F53u;
constexpr unsigned int PHILOX_M1 = 0xCD9E8D57u;
constexpr unsigned int PHILOX_W0 = 0x9E3779B9u;  // Weyl constants that bump the key each round
constexpr unsigned int PHILOX_W1 = 0xBB67AE85u;

// Word i % 4 of Philox-4x32-10 at counter block i / 4, as tinyvgg.random.element_bits.
__device__ __forceinline__ unsigned int philox_element_bits(unsigned long long seed,
                                                            unsigned long long i) {
    const unsigned long long block = i >> 2;
    unsigned int c0 = (unsigned int)block, c1 = (unsigned int)(block >> 32), c2 = 0u, c3 = 0u;
    unsigned int k0 = (unsigned int)seed, k1 = (unsigned int)(seed >> 32);
#pragma unroll
    for (int round_index = 0; round_index < 10; ++round_index) {
        if (round_index > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        const unsigned int hi0 = __umulhi(PHILOX_M0, c0), lo0 = PHILOX_M0 * c0;
        const unsigned int hi1 = __umulhi(PHILOX_M1, c2), lo1 = PHILOX_M1 * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    const unsigned int word = (unsigned int)(i & 3u);
    return word == 0u ? c0 : word == 1u ? c1 : word == 2u ? c2 : c3;
}

extern "C" __global__ void dropout_bits(unsigned long long seed, unsigned long long first,
                                        unsigned int* bits, long long n) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        bits[t] = philox_element_bits(seed, first + (unsigned long long)t);
    }
}

extern "C" __global__ void dropout_mask(unsigned long long seed, unsigned long long first,
                                        unsigned long long threshold, bool* mask, long long n) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        mask[t] = philox_element_bits(seed, first + (unsigned long long)t) >= threshold;
    }
}

template <typename T>
__global__ void dropout_forward(const T* x, T* y, bool* mask, unsigned long long seed,
                                unsigned long long first, unsigned long long threshold,
                                T scale, long long n) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        const bool keep = philox_element_bits(seed, first + (unsigned long long)t) >= threshold;
        mask[t] = keep;
        y[t] = (x[t] * (keep ? T(1) : T(0))) * scale;
    }
}

template <typename T>
__global__ void dropout_backward(const T* g, const bool* mask, T scale, T* dx, long long n) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        dx[t] = (g[t] * (mask[t] ? T(1) : T(0))) * scale;
    }
}
