// Kernel table of the training kernels (forward and backward of the compact model), one copy
// per instruction set plus a scalar reference.
//
// Layout conventions (all float32): feature maps are channels-last; a map's channel count C is
// padded to a multiple of the table's `width`, and padded lanes hold zeros in every map and
// every weight. "Rows" are pixel rows of one image: pixel x, channel c at row[x*C + c].
#pragma once
#include <cstddef>
#include <string>

namespace cc {
namespace train {

struct TrainKernels {
    const char* name;  // "avx512", "avx2", "sse2", "emu512", "reference"
    int width;         // floats per vector; padded channel counts are multiples of it

    // Small dense product with strided X: for i < M, n < N (N a multiple of width),
    //   C[i*ldc + n] = (accumulate ? C[i*ldc + n] : 0) + sum_{t<K} X[i*si + t*st] * Y[t*ldy + n].
    // With (si, st) = (lda, 1) it is C = A Y; with (1, lda) it is C += A^T Y (weight gradients).
    void (*gemm)(int M, int N, int K, const float* X, std::ptrdiff_t si, std::ptrdiff_t st,
                 const float* Y, std::ptrdiff_t ldy, float* C, std::ptrdiff_t ldc, bool accumulate);

    // Depthwise 5x5 of one output row: out[x*C + c] = sum over valid taps of
    // in[ky][(s*x + kx - pad)*C + c] * w[(ky*5 + kx)*C + c], for x < Wout. in[ky] == nullptr
    // marks a row outside the map; taps with s*x + kx - pad outside [0, Win) are skipped.
    void (*dw_row)(const float* const in[5], int Win, int pad, int s, int Wout, const float* w,
                   int C, float* out);

    // Backward of dw_row for one output row, given its gradient g (Wout x C):
    //   din[ky][(s*x+kx-pad)*C + c] += g[x*C + c] * w[tap*C + c]   (din[ky] null: skipped)
    //   dw[tap*C + c] += in[ky][(s*x+kx-pad)*C + c] * g[x*C + c]
    void (*dw_row_backward)(const float* const in[5], float* const din[5], int Win, int pad, int s,
                            int Wout, const float* w, const float* g, int C, float* dw);

    // z[p*C + c] += bias[c]; sum[c] += z; sumsq[c] += z*z  (p < P): a convolution's output
    // gets its bias and its batch statistics in one pass.
    void (*bias_stats)(float* z, int P, int C, const float* bias, float* sum, float* sumsq);

    // a = max(0, z*scale[c] + shift[c]): batchnorm + ReLU.
    void (*bn_relu)(const float* z, int P, int C, const float* scale, const float* shift, float* a);

    // Batchnorm + ReLU backward, statistics. The ReLU was active where z*scale + shift > 0
    // (recomputed exactly as bn_relu computed it, so no activation map is kept); with
    // g = (active ? da : 0) and xhat = (z - mu[c]) * rstd[c]: sg[c] += g, sgx[c] += g*xhat.
    void (*bn_back_stats)(const float* da, const float* z, int P, int C, const float* scale,
                          const float* shift, const float* mu, const float* rstd, float* sg,
                          float* sgx);

    // Batchnorm + ReLU backward, the input gradient: dz = (active ? k1*da : 0) + k2*z + k3
    // per channel; dzsum[c] += dz (the gradient of a bias added before the batchnorm).
    void (*bn_back)(const float* da, const float* z, int P, int C, const float* scale,
                    const float* shift, const float* k1, const float* k2, const float* k3, float* dz,
                    float* dzsum);
};

const TrainKernels* train_kernels_avx512();
const TrainKernels* train_kernels_avx2();
const TrainKernels* train_kernels_emu512();
const TrainKernels* train_kernels_sse2();
const TrainKernels* train_kernels_reference();

// The table for an instruction-set name ("auto", "avx512", ..., "reference"; common/isa.hpp
// decides, as for the engine's select_kernels).
const TrainKernels* select_train_kernels(const std::string& isa);

}  // namespace train
}  // namespace cc
