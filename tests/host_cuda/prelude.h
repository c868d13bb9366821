// CUDA C++ on the host, for tests on machines without a GPU: this header is put in
// front of a kernels/*.cu source, which g++ then compiles unchanged.
//
// Execution model. A launch runs its blocks one after another. Inside a block every
// CUDA thread is a fiber with its own stack, all on the calling OS thread:
// the scheduler runs each fiber until it reaches __syncthreads() or returns, and a
// barrier opens once every fiber of the block has reached it. So:
//   * __shared__ is `static`: one array per kernel instantiation, shared by the
//     block's fibers, and reused by the next block as on a GPU (no initialisation);
//   * a barrier that some threads of a block skip (a __syncthreads() after an early
//     return of part of the block, or in divergent code) is reported as an error,
//     where a GPU would be undefined;
//   * with reversed_order, blocks run last first and each phase resumes its fibers
//     last first: a result that changes then depends on the order threads run in,
//     which is a race (a missing __syncthreads(), or blocks writing one place);
//   * inline PTX cannot run here; the kernels' PTX helpers take their
//     TINYVGG_HOST_EMULATION branches: host_tf32_bits rounds as cvt.rna.tf32.f32
//     does, and host_mma_tf32 does mma.sync.m16n8k8's warp-wide product, its lanes
//     meeting at two block-wide barriers (so every thread of the block must call it
//     the same number of times, which the kernel does);
//   * cp.async's helpers call host_cp_async, which checks the copy's size and
//     alignment (a trap if wrong) and queues it, host_cp_async_commit, which closes
//     the thread's group, and host_cp_async_wait(n), which performs the thread's
//     committed groups but the newest n. A copy lands only at a wait: shared memory
//     read before it, or before the __syncthreads() that must follow every thread's
//     wait, is stale. A block's queues end with it, waited for or not.
// Arithmetic is the host's: no fused multiply-adds (-ffp-contract=off), so results
// can differ from a GPU's in the last bits, never in the indexing they test.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <math.h>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <ucontext.h>
#include <vector>

#define TINYVGG_HOST_EMULATION 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct uint3 { unsigned x = 0, y = 0, z = 0; };
struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

template <typename A, typename B>
inline std::common_type_t<A, B> min(A a, B b) { return b < a ? b : a; }
template <typename A, typename B>
inline std::common_type_t<A, B> max(A a, B b) { return a < b ? b : a; }
using std::exp;
using std::log;
using std::pow;
using std::sqrt;
using std::tanh;

inline unsigned __umulhi(unsigned a, unsigned b) {
    return unsigned((unsigned long long)a * b >> 32);
}
inline unsigned __float_as_uint(float v) {
    unsigned bits;
    std::memcpy(&bits, &v, sizeof bits);
    return bits;
}
inline float __uint_as_float(unsigned bits) {
    float v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
}
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }

namespace host_cuda {

struct KernelTrap : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Fiber {
    void* sp = nullptr;      // its saved stack pointer, while it is not running (x86-64)
    ucontext_t context;      // elsewhere
    char* stack = nullptr;
    uint3 index;
    bool finished = false;
};

constexpr size_t STACK_BYTES = 64 << 10;

inline void* scheduler_sp = nullptr;
inline ucontext_t scheduler;
inline bool reversed_order = false;  // blocks, and fibers within each phase, last first
inline Fiber* running = nullptr;
inline const std::function<void()>* kernel_body = nullptr;
inline std::string trap_message;

inline void fiber_main() {
    try {
        (*kernel_body)();
    } catch (const KernelTrap& trap) {
        trap_message = trap.what();
    }
    running->finished = true;
}

// Switching between the scheduler and a fiber. On x86-64: save the callee-saved
// registers on the current stack, store its pointer, load the other one and restore
// its registers (what a function call leaves to be saved, nothing more). Elsewhere
// (or with HOST_CUDA_UCONTEXT defined) ucontext, whose swapcontext also saves the signal
// mask: a system call per switch, which made it most of the emulated GPU tests' time.
#if defined(__x86_64__) && !defined(HOST_CUDA_UCONTEXT)
extern "C" void host_cuda_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl host_cuda_switch
    .hidden host_cuda_switch
    .type host_cuda_switch, @function
host_cuda_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size host_cuda_switch, .-host_cuda_switch
)");

[[noreturn]] inline void fiber_start() {
    fiber_main();
    host_cuda_switch(&running->sp, scheduler_sp);  // finished: never resumed
    __builtin_unreachable();
}

