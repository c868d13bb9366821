// batch_norm: per-channel normalisation of (N, C, H, W) C-contiguous input.
//
// Channel c's m = N*H*W values sit at (n*C + c)*HW + p for n < N and p < HW
// (HW = H*W). Two kinds of kernel:
// - reductions (batch_norm_statistics, batch_norm_backward_sums): one block of
//   REDUCE_THREADS threads per channel (blockIdx.x = c); thread t accumulates, in
//   double, the channel's values t, t + REDUCE_THREADS, ... (consecutive threads
//   read consecutive pixels), then a shared-memory tree adds the partial sums in
//   a fixed order, so the result does not change from run to run;
// - elementwise (batch_norm_forward, batch_norm_backward_input[_eval]): thread
//   i handles flat element i, whose channel is (i / HW) % C, in a grid-stride
//   loop; batch_norm_inverse_std likewise has thread c handle channel c.

constexpr int REDUCE_THREADS = 256;  // the block size the Python side launches reductions with

// Sum of one value per thread of the block; every thread gets the total.
__device__ double block_sum(double value, double* partial) {
    partial[threadIdx.x] = value;
    __syncthreads();
    for (int stride = REDUCE_THREADS / 2; stride > 0; stride >>= 1) {
        if ((int)threadIdx.x < stride) {
            partial[threadIdx.x] += partial[threadIdx.x + stride];
        }
        __syncthreads();
    }
    double total = partial[0];
    __syncthreads();  // everyone has read partial[0] before the buffer is reused
    return total;
}

__device__ inline long long channel_offset(long long i, long long c, long long C, long long HW) {
    long long n = i / HW;
    return (n * C + c) * HW + (i - n * HW);
}

__device__ inline float square_root(float v) { return sqrtf(v); }
__device__ inline double square_root(double v) { return sqrt(v); }

// Two passes for accuracy: the mean first, then the mean of squared deviations
// from it (the biased variance). The deviations are taken in T from the mean
// rounded to T, the same values the forward pass normalises.
template <typename T>
__global__ void batch_norm_statistics(const T* x, T* mean, T* var, T* inv_std, T eps,
                                      long long N, long long C, long long HW) {
    __shared__ double partial[REDUCE_THREADS];
    const long long c = blockIdx.x;
    const long long m = N * HW;

    double sum = 0.0;
    for (long long i = threadIdx.x; i < m; i += REDUCE_THREADS) {
        sum += (double)x[channel_offset(i, c, C, HW)];
    }
    const T mu = (T)(block_sum(sum, partial) / (double)m);

    double squares = 0.0;
    for (long long i = threadIdx.x; i < m; i += REDUCE_THREADS) {
        const double deviation = (double)(x[channel_offset(i, c, C, HW)] - mu);
        squares += deviation * deviation;
    }
    const T variance = (T)(block_sum(squares, partial) / (double)m);

    if (threadIdx.x == 0) {
        mean[c] = mu;
        var[c] = variance;
        inv_std[c] = T(1) / square_root(variance + eps);
    }
}

// inv_std[c] = 1 / sqrt(var[c] + eps): evaluation mode's scale from the running variance.
template <typename T>
__global__ void batch_norm_inverse_std(const T* var, T* inv_std, T eps, long long n) {
    for (long long c = blockIdx.x * (long long)blockDim.x + threadIdx.x; c < n;
         c += (long long)gridDim.x * blockDim.x) {
        inv_std[c] = T(1) / square_root(var[c] + eps);
    }
}

// x_hat = (x - mean[c]) * inv_std[c], y = gamma[c] * x_hat + beta[c].
// gamma and beta may each be null (no affine transform); x_hat is written only
// when it is not null (backward needs it).
template <typename T>
__global__ void batch_norm_forward(const T* x, const T* mean, const T* inv_std, const T* gamma,
                                   const T* beta, T* x_hat, T* y, long long C, long long HW,
                                   long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long c = (i / HW) % C;
        const T normalised = (x[i] - mean[c]) * inv_std[c];
        if (x_hat != nullptr) {
            x_hat[i] = normalised;
        }
        T out = gamma != nullptr ? normalised * gamma[c] : normalised;
        if (beta != nullptr) {
            out += beta[c];
        }
        y[i] = out;
    }
}

// sum_g[c] = sum of g, sum_g_x_hat[c] = sum of g * x_hat over channel c
// (dL/dbeta and dL/dgamma).
template <typename T>
__global__ void batch_norm_backward_sums(const T* g, const T* x_hat, T* sum_g, T* sum_g_x_hat,
                                         long long N, long long C, long long HW) {
    __shared__ double partial[REDUCE_THREADS];
    const long long c = blockIdx.x;
    const long long m = N * HW;

    double g_total = 0.0;
    double g_x_hat_total = 0.0;
    for (long long i = threadIdx.x; i < m; i += REDUCE_THREADS) {
        const long long at = channel_offset(i, c, C, HW);
        const double gi = (double)g[at];
        g_total += gi;
        g_x_hat_total += gi * (double)x_hat[at];
    }
    const double total_g = block_sum(g_total, partial);
    const double total_g_x_hat = block_sum(g_x_hat_total, partial);
    if (threadIdx.x == 0) {
        sum_g[c] = (T)total_g;
        sum_g_x_hat[c] = (T)total_g_x_hat;
    }
}

// Training mode, where the batch mean and variance depend on x:
// dx = (g - x_hat * sum_g_x_hat[c] / m - sum_g[c] / m) * gamma[c] * inv_std[c]
// (gamma null: a factor of 1).
template <typename T>
__global__ void batch_norm_backward_input(const T* g, const T* x_hat, const T* inv_std,
                                          const T* gamma, const T* sum_g, const T* sum_g_x_hat,
                                          T* dx, long long m, long long C, long long HW,
                                          long long n) {
    const T count = (T)m;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long c = (i / HW) % C;
        const T scale = gamma != nullptr ? gamma[c] * inv_std[c] : inv_std[c];
        T through = g[i] - x_hat[i] * (sum_g_x_hat[c] / count);
        through -= sum_g[c] / count;
        dx[i] = through * scale;
    }
}

// Evaluation mode, where the statistics are constants: dx = g * gamma[c] * inv_std[c].
template <typename T>
__global__ void batch_norm_backward_input_eval(const T* g, const T* inv_std, const T* gamma,
                                               T* dx, long long C, long long HW, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long c = (i / HW) % C;
        const T scale = gamma != nullptr ? gamma[c] * inv_std[c] : inv_std[c];
        dx[i] = g[i] * scale;
    }
}
