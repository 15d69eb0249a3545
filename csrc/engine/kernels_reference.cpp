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

// F(4x4, 5x5) straight from the matrix definitions, Y = A^T [sum_ci (B^T d B) . V] A, in double
// (float32 rounding is what the vector kernels are allowed to add).
const float kBT[8][8] = {
    {-1, 0, 5.25f, 0, -5.25f, 0, 1, 0},     {0, 1, 1, -4.25f, -4.25f, 1, 1, 0},
    {0, -1, 1, 4.25f, -4.25f, -1, 1, 0},    {0, 0.5f, 0.25f, -2.5f, -1.25f, 2, 1, 0},
    {0, -0.5f, 0.25f, 2.5f, -1.25f, -2, 1, 0}, {0, 2, 4, -2.5f, -5, 0.5f, 1, 0},
    {0, -2, 4, 2.5f, -5, -0.5f, 1, 0},      {0, -1, 0, 5.25f, 0, -5.25f, 0, 1}};
const float kAT[4][8] = {{1, 1, 1, 1, 1, 1, 1, 0},
                         {0, 1, -1, 2, -2, 0.5f, -0.5f, 0},
                         {0, 1, 1, 4, 4, 0.25f, 0.25f, 0},
                         {0, 1, -1, 8, -8, 0.125f, -0.125f, 1}};

void wino0_input(const float* in, std::ptrdiff_t S, int Wout, float* U, float*) {
    for (int t = 0; t < Wout / 4; ++t)  // U: [tile][ci][i][j]
        for (int ci = 0; ci < 3; ++ci)
            for (int i = 0; i < 8; ++i)
                for (int j = 0; j < 8; ++j) {
                    double acc = 0.0;
                    for (int r = 0; r < 8; ++r)
                        for (int c = 0; c < 8; ++c)
                            acc += double(kBT[i][r]) * in[r * S + (4 * t + c) * 3 + ci] * kBT[j][c];
                    U[((t * 3 + ci) * 8 + i) * 8 + j] = float(acc);
                }
}

void wino0_product(const float* U, int Wout, const float* V, const float* b, int Cp,
                   float* const out[4], float*) {
    for (int t = 0; t < Wout / 4; ++t) {
        const float* Ut = U + t * 3 * 64;
        for (int ch = 0; ch < Cp; ++ch) {
            double M[8][8];
            for (int i = 0; i < 8; ++i)
                for (int j = 0; j < 8; ++j) {
                    M[i][j] = 0.0;
                    for (int ci = 0; ci < 3; ++ci)
                        M[i][j] += double(Ut[(ci * 8 + i) * 8 + j]) * V[((ch * 8 + i) * 8 + j) * 3 + ci];
                }
            for (int p = 0; p < 4; ++p)
                for (int q = 0; q < 4; ++q) {
                    double y = b[ch];
                    for (int i = 0; i < 8; ++i)
                        for (int j = 0; j < 8; ++j) y += double(kAT[p][i]) * M[i][j] * kAT[q][j];
                    out[p][(4 * t + q) * Cp + ch] = relu(float(y));
                }
        }
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

void gram_row(const float* a, int M, int lda, int n, float* G, int ldg, float* sums) {
    for (int x = 0; x < M; ++x) {
        const float* row = a + x * lda;
        for (int c = 0; c < ldg; ++c) sums[c] += row[c];
        for (int j = 0; j < n; ++j)
            for (int c = j; c < ldg; ++c) G[j * ldg + c] += row[j] * row[c];
    }
}

float dot(const float* a, const float* b, std::ptrdiff_t n) {
    double acc = 0.0;
    for (std::ptrdiff_t i = 0; i < n; ++i) acc += double(a[i]) * double(b[i]);
    return float(acc);
}

const KernelTable table = {"reference", 1, conv0_row, wino0_input, wino0_product, dw_row, pw_row, gram_row, dot};

}  // namespace

const KernelTable* kernels_reference() { return &table; }

}  // namespace cc
