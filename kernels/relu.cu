// relu: y = max(x, 0) and its backward, dL/dx = g * [y > 0].
//
// One thread per element: thread i (global index blockIdx.x * blockDim.x +
// threadIdx.x) reads element i of the flat, C-contiguous array and writes
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
