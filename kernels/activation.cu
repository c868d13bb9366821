// The elementwise nonlinearities and their backwards:
//   relu: y = max(x, 0),  dL/dx = g * [y > 0];
//   tanh: y = tanh(x),    dL/dx = g * (1 - y^2).
// Both backwards read the saved output y, not the input x.
//
// One thread per element: thread i (global index blockIdx.x * blockDim.x +
// threadIdx.x) reads element i of the flat, C-contiguous array(s) and writes
// element i of the result. A grid-stride loop lets any grid cover any n.

template <typename T>
__global__ void relu_forward(const T* x, T* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        T v = x[i];
        y[i] = v > T(0) ? v : T(0);
    }
}

template <typename T>
__global__ void relu_backward(const T* g, const T* y, T* dx, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        dx[i] = y[i] > T(0) ? g[i] : T(0);
    }
}

__device__ inline float hyperbolic_tangent(float v) { return tanhf(v); }
__device__ inline double hyperbolic_tangent(double v) { return tanh(v); }

template <typename T>
__global__ void tanh_forward(const T* x, T* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        y[i] = hyperbolic_tangent(x[i]);
    }
}

template <typename T>
__global__ void tanh_backward(const T* g, const T* y, T* dx, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const T out = y[i];
        dx[i] = g[i] * (T(1) - out * out);
    }
}
