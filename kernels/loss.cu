// softmax_xent: softmax cross-entropy of (rows x cols) logits z with integer
// labels t and label smoothing e, as in ops/loss.py: the target of row r is
// q[c] = (1 - e) [c == t[r]] + e / cols.
//
// forward: one block of XENT_THREADS threads per row (a grid-stride loop over
// rows lets any grid cover any batch). Thread tid visits the columns tid,
// tid + blockDim.x, ... of its row three times: for the row maximum m, for
// the sum s of exp(z - m), and to write the softmax probabilities
// p[c] = exp((z[c] - m) - log s); with smoothing, a fourth time for the sum
// of z - m. Each reduction goes through shared memory as a tree in a fixed
// order, so the result is the same on every run. Thread 0 writes the row's
// loss, log s - (1 - e)(z[t] - m) - (e / cols) sum_c (z[c] - m), into a
// per-row vector; the host takes its mean. The probabilities are what
// backward needs.
//
// backward: one thread per element (r, c) of the rows x cols gradient, flat
// index i = r * cols + c: dz[i] = (p[i] - q[c]) * (g / rows), with the
// scalar upstream gradient g read from device memory.

#define XENT_THREADS 256

__device__ __forceinline__ float exp_of(float x) { return expf(x); }
__device__ __forceinline__ double exp_of(double x) { return exp(x); }
__device__ __forceinline__ float log_of(float x) { return logf(x); }
__device__ __forceinline__ double log_of(double x) { return log(x); }

// The sum of every thread's value, added as a tree in a fixed order (the same bits on
// every run), returned to all threads of the block. Every thread must call it;
// scratch is free again when it returns.
template <typename T>
__device__ T block_sum(T* scratch, T value) {
    const int tid = threadIdx.x;
    scratch[tid] = value;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (tid < half)
            scratch[tid] += scratch[tid + half];
        __syncthreads();
    }
    const T total = scratch[0];
    __syncthreads();  // everyone has read scratch[0] before it is reused
    return total;
}

// Launch with blockDim.x == XENT_THREADS (a power of two, for the tree reductions).
template <typename T>
__global__ void softmax_xent_forward(const T* z, const long long* labels, T* probs, T* losses,
                                     long long rows, long long cols, T smoothing) {
    __shared__ T scratch[XENT_THREADS];
    const int tid = threadIdx.x;

    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* zr = z + r * cols;
        T* pr = probs + r * cols;

        T m = zr[0];
        for (long long c = tid; c < cols; c += blockDim.x)
            m = zr[c] > m ? zr[c] : m;
        scratch[tid] = m;
        __syncthreads();
        for (int half = blockDim.x / 2; half > 0; half /= 2) {
            if (tid < half && scratch[tid + half] > scratch[tid])
                scratch[tid] = scratch[tid + half];
            __syncthreads();
        }
        m = scratch[0];
        __syncthreads();  // everyone has m before scratch is reused

        T s = T(0);
        for (long long c = tid; c < cols; c += blockDim.x)
            s += exp_of(zr[c] - m);
        const T log_s = log_of(block_sum(scratch, s));

        T uniform_part = T(0);  // (e / cols) sum_c (z[c] - m)
        if (smoothing != T(0)) {  // the same branch for the whole block: barriers are safe
            T sum = T(0);
            for (long long c = tid; c < cols; c += blockDim.x)
                sum += zr[c] - m;
            uniform_part = smoothing / T(cols) * block_sum(scratch, sum);
        }
        if (tid == 0)
            losses[r] = log_s - (T(1) - smoothing) * (zr[labels[r]] - m) - uniform_part;
        for (long long c = tid; c < cols; c += blockDim.x)
            pr[c] = exp_of((zr[c] - m) - log_s);
    }
}

template <typename T>
__global__ void softmax_xent_backward(const T* probs, const long long* labels, const T* g, T* dz,
                                      long long rows, long long cols, T smoothing, long long n) {
    const T scale = g[0] / T(rows);
    const T uniform = smoothing / T(cols);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        T d = probs[i] - uniform;
        if (i % cols == labels[i / cols])
            d -= T(1) - smoothing;
        dz[i] = d * scale;
    }
}
