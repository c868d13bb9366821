// pool: 2x2 max pooling (stride 2) and adaptive average pooling, forward and backward.
//
// Arrays are C-contiguous NCHW. A "plane" is one (n, c) image: plane p of an
// H x W array starts at p * H * W. Every kernel gives one thread to one
// element of the array it writes: thread t (global index blockIdx.x *
// blockDim.x + threadIdx.x, in a grid-stride loop) writes element t and
// recovers its (plane, row, column) from t by division.
//
// maxpool2x2_forward: thread t owns output y[p, i, j] (Ho = H / 2, Wo = W / 2:
//   an odd last row or column is dropped). It scans the window x[p, 2i + u,
//   2j + v] in row-major order k = 2u + v, writes the max to y and k of the
//   winner to argmax: the first maximum wins a tie, and a NaN beats every
//   number (the first NaN wins), as on the CPU.
// maxpool2x2_backward: thread t owns input dx[p, h, w]: the windows do not
//   overlap, so it reads the one output (h / 2, w / 2) its element fed and
//   takes g there when its own k is that window's argmax, 0 otherwise (and 0
//   in a dropped row or column). No atomics: the result is deterministic.
// adaptive_avg_pool2d_forward: thread t owns output y[p, i, j], the average
//   of PyTorch's bin: rows floor(i*H/Ho) <= h < ceil((i+1)*H/Ho) times the
//   columns given likewise by j, W and Wo.
// adaptive_avg_pool2d_backward: thread t owns input dx[p, h, w], the sum of
//   g[p, i, j] / area(i, j) over every bin holding (h, w). Bins overlap when Ho
//   does not divide H; the bins holding row h are exactly
//   floor(h*Ho/H) <= i < ceil((h+1)*Ho/H) (the bin formula with H and Ho
//   swapped), and likewise for columns. Sums run in double for both types.

// First row (or column) of bin i when `in` positions are split into `out` bins.
__device__ __forceinline__ long long bin_start(long long i, long long in, long long out) {
    return i * in / out;
}

// One past the last row (or column) of bin i: ceil((i + 1) * in / out).
__device__ __forceinline__ long long bin_end(long long i, long long in, long long out) {
    return ((i + 1) * in + out - 1) / out;
}

template <typename T>
__global__ void maxpool2x2_forward(const T* x, T* y, unsigned char* argmax, long long H,
                                   long long W, long long n) {
    const long long Ho = H / 2, Wo = W / 2;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        const long long j = t % Wo, i = (t / Wo) % Ho, plane = t / (Wo * Ho);
        const T* top = x + (plane * H + 2 * i) * W + 2 * j;
        const T window[4] = {top[0], top[1], top[W], top[W + 1]};
        T best = window[0];
        unsigned char best_k = 0;
        for (int k = 1; k < 4; ++k) {
            const T v = window[k];
            // v != v holds only for NaN: a NaN replaces a number, never an earlier NaN.
            if (v > best || (v != v && best == best)) {
                best = v;
                best_k = (unsigned char)k;
            }
        }
        y[t] = best;
        argmax[t] = best_k;
    }
}

template <typename T>
__global__ void maxpool2x2_backward(const T* g, const unsigned char* argmax, T* dx, long long H,
                                    long long W, long long n) {
    const long long Ho = H / 2, Wo = W / 2;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        const long long w = t % W, h = (t / W) % H, plane = t / (W * H);
        const long long i = h / 2, j = w / 2;
        if (i < Ho && j < Wo) {
            const long long out = (plane * Ho + i) * Wo + j;
            const bool wins = argmax[out] == (h % 2) * 2 + (w % 2);
            // g times 0 rather than a plain 0: an infinite or NaN g spreads over its
            // window exactly as the CPU path's g * (argmax == k) does.
            dx[t] = g[out] * (wins ? T(1) : T(0));
        } else {
            dx[t] = T(0);
        }
    }
}

template <typename T>
__global__ void adaptive_avg_pool2d_forward(const T* x, T* y, long long H, long long W,
                                            long long Ho, long long Wo, long long n) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        const long long j = t % Wo, i = (t / Wo) % Ho, plane = t / (Wo * Ho);
        const long long h0 = bin_start(i, H, Ho), h1 = bin_end(i, H, Ho);
        const long long w0 = bin_start(j, W, Wo), w1 = bin_end(j, W, Wo);
        const T* image = x + plane * H * W;
        double total = 0.0;
        for (long long h = h0; h < h1; ++h) {
            for (long long w = w0; w < w1; ++w) {
                total += (double)image[h * W + w];
            }
        }
        y[t] = (T)(total / (double)((h1 - h0) * (w1 - w0)));
    }
}

template <typename T>
__global__ void adaptive_avg_pool2d_backward(const T* g, T* dx, long long H, long long W,
                                             long long Ho, long long Wo, long long n) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        const long long w = t % W, h = (t / W) % H, plane = t / (W * H);
        const long long i0 = bin_start(h, Ho, H), i1 = bin_end(h, Ho, H);
        const long long j0 = bin_start(w, Wo, W), j1 = bin_end(w, Wo, W);
        const T* grad = g + plane * Ho * Wo;
        double total = 0.0;
        for (long long i = i0; i < i1; ++i) {
            const long long rows = bin_end(i, H, Ho) - bin_start(i, H, Ho);
            for (long long j = j0; j < j1; ++j) {
                const long long cols = bin_end(j, W, Wo) - bin_start(j, W, Wo);
                total += (double)grad[i * Wo + j] / (double)(rows * cols);
            }
        }
        dx[t] = (T)total;
    }
}
