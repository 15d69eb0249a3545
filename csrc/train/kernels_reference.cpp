// Plain scalar versions of the training kernels: the definition the vector kernels are tested
// against (width 1, so no channel padding).
#include "kernels.hpp"

namespace cc {
namespace train {
namespace {

void gemm(int M, int N, int K, const float* X, std::ptrdiff_t si, std::ptrdiff_t st, const float* Y,
          std::ptrdiff_t ldy, float* C, std::ptrdiff_t ldc, bool accumulate) {
    for (int i = 0; i < M; ++i)
        for (int n = 0; n < N; ++n) {
            float s = accumulate ? C[i * ldc + n] : 0.0f;
            for (int t = 0; t < K; ++t) s += X[i * si + t * st] * Y[t * ldy + n];
            C[i * ldc + n] = s;
        }
}

void dw_row(const float* const in[5], int Win, int pad, int s, int Wout, const float* w, int C,
            float* out) {
    for (int x = 0; x < Wout; ++x)
        for (int c = 0; c < C; ++c) {
            float acc = 0.0f;
            for (int ky = 0; ky < 5; ++ky) {
                if (!in[ky]) continue;
                for (int kx = 0; kx < 5; ++kx) {
                    const int xi = s * x + kx - pad;
                    if (xi >= 0 && xi < Win) acc += in[ky][xi * C + c] * w[(ky * 5 + kx) * C + c];
                }
            }
            out[x * C + c] = acc;
        }
}

void dw_row_backward(const float* const in[5], float* const din[5], int Win, int pad, int s, int Wout,
                     const float* w, const float* g, int C, float* dw) {
    for (int x = 0; x < Wout; ++x)
        for (int c = 0; c < C; ++c) {
            const float gv = g[x * C + c];
            for (int ky = 0; ky < 5; ++ky) {
                if (!in[ky]) continue;
                for (int kx = 0; kx < 5; ++kx) {
                    const int xi = s * x + kx - pad;
                    if (xi < 0 || xi >= Win) continue;
                    if (din[ky]) din[ky][xi * C + c] += gv * w[(ky * 5 + kx) * C + c];
                    dw[(ky * 5 + kx) * C + c] += in[ky][xi * C + c] * gv;
                }
            }
        }
}

void bias_stats(float* z, int P, int C, const float* bias, float* sum, float* sumsq) {
    for (int p = 0; p < P; ++p)
        for (int c = 0; c < C; ++c) {
            const float v = z[p * C + c] += bias[c];
            sum[c] += v;
            sumsq[c] += v * v;
        }
}

void bn_relu(const float* z, int P, int C, const float* scale, const float* shift, float* a) {
    for (int p = 0; p < P; ++p)
        for (int c = 0; c < C; ++c) {
            const float v = z[p * C + c] * scale[c] + shift[c];
            a[p * C + c] = v > 0.0f ? v : 0.0f;
        }
}

bool active(float z, float scale, float shift) { return z * scale + shift > 0.0f; }

void bn_back_stats(const float* da, const float* z, int P, int C, const float* scale, const float* shift,
                   const float* mu, const float* rstd, float* sg, float* sgx) {
    for (int p = 0; p < P; ++p)
        for (int c = 0; c < C; ++c) {
            const float g = active(z[p * C + c], scale[c], shift[c]) ? da[p * C + c] : 0.0f;
            sg[c] += g;
            sgx[c] += g * ((z[p * C + c] - mu[c]) * rstd[c]);
        }
}

void bn_back(const float* da, const float* z, int P, int C, const float* scale, const float* shift,
             const float* k1, const float* k2, const float* k3, float* dz, float* dzsum) {
    for (int p = 0; p < P; ++p)
        for (int c = 0; c < C; ++c) {
            const float g = active(z[p * C + c], scale[c], shift[c]) ? k1[c] * da[p * C + c] : 0.0f;
            const float v = g + k2[c] * z[p * C + c] + k3[c];
            dz[p * C + c] = v;
            dzsum[c] += v;
        }
}

const TrainKernels table = {"reference", 1, gemm, dw_row, dw_row_backward, bias_stats, bn_relu,
                            bn_back_stats, bn_back};

}  // namespace

const TrainKernels* train_kernels_reference() { return &table; }

}  // namespace train
}  // namespace cc
