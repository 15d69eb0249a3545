// The CUDA runner and kernels built as CPU emulation (see compat.cuh), behind a small C API for
// ctypes. Test-only: tests/test_cuda.py compiles it with
//   c++ -std=c++20 -O1 -fno-strict-aliasing -pthread -shared -fPIC -DCC_CUDA_EMULATE
// and compares it with the CPU engine, so kernel indexing is checked on machines without a GPU.
#ifndef CC_CUDA_EMULATE
#define CC_CUDA_EMULATE 1
#endif
#include "runner.cu"
#include "../common/model_weights.hpp"

#include <cstring>
#include <exception>
#include <string>

namespace {
thread_local std::string g_error;
}

extern "C" {

const char* ccemu_error() { return g_error.c_str(); }

// n: models x 5 filter counts. arrays, sizes: per model the 15 arrays w0, b0, dw1..4, pw1..4,
// pb1..4, readout and their lengths in floats; biases: per model the readout bias. Returns a
// runner, or null with ccemu_error() saying why (the bindings' checks and messages).
void* ccemu_create(int num_models, const int* n, const float* const* arrays, const long long* sizes,
                   const float* biases, const float* mean, long long workspace_bytes) {
    try {
        std::vector<cc::ModelWeights> models;
        for (int i = 0; i < num_models; ++i) {
            auto a = [&](int j) { return cc::FloatView{arrays[i * 15 + j], size_t(sizes[i * 15 + j])}; };
            const cc::ModelArrays m{{n[i * 5], n[i * 5 + 1], n[i * 5 + 2], n[i * 5 + 3], n[i * 5 + 4]},
                                    a(0), a(1),
                                    {a(2), a(3), a(4), a(5)},
                                    {a(6), a(7), a(8), a(9)},
                                    {a(10), a(11), a(12), a(13)},
                                    a(14), biases[i]};
            models.push_back(cc::to_weights(m, cc::model_prefix(i)));
        }
        return new cc_cuda::Runner(models, {mean[0], mean[1], mean[2]}, 0, size_t(workspace_bytes));
    } catch (const std::exception& e) {
        g_error = e.what();
        return nullptr;
    }
}

void ccemu_destroy(void* r) { delete static_cast<cc_cuda::Runner*>(r); }

int ccemu_max_pairs(void* r) { return static_cast<cc_cuda::Runner*>(r)->max_pairs(); }

// dtype: 0 float32, 1 float64, 2 uint8; strides in elements. device: 1 runs predict_device
// (the images are "device" memory), 0 predict_host. Returns -1, the first bad image, or -2 on
// error (ccemu_error()).
long long ccemu_predict(void* r, const void* data, int dtype, long long count, long long sn,
                        long long sy, long long sx, long long sc, float* out, int device, int check) {
    try {
        cc_cuda::ImageBatch b{data, dtype == 0 ? cc_cuda::DType::f32 : dtype == 1 ? cc_cuda::DType::f64 : cc_cuda::DType::u8,
                              count, sn, sy, sx, sc};
        auto* run = static_cast<cc_cuda::Runner*>(r);
        return device ? run->predict_device(b, out, 0, check != 0) : run->predict_host(b, out, check != 0);
    } catch (const std::exception& e) {
        g_error = e.what();
        return -2;
    }
}

}  // extern "C"