inline void prepare(Fiber& f) {  // the first switch to f "returns" into fiber_start
    void** sp = reinterpret_cast<void**>(
        reinterpret_cast<uintptr_t>(f.stack + STACK_BYTES) & ~uintptr_t(15));
    *--sp = nullptr;                                   // fiber_start's own return address
    *--sp = reinterpret_cast<void*>(&fiber_start);
    for (int r = 0; r < 6; ++r) *--sp = nullptr;       // rbp, rbx, r12-r15
    f.sp = sp;
}
inline void resume(Fiber& f) { host_cuda_switch(&scheduler_sp, f.sp); }
inline void yield() { host_cuda_switch(&running->sp, scheduler_sp); }
#else
inline void prepare(Fiber& f) {
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack;
    f.context.uc_stack.ss_size = STACK_BYTES;
    f.context.uc_link = &scheduler;  // fiber_main's return resumes the scheduler
    makecontext(&f.context, fiber_main, 0);
}
inline void resume(Fiber& f) { swapcontext(&scheduler, &f.context); }
inline void yield() { swapcontext(&running->context, &scheduler); }
#endif

// cp.async's queues (host_cp_async below), one per thread of the block: the copies
// issued since its last commit, and its committed groups, oldest first.
struct AsyncCopy {
    unsigned char* dst;
    const unsigned char* src;
    int bytes, src_bytes;
};
struct AsyncCopies {
    std::vector<AsyncCopy> uncommitted;
    std::deque<std::vector<AsyncCopy>> groups;
};
inline std::vector<AsyncCopies> async_copies;
inline bool async_copies_queued = false;

inline void drop_async_copies() {  // never performed: the block that issued them is over
    if (!async_copies_queued) return;
    for (AsyncCopies& thread : async_copies) {
        thread.uncommitted.clear();
        thread.groups.clear();
    }
    async_copies_queued = false;
}

inline AsyncCopies& async_copies_of_this_thread() {
    const size_t thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    if (async_copies.size() <= thread)
        async_copies.resize(size_t(blockDim.x) * blockDim.y * blockDim.z);
    return async_copies[thread];
}

// Runs every block of the grid, each block's threads as fibers; returns an error
// message, or an empty string when the launch completed.
inline std::string launch(dim3 grid, dim3 block, const std::function<void()>& body) {
    const size_t threads = size_t(block.x) * block.y * block.z;
    static std::vector<std::unique_ptr<char[]>> stacks;  // kept: launches are many and small
    while (stacks.size() < threads) stacks.emplace_back(new char[STACK_BYTES]);
    std::vector<Fiber> fibers(threads);
    for (size_t i = 0; i < threads; ++i) fibers[i].stack = stacks[i].get();
    gridDim = grid;
    blockDim = block;
    kernel_body = &body;
    trap_message.clear();
    const size_t blocks = size_t(grid.x) * grid.y * grid.z;
    for (size_t b = 0; b < blocks; ++b) {
        const size_t linear = reversed_order ? blocks - 1 - b : b;
        const unsigned bx = unsigned(linear % grid.x);
        const unsigned by = unsigned(linear / grid.x % grid.y);
        const unsigned bz = unsigned(linear / grid.x / grid.y);
        blockIdx = {bx, by, bz};
        drop_async_copies();
        size_t i = 0;
        for (unsigned tz = 0; tz < block.z; ++tz)
            for (unsigned ty = 0; ty < block.y; ++ty)
                for (unsigned tx = 0; tx < block.x; ++tx, ++i) {
                    Fiber& f = fibers[i];
                    f.index = {tx, ty, tz};
                    f.finished = false;
                    prepare(f);
                }
        for (int phase = 0;; ++phase) {  // one phase per barrier
            size_t waiting = 0, finished = 0;
            for (size_t k = 0; k < threads; ++k) {
                Fiber& f = fibers[reversed_order ? threads - 1 - k : k];
                if (f.finished) continue;
                running = &f;
                threadIdx = f.index;
                resume(f);
                if (!trap_message.empty()) return "trap: " + trap_message;
                if (f.finished) ++finished; else ++waiting;
            }
            if (waiting == 0) break;
            if (finished) {
                return "block (" + std::to_string(bx) + ", " + std::to_string(by) +
                       ", " + std::to_string(bz) + "): " + std::to_string(finished) +
                       " threads returned while " + std::to_string(waiting) +
                       " wait at __syncthreads() number " + std::to_string(phase + 1);
            }
        }
    }
    return "";
}

}  // namespace host_cuda

inline void __syncthreads() { host_cuda::yield(); }

[[noreturn]] inline void __trap() { throw host_cuda::KernelTrap("__trap() called"); }

