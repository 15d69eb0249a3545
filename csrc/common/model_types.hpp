// Plain data shared by the CPU engine and the CUDA runner (no CUDA or nanobind types, so that
// nvcc, the host compiler and the CPU emulation of the CUDA runner all build it).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace cc {

// Batchnorm-folded weights in the canonical (unpadded) layout of a compiled Plan.
struct ModelWeights {
    std::array<int, 5> n{};                // filters per layer n0..n4
    std::vector<float> w0;                 // (n0, 3, 5, 5)
    std::vector<float> b0;                 // (n0)
    std::array<std::vector<float>, 4> dw;  // layer i+1: (n_i, 5, 5)
    std::array<std::vector<float>, 4> pw;  // layer i+1: (n_{i+1}, n_i)
    std::array<std::vector<float>, 4> pb;  // layer i+1: (n_{i+1})
    std::vector<float> readout;            // (28, 28, n4)
    float readout_bias = 0.0f;
};

enum class DType { f32, f64, u8 };

// Largest |value| accepted in a float image. Recentred pixels lie within +-255; far larger
// values overflow float32 inside the network, where ReLU can turn the resulting infinities into
// a finite but meaningless prediction, so an image holding one is refused like NaN or inf.
constexpr float kMaxInput = 1e6f;

// A strided view of a batch of images: element (n, y, x, c) lives at
// data + (n*sn + y*sy + x*sx + c*sc) elements.
struct ImageBatch {
    const void* data;
    DType dtype;
    int64_t count;
    int64_t sn, sy, sx, sc;
};

}  // namespace cc
