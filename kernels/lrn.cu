// lrn: local response normalisation across channels of (N, C, H, W) C-contiguous input.
//
// One thread per element: thread i (grid-stride loop over the flat index)
// handles element (n, c, p) with p = i % HW (HW = H*W) and c = (i / HW) % C.
// Its neighbours along the channel axis at the same (n, p) lie HW apart:
// channel c' is element i + (c' - c) * HW. Each thread reads its window of
// channels itself (windows are a few channels long), so no thread waits on another.
//
// Forward window of c: c - size/2 .. c + (size-1)/2, clipped to [0, C).
// Backward sums over the channels whose window holds j: j - (size-1)/2 .. j + size/2.
// Sums start at the centre channel, then add the channels before it nearest
// first, then those after it, the order the CPU path adds them in.

__device__ inline float power(float base, float exponent) { return powf(base, exponent); }
__device__ inline double power(double base, double exponent) { return pow(base, exponent); }

// d = k + alpha/size * (sum of x^2 over the window), y = x * d^(-beta);
// d is written when d_saved is not null (backward needs it).
template <typename T>
__global__ void lrn_forward(const T* x, T* y, T* d_saved, long long size, T alpha_over_size,
                            T beta, T k, long long C, long long HW, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long c = (i / HW) % C;
        const T centre = x[i];
        T energy = centre * centre;
        for (long long offset = 1; offset <= size / 2 && offset <= c; ++offset) {
            const T v = x[i - offset * HW];
            energy += v * v;
        }
        for (long long offset = 1; offset <= (size - 1) / 2 && c + offset < C; ++offset) {
            const T v = x[i + offset * HW];
            energy += v * v;
        }
        T d = energy * alpha_over_size;
        d += k;
        if (d_saved != nullptr) {
            d_saved[i] = d;
        }
        y[i] = centre * power(d, -beta);
    }
}

// g_c d_c^(-beta) x_c / d_c = g_c x_c d_c^(-beta-1), element at's share of the cross term.
template <typename T>
__device__ inline T through_divisor(const T* g, const T* x, const T* d, long long at, T beta) {
    return power(d[at], -beta) * g[at] * x[at] / d[at];
}

// dx_j = g_j d_j^(-beta) - cross_scale * x_j * (sum of g_c x_c d_c^(-beta-1) over c
// in j - (size-1)/2 .. j + size/2 within [0, C)), cross_scale = 2 alpha beta / size.
template <typename T>
__global__ void lrn_backward(const T* g, const T* x, const T* d, T* dx, long long size, T beta,
                             T cross_scale, long long C, long long HW, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long j = (i / HW) % C;
        const T direct = power(d[i], -beta) * g[i];
        T cross = direct * x[i] / d[i];
        for (long long offset = 1; offset <= (size - 1) / 2 && offset <= j; ++offset) {
            cross += through_divisor(g, x, d, i - offset * HW, beta);
        }
        for (long long offset = 1; offset <= size / 2 && j + offset < C; ++offset) {
            cross += through_divisor(g, x, d, i + offset * HW, beta);
        }
        dx[i] = direct - cross * x[i] * cross_scale;
    }
}
