// Vector versions of the training kernels, written once with GCC/Clang vector extensions and
// compiled once per instruction set (CMake sets CC_VEC_BYTES, CC_NREG, CC_TABLE_NAME,
// CC_TABLE_FN and the target flags). Free of standard-library inline functions, like the
// helpers in common/simd_vec.hpp.
#include "kernels.hpp"
#include "../common/simd_vec.hpp"

#if !defined(CC_VEC_BYTES) || !defined(CC_NREG) || !defined(CC_TABLE_FN)
#error "CC_VEC_BYTES, CC_NREG and CC_TABLE_FN must be defined by the build"
#endif

namespace cc {
namespace train {
namespace {

using namespace vec;
typedef std::ptrdiff_t idx;

// ---- gemm: an MR x (NR vectors) block of C held in registers, one pass over t ----
template <int MR, int NR>
inline void gemm_tile(int K, const float* X, idx si, idx st, const float* Y, idx ldy, float* C,
                      idx ldc, bool accumulate) {
    vf c[MR][NR];
    for (int m = 0; m < MR; ++m)
        for (int v = 0; v < NR; ++v) c[m][v] = accumulate ? load(C + m * ldc + v * W) : vf{};
    for (int t = 0; t < K; ++t) {
        vf y[NR];
        for (int v = 0; v < NR; ++v) y[v] = load(Y + v * W);
        for (int m = 0; m < MR; ++m) {
            const vf a = splat(X[m * si]);
            for (int v = 0; v < NR; ++v) c[m][v] += a * y[v];
        }
        X += st;
        Y += ldy;
    }
    for (int m = 0; m < MR; ++m)
        for (int v = 0; v < NR; ++v) store(C + m * ldc + v * W, c[m][v]);
}

template <int R, int NR>
inline void gemm_rest(int rem, int K, const float* X, idx si, idx st, const float* Y, idx ldy,
                      float* C, idx ldc, bool acc) {
    if constexpr (R > 0) {
        if (rem == R) gemm_tile<R, NR>(K, X, si, st, Y, ldy, C, ldc, acc);
        else gemm_rest<R - 1, NR>(rem, K, X, si, st, Y, ldy, C, ldc, acc);
    }
}

template <int NR>
void gemm_cols(int M, int K, const float* X, idx si, idx st, const float* Y, idx ldy, float* C,
               idx ldc, bool acc) {
    constexpr int MR = pix_block<NR>();
    int i = 0;
    for (; i + MR <= M; i += MR) gemm_tile<MR, NR>(K, X + i * si, si, st, Y, ldy, C + i * ldc, ldc, acc);
    if (i < M) gemm_rest<MR - 1, NR>(M - i, K, X + i * si, si, st, Y, ldy, C + i * ldc, ldc, acc);
}

void gemm(int M, int N, int K, const float* X, idx si, idx st, const float* Y, idx ldy, float* C,
          idx ldc, bool accumulate) {
    for (int n = 0; n < N;) {
        const int nr = next_block((N - n) / W);
        switch (nr) {
            case 1: gemm_cols<1>(M, K, X, si, st, Y + n, ldy, C + n, ldc, accumulate); break;
            case 2: gemm_cols<2>(M, K, X, si, st, Y + n, ldy, C + n, ldc, accumulate); break;
#if CC_NREG == 32
            case 3: gemm_cols<3>(M, K, X, si, st, Y + n, ldy, C + n, ldc, accumulate); break;
            case 4: gemm_cols<4>(M, K, X, si, st, Y + n, ldy, C + n, ldc, accumulate); break;
#endif
        }
        n += nr * W;
    }
}

// ---- depthwise 5x5 ----
// Outputs whose 5 taps all lie inside the row: [x_lo, x_hi).
inline void interior(int Win, int pad, int s, int Wout, int& x_lo, int& x_hi) {
    x_lo = (pad + s - 1) / s;
    x_hi = (Win - 5 + pad) / s + 1;
    if (x_hi > Wout) x_hi = Wout;
    if (x_lo > x_hi) x_lo = x_hi;
}

void dw_row(const float* const in[5], int Win, int pad, int s, int Wout, const float* w, int C,
            float* out) {
    constexpr int P = 8;  // outputs per block: P accumulators + 5 weights of one kernel row
    int x_lo, x_hi;
    interior(Win, pad, s, Wout, x_lo, x_hi);
    for (int c = 0; c < C; c += W) {
        auto edge = [&](int x) {
            vf acc{};
            for (int ky = 0; ky < 5; ++ky) {
                if (!in[ky]) continue;
                for (int kx = 0; kx < 5; ++kx) {
                    const int xi = s * x + kx - pad;
                    if (xi >= 0 && xi < Win)
                        acc += load(in[ky] + idx(xi) * C + c) * load(w + (ky * 5 + kx) * C + c);
                }
            }
            store(out + idx(x) * C + c, acc);
        };
        for (int x = 0; x < x_lo; ++x) edge(x);
        int x = x_lo;
        for (; x + P <= x_hi; x += P) {
            vf acc[P] = {};
            for (int ky = 0; ky < 5; ++ky) {
                if (!in[ky]) continue;
                const float* r = in[ky] + idx(s * x - pad) * C + c;
                vf wk[5];
                for (int kx = 0; kx < 5; ++kx) wk[kx] = load(w + (ky * 5 + kx) * C + c);
                for (int kx = 0; kx < 5; ++kx)
                    for (int p = 0; p < P; ++p) acc[p] += load(r + idx(s * p + kx) * C) * wk[kx];
            }
            for (int p = 0; p < P; ++p) store(out + idx(x + p) * C + c, acc[p]);
        }
        for (; x < Wout; ++x) edge(x);
    }
}

void dw_row_backward(const float* const in[5], float* const din[5], int Win, int pad, int s, int Wout,
                     const float* w, const float* g, int C, float* dw) {
    int x_lo, x_hi;
    interior(Win, pad, s, Wout, x_lo, x_hi);
    for (int c = 0; c < C; c += W)
        for (int ky = 0; ky < 5; ++ky) {
            if (!in[ky]) continue;
            const float* r = in[ky] + c;
            float* d = din[ky] ? din[ky] + c : nullptr;
            vf wk[5], acc[5] = {};
            for (int kx = 0; kx < 5; ++kx) wk[kx] = load(w + (ky * 5 + kx) * C + c);
            auto edge = [&](int x) {
                const vf gv = load(g + idx(x) * C + c);
                for (int kx = 0; kx < 5; ++kx) {
                    const int xi = s * x + kx - pad;
                    if (xi < 0 || xi >= Win) continue;
                    acc[kx] += load(r + idx(xi) * C) * gv;
                    if (d) store(d + idx(xi) * C, load(d + idx(xi) * C) + gv * wk[kx]);
                }
            };
            for (int x = 0; x < x_lo; ++x) edge(x);
            if (d) {
                for (int x = x_lo; x < x_hi; ++x) {
                    const vf gv = load(g + idx(x) * C + c);
                    const idx o = idx(s * x - pad) * C;
                    for (int kx = 0; kx < 5; ++kx) {
                        acc[kx] += load(r + o + kx * C) * gv;
                        store(d + o + kx * C, load(d + o + kx * C) + gv * wk[kx]);
                    }
                }
            } else {
                for (int x = x_lo; x < x_hi; ++x) {
                    const vf gv = load(g + idx(x) * C + c);
                    const idx o = idx(s * x - pad) * C;
                    for (int kx = 0; kx < 5; ++kx) acc[kx] += load(r + o + kx * C) * gv;
                }
            }
            for (int x = x_hi; x < Wout; ++x) edge(x);
            for (int kx = 0; kx < 5; ++kx) {
                float* p = dw + (ky * 5 + kx) * C + c;
                store(p, load(p) + acc[kx]);
            }
        }
}

// ---- per-channel passes over P pixels (channel loop innermost; C a multiple of W) ----
void bias_stats(float* z, int P, int C, const float* bias, float* sum, float* sumsq) {
    for (int p = 0; p < P; ++p)
        for (int c = 0; c < C; c += W) {
            float* zp = z + idx(p) * C + c;
            const vf v = load(zp) + load(bias + c);
            store(zp, v);
            store(sum + c, load(sum + c) + v);
            store(sumsq + c, load(sumsq + c) + v * v);
        }
}

void bn_relu(const float* z, int P, int C, const float* scale, const float* shift, float* a) {
    const vf zero{};
    for (int p = 0; p < P; ++p)
        for (int c = 0; c < C; c += W) {
            const vf v = load(z + idx(p) * C + c) * load(scale + c) + load(shift + c);
            store(a + idx(p) * C + c, v > zero ? v : zero);
        }
}

void bn_back_stats(const float* da, const float* z, int P, int C, const float* scale, const float* shift,
                   const float* mu, const float* rstd, float* sg, float* sgx) {
    const vf zero{};
    for (int p = 0; p < P; ++p)
        for (int c = 0; c < C; c += W) {
            const idx o = idx(p) * C + c;
            const vf g = load(z + o) * load(scale + c) + load(shift + c) > zero ? load(da + o) : zero;
            store(sg + c, load(sg + c) + g);
            store(sgx + c, load(sgx + c) + g * ((load(z + o) - load(mu + c)) * load(rstd + c)));
        }
}

void bn_back(const float* da, const float* z, int P, int C, const float* scale, const float* shift,
             const float* k1, const float* k2, const float* k3, float* dz, float* dzsum) {
    const vf zero{};
    for (int p = 0; p < P; ++p)
        for (int c = 0; c < C; c += W) {
            const idx o = idx(p) * C + c;
            const vf zv = load(z + o);
            const vf g = zv * load(scale + c) + load(shift + c) > zero ? load(k1 + c) * load(da + o) : zero;
            const vf v = g + load(k2 + c) * zv + load(k3 + c);
            store(dz + o, v);
            store(dzsum + c, load(dzsum + c) + v);
        }
}

const TrainKernels table = {CC_TABLE_NAME, W, gemm, dw_row, dw_row_backward, bias_stats, bn_relu,
                            bn_back_stats, bn_back};

}  // namespace

const TrainKernels* CC_TABLE_FN() { return &table; }

}  // namespace train
}  // namespace cc
