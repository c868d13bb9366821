// sgd: one in-place step of stochastic gradient descent with momentum, in
// PyTorch's form (see tinyvgg/ops/sgd.py):
//   d = grad + weight_decay * param
//   v = momentum * v + (1 - dampening) * d      (v = d on the first step)
//   d = d + momentum * v  (nesterov)  or  d = v
//   param -= lr * d
//
// One thread per element: thread i (global index blockIdx.x * blockDim.x +
// threadIdx.x, grid-stride) reads element i of param, grad and velocity and
// writes param[i] and velocity[i]; no thread touches another's element. Every
// product and sum is rounded on its own (no fused multiply-add), in the order
// NumPy evaluates the CPU step, so both devices give the same bits.

__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }

// use_momentum, first_step and nesterov are 0 or 1; one_minus_dampening is
// 1 - dampening, rounded to T on the host as NumPy rounds it.
template <typename T>
__global__ void sgd_step(T* param, const T* grad, T* velocity, T lr, T momentum,
                         T weight_decay, T one_minus_dampening, long long use_weight_decay,
                         long long use_momentum, long long first_step, long long nesterov,
                         long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const T p = param[i];
        T d = grad[i];
        if (use_weight_decay)
            d = add_rn(d, mul_rn(weight_decay, p));
        if (use_momentum) {
            T v;
            if (first_step)
                v = d;
            else
                v = add_rn(mul_rn(velocity[i], momentum), mul_rn(one_minus_dampening, d));
            velocity[i] = v;
            d = nesterov ? add_rn(d, mul_rn(momentum, v)) : v;
        }
        param[i] = sub_rn(p, mul_rn(lr, d));
    }
}
