// CUDA, or a small CPU emulation of the part of CUDA that the kernels and the runner use.
//
// Built by nvcc this header includes the CUDA runtime and defines ccgpu::launch (a typed
// cudaLaunchKernel). Built by a plain C++20 compiler on Linux with CC_CUDA_EMULATE defined
// (tests/test_cuda.py does this through csrc/cuda/emulate.cpp), ccgpu::launch runs the kernel on
// the CPU: each CUDA thread of a block is a fiber, the blocks of a grid run one after another,
// __syncthreads() switches between the fibers, __shared__ is a function-static variable (shared
// by the threads of the one block that runs at a time), device memory is host memory. That checks indexing, padding,
// tiling and barriers on machines without a GPU; it says nothing about speed. Kernels must
// therefore keep to: block-uniform early returns, __syncthreads() for all cross-thread
// communication (no warp-synchronous code or shuffles), and the device functions shimmed here.
#pragma once

#include <cstddef>
#include <cstdint>

#ifndef CC_CUDA_EMULATE

#include <cuda_runtime.h>

#include <tuple>
#include <type_traits>
#include <utility>

#define CC_ALIGN16 __align__(16)
#define CC_LAUNCH_BOUNDS(n) __launch_bounds__(n)

namespace ccgpu {  // the real launch, by cudaLaunchKernel (no <<<>>> needed)

template <class K, class Tuple, size_t... I>
cudaError_t launch_tuple(K kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                         Tuple& args, std::index_sequence<I...>) {
    void* ptrs[] = {static_cast<void*>(&std::get<I>(args))...};
    return cudaLaunchKernel(reinterpret_cast<const void*>(kernel), grid, block, ptrs, smem, stream);
}

// Launches kernel(args...) with each argument converted to the kernel's parameter type.
template <class... KArgs, class... Args>
cudaError_t launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, Args&&... args) {
    static_assert(sizeof...(KArgs) == sizeof...(Args), "wrong number of kernel arguments");
    std::tuple<std::decay_t<KArgs>...> held(std::forward<Args>(args)...);
    return launch_tuple(kernel, grid, block, smem, stream, held, std::index_sequence_for<KArgs...>{});
}

}  // namespace ccgpu

#else  // ---------------------------------------------------------------- CPU emulation

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define CC_ALIGN16 __attribute__((aligned(16)))
#define CC_LAUNCH_BOUNDS(n)

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 {
    float x, y, z, w;
};

namespace cc_emu {

// Each CUDA thread of a block is a fiber (ucontext) on the calling thread; __syncthreads()
// switches back to the scheduler, which resumes the block's fibers one after another, round by
// round. A block where some threads have returned while others wait at a barrier (a divergent
// __syncthreads) makes the launch fail.
struct Fiber {
    ucontext_t ctx;
    bool done = false;
};

inline dim3 g_thread, g_block, g_grid, g_block_dim;
inline ucontext_t g_sched;
inline Fiber* g_cur = nullptr;
inline void (*g_body)(void*) = nullptr;
inline void* g_body_arg = nullptr;
inline std::vector<char> g_stacks;
constexpr size_t kStack = 64 * 1024;

inline void trampoline() {
    g_body(g_body_arg);
    g_cur->done = true;  // returns to uc_link, the scheduler
}

inline void sync() { swapcontext(&g_cur->ctx, &g_sched); }

// Runs kernel(args...) over the grid, one block at a time. Returns 0, or 1 for a divergent
// barrier.
template <class... KArgs, class... Args>
int launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t /*smem*/, void* /*stream*/,
           Args... args) {
    static_assert(sizeof...(KArgs) == sizeof...(Args), "wrong number of kernel arguments");
    const int nt = int(block.x * block.y * block.z);
    auto body = [&]() { kernel(args...); };
    g_body = [](void* p) { (*static_cast<decltype(body)*>(p))(); };
    g_body_arg = &body;
    g_grid = grid;
    g_block_dim = block;
    if (g_stacks.size() < size_t(nt) * kStack) g_stacks.resize(size_t(nt) * kStack);
    std::vector<Fiber> fibers(nt);
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                g_block = dim3(bx, by, bz);
                for (int t = 0; t < nt; ++t) {
                    Fiber& f = fibers[t];
                    f.done = false;
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = g_stacks.data() + size_t(t) * kStack;
                    f.ctx.uc_stack.ss_size = kStack;
                    f.ctx.uc_link = &g_sched;
                    makecontext(&f.ctx, trampoline, 0);
                }
                for (;;) {
                    int done = 0, waiting = 0;
                    for (int t = 0; t < nt; ++t) {
                        Fiber& f = fibers[t];
                        if (!f.done) {
                            g_cur = &f;
                            g_thread = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
                            swapcontext(&g_sched, &f.ctx);
                        }
                        (f.done ? done : waiting) += 1;
                    }
                    if (waiting == 0) break;
                    if (done > 0) return 1;  // some threads returned, others wait at a barrier
                }
            }
    return 0;
}

}  // namespace cc_emu

namespace ccgpu {
using cc_emu::launch;
}

#define threadIdx (::cc_emu::g_thread)
#define blockIdx (::cc_emu::g_block)
#define blockDim (::cc_emu::g_block_dim)
#define gridDim (::cc_emu::g_grid)

inline void __syncthreads() { ::cc_emu::sync(); }
template <class T>
inline T __ldg(const T* p) { return *p; }
inline int atomicMin(int* p, int v) {  // fibers never run concurrently
    const int old = *p;
    if (v < old) *p = v;
    return old;
}
using std::isfinite;

// The host API subset the runner uses, on ordinary memory.
using cudaError_t = int;
using cudaStream_t = void*;
using cudaEvent_t = void*;
constexpr cudaError_t cudaSuccess = 0;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
inline const char* cudaGetErrorString(cudaError_t) { return "emulation error"; }
inline const char* cudaGetErrorName(cudaError_t) { return "cudaErrorEmulation"; }
inline cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
struct cudaDeviceProp {
    char name[256] = "CPU emulation";
};
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) { *p = cudaDeviceProp{}; return cudaSuccess; }
enum cudaDeviceAttr { cudaDevAttrComputeCapabilityMajor, cudaDevAttrComputeCapabilityMinor };
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int) { *v = 0; return cudaSuccess; }
inline cudaError_t cudaRuntimeGetVersion(int* v) { *v = 0; return cudaSuccess; }
inline cudaError_t cudaDriverGetVersion(int* v) { *v = 0; return cudaSuccess; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaMalloc(void** p, size_t n) {
    *p = std::malloc(n ? n : 1);
    return *p ? cudaSuccess : 2;
}
inline cudaError_t cudaMallocHost(void** p, size_t n) { return cudaMalloc(p, n); }
inline cudaError_t cudaFree(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaFreeHost(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) {
    std::memcpy(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t) {
    return cudaMemcpy(d, s, n, k);
}
inline cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t) {
    std::memset(d, v, n);
    return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
constexpr unsigned cudaStreamNonBlocking = 1, cudaEventDisableTiming = 2;
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { *s = nullptr; return cudaSuccess; }
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { *e = nullptr; return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }

#endif  // CC_CUDA_EMULATE
