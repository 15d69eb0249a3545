// Plain scalar reference of every kernel in kernels.hpp (width 1: no channel padding).
// Written for obviousness, not speed; the vector variants are tested against it.
#include "kernels.hpp"

namespace cc {
namespace {

float relu(float v) { return v > 0.0f ? v : 0.0f; }

void conv0_row(const float* in, std::ptrdiff_t S, int Wout, const float* w, const float* b,
               int Cp, float* out) {
    for (int x = 0; x < Wout; ++x)
        for (int c = 0; c < Cp; ++c) {
            float acc = b[c];
            for (int ky = 0; ky < 5; ++ky)
                for (int kx = 0; kx < 5; ++kx)
                    for (int ci = 0; ci < 3; ++ci)
                        acc += in[ky * S + (x + kx) * 3 + ci] * w[c * 75 + ky * 15 + kx * 3 + ci];
            out[x * Cp + c] = relu(acc);
        }
}

void dw_row(const float* const rows[5], int s, int Wout, const float* dw, int Cp, float* tmp) {
    for (int x = 0; x < Wout; ++x)
        for (int c = 0; c < Cp; ++c) {
            float acc = 0.0f;
            for (int ky = 0; ky < 5; ++ky)
                for (int kx = 0; kx < 5; ++kx)
                    acc += rows[ky][(s * x + kx) * Cp + c] * dw[(ky * 5 + kx) * Cp + c];
            tmp[x * Cp + c] = acc;
        }
}

void pw_row(const float* a, int M, int K, int lda, const float* B, const float* b, int Np,
            float* out, std::ptrdiff_t ldo) {
    for (int p = 0; p < M; ++p)
        for (int c = 0; c < Np; ++c) {
            float acc = b[c];
            for (int k = 0; k < K; ++k) acc += a[p * lda + k] * B[c * K + k];
            out[p * ldo + c] = relu(acc);
        }
}

float dot(const float* a, const float* b, std::ptrdiff_t n) {
    double acc = 0.0;
    for (std::ptrdiff_t i = 0; i < n; ++i) acc += double(a[i]) * double(b[i]);
    return float(acc);
}

const KernelTable table = {"reference", 1, conv0_row, dw_row, pw_row, dot};

}  // namespace

const KernelTable* kernels_reference() { return &table; }

}  // namespace cc