// cvt.rna.tf32.f32: the float rounded to 10 mantissa bits, to nearest, ties away from
// zero (adding half of the dropped part's range to the magnitude, then truncating).
inline unsigned host_tf32_bits(float v) {
    unsigned bits = __float_as_uint(v);
    if ((bits & 0x7f800000u) != 0x7f800000u) bits += 0x1000u;  // Inf and NaN stay
    return bits & 0xffffe000u;
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, d += A B for the warp's 16 x 8 x 8
// tile. PTX's fragment layout, for lane l, group g = l / 4 and t = l % 4: a[r] holds
// A(g + 8 (r % 2), t + 4 (r / 2)), b[r] holds B(t + 4 r, g), d[r] holds
// D(g + 8 (r / 2), 2 t + r % 2). Each lane leaves its fragments in the block's slots,
// all meet, each computes its own 4 results from its warp's slots, all meet again.
// Rounding: the 8 products of TF32 values are exact in double, and their sum with d is
// rounded into d once per instruction, as the tensor cores round once per instruction
// (not once per product, as a loop of float multiply-adds would); the hardware's
// rounding direction (toward zero on the GPUs measured in the literature) is not modelled.
inline void host_mma_tf32(float* d, const unsigned* a, const unsigned* b) {
    static unsigned a_slots[1024][4], b_slots[1024][2];
    const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned warp0 = thread / 32 * 32, lane = thread % 32, g = lane / 4, t = lane % 4;
    for (int r = 0; r < 4; ++r) a_slots[thread][r] = a[r];
    for (int r = 0; r < 2; ++r) b_slots[thread][r] = b[r];
    __syncthreads();
    for (int r = 0; r < 4; ++r) {
        const unsigned row = g + 8 * (r / 2), col = 2 * t + r % 2;
        double sum = d[r];
        for (unsigned k = 0; k < 8; ++k) {
            const unsigned a_lane = warp0 + (row % 8) * 4 + k % 4;
            const unsigned a_reg = row / 8 + 2 * (k / 4);
            const unsigned b_lane = warp0 + col * 4 + k % 4;
            sum += double(__uint_as_float(a_slots[a_lane][a_reg])) *
                   __uint_as_float(b_slots[b_lane][k / 4]);
        }
        d[r] = float(sum);
    }
    __syncthreads();
}

// cp.async.{ca,cg}.shared.global [dst], [src], bytes, src_bytes: queued, and performed
// by the wait that completes its group (the first src_bytes read from src then, the rest
// of the bytes zeros). Sizes and alignments a GPU would fault on or misread are traps.
inline void host_cp_async(void* dst, const void* src, int bytes, int src_bytes) {
    auto trap = [&](const std::string& what) {
        throw host_cuda::KernelTrap("cp.async of " + std::to_string(bytes) + " bytes (" +
                                    std::to_string(src_bytes) + " from src): " + what);
    };
    if (bytes != 4 && bytes != 8 && bytes != 16) trap("the size must be 4, 8 or 16 bytes");
    if (src_bytes < 0 || src_bytes > bytes) trap("src_bytes must be 0 to the size");
    if (dst == nullptr) trap("dst is null");
    if (reinterpret_cast<uintptr_t>(dst) % bytes) trap("dst is not aligned to the size");
    if (src_bytes > 0 && src == nullptr) trap("src is null");
    if (src_bytes > 0 && reinterpret_cast<uintptr_t>(src) % bytes)
        trap("src is not aligned to the size");
    host_cuda::async_copies_of_this_thread().uncommitted.push_back(
        {static_cast<unsigned char*>(dst), static_cast<const unsigned char*>(src), bytes,
         src_bytes});
    host_cuda::async_copies_queued = true;
}

// cp.async.commit_group: the thread's copies since its last commit become a group (an
// empty one if there were none, as on a GPU).
inline void host_cp_async_commit() {
    host_cuda::AsyncCopies& queues = host_cuda::async_copies_of_this_thread();
    queues.groups.push_back(std::move(queues.uncommitted));
    queues.uncommitted.clear();
    host_cuda::async_copies_queued = true;
}

// cp.async.wait_group n: the thread's committed groups but the newest n are performed,
// oldest first; its uncommitted copies stay queued. Other threads' copies are theirs.
inline void host_cp_async_wait(int n) {
    if (n < 0)
        throw host_cuda::KernelTrap("cp.async.wait_group " + std::to_string(n) +
                                    ": the number of groups left pending must be >= 0");
    std::deque<std::vector<host_cuda::AsyncCopy>>& groups =
        host_cuda::async_copies_of_this_thread().groups;
    while (groups.size() > size_t(n)) {
        for (const host_cuda::AsyncCopy& copy : groups.front()) {
            if (copy.src_bytes) std::memcpy(copy.dst, copy.src, size_t(copy.src_bytes));
            std::memset(copy.dst + copy.src_bytes, 0, size_t(copy.bytes - copy.src_bytes));
        }
        groups.pop_front();
    }
}
