// Register-blocked vector kernels, written once with GCC/Clang vector extensions and compiled
// several times: CMake sets CC_VEC_BYTES (vector width), CC_NREG (vector registers to block
// for), CC_TABLE_NAME / CC_TABLE_FN and the target flags of each copy.
// Free of standard-library inline functions, like the helpers in common/simd_vec.hpp.
#include "kernels.hpp"
#include "../common/simd_vec.hpp"

#if !defined(CC_VEC_BYTES) || !defined(CC_NREG) || !defined(CC_TABLE_FN)
#error "CC_VEC_BYTES, CC_NREG and CC_TABLE_FN must be defined by the build"
#endif

namespace cc {
namespace {

using namespace vec;

// ---- layer 0: direct 5x5 convolution, 3 input channels, as an implicit GEMM with K = 75 ----
// Weights are vector-major, [Cp/W][75][W], so every weight of a tile sits at a compile-time
// offset from one pointer (runtime strides here made GCC spill address registers).
template <int P, int V>
inline void conv0_tile(const float* in, long S, const float* w, const float* b, float* out,
                       long os) {
    vf acc[P][V];
    for (int v = 0; v < V; ++v) {
        const vf bv = load(b + v * W);
        for (int p = 0; p < P; ++p) acc[p][v] = bv;
    }
    for (int ky = 0; ky < 5; ++ky) {
        const float* row = in + ky * S;
        const float* wk = w + ky * 15 * W;
        for (int j = 0; j < 15; ++j) {  // j = kx*3 + ci: 15 consecutive floats of the row
            vf wv[V];
            for (int v = 0; v < V; ++v) wv[v] = load(wk + v * 75 * W);
            for (int p = 0; p < P; ++p) {
                const vf a = splat(row[3 * p]);
                for (int v = 0; v < V; ++v) acc[p][v] += a * wv[v];
            }
            // Opaque step: stops GCC from unrolling j and keeping broadcasts of pixels shared
            // by neighbouring (p, j) alive across iterations, which spilled the accumulators.
            row += 1;
            wk += W;
            __asm__("" : "+r"(row), "+r"(wk));
        }
    }
    for (int p = 0; p < P; ++p)
        for (int v = 0; v < V; ++v) store(out + p * os + v * W, relu(acc[p][v]));
}

template <int V>
void conv0_block(const float* in, long S, int Wout, const float* w, const float* b, float* out,
                 long os) {
    constexpr int P = pix_block<V>();
    int x = 0;
    for (; x + P <= Wout; x += P) conv0_tile<P, V>(in + 3 * x, S, w, b, out + x * os, os);
    for (; x + 4 <= Wout; x += 4) conv0_tile<4, V>(in + 3 * x, S, w, b, out + x * os, os);
    for (; x < Wout; ++x) conv0_tile<1, V>(in + 3 * x, S, w, b, out + x * os, os);
}

void conv0_row(const float* in, std::ptrdiff_t S, int Wout, const float* w, const float* b,
               int Cp, float* out) {
    for (int c = 0; c < Cp;) {
        const int V = next_block((Cp - c) / W);
        const float* wc = w + c * 75;  // vector c/W of the [Cp/W][75][W] layout
        switch (V) {
            case 1: conv0_block<1>(in, S, Wout, wc, b + c, out + c, Cp); break;
            case 2: conv0_block<2>(in, S, Wout, wc, b + c, out + c, Cp); break;
#if CC_NREG == 32
            case 3: conv0_block<3>(in, S, Wout, wc, b + c, out + c, Cp); break;
            case 4: conv0_block<4>(in, S, Wout, wc, b + c, out + c, Cp); break;
#endif
        }
        c += V * W;
    }
}

// ---- layer 0 by Winograd F(4x4, 5x5): 8x8 input tiles -> 4x4 output tiles ----
// Per output pixel and channel: 12 multiply-adds in the transformed domain plus ~11 transform
// operations, against 75 multiply-adds for the direct convolution. Interpolation points
// 0, +-1, +-2, +-1/2 and infinity; the weight transform (G) is applied once, in double, when
// the engine packs the weights (wino_pack in weight_pack.cpp).
typedef float v8 __attribute__((vector_size(32)));  // the 8 rows of a tile, whatever the ISA

inline v8 load8(const float* p) { v8 v; __builtin_memcpy(&v, p, sizeof v); return v; }
inline void store8(float* p, v8 v) { __builtin_memcpy(p, &v, sizeof v); }

// u = B^T d for one 8-vector of the input tile (each d[k] a vector over 8 independent lanes).
template <typename T>
inline void input_transform(const T d[8], T u[8]) {
    u[0] = (d[6] - d[0]) + (d[2] - d[4]) * 5.25f;
    u[7] = (d[7] - d[1]) + (d[3] - d[5]) * 5.25f;
    T a = (d[2] + d[6]) - d[4] * 4.25f, b = (d[1] + d[5]) - d[3] * 4.25f;
    u[1] = a + b;
    u[2] = a - b;
    a = (d[2] * 0.25f + d[6]) - d[4] * 1.25f;
    b = (d[1] * 0.5f + d[5] * 2.0f) - d[3] * 2.5f;
    u[3] = a + b;
    u[4] = a - b;
    a = (d[2] * 4.0f + d[6]) - d[4] * 5.0f;
    b = (d[1] * 2.0f + d[5] * 0.5f) - d[3] * 2.5f;
    u[5] = a + b;
    u[6] = a - b;
}

// y = A^T m: 8 transformed values -> 4 outputs.
inline void output_transform(const vf m[8], vf y[4]) {
    const vf s1 = m[1] + m[2], d1 = m[1] - m[2];
    const vf s2 = m[3] + m[4], d2 = m[3] - m[4];
    const vf s3 = m[5] + m[6], d3 = m[5] - m[6];
    y[0] = m[0] + s1 + s2 + s3;
    y[1] = d1 + d2 * 2.0f + d3 * 0.5f;
    y[2] = s1 + s2 * 4.0f + s3 * 0.25f;
    y[3] = (d1 + d2 * 8.0f + d3 * 0.125f) + m[7];
}

void wino0_input(const float* in, std::ptrdiff_t S, int Wout, float* U, float* scratch) {
    const int tiles = Wout / 4, xs = (Wout + 4) * 3;
    float* T = scratch;  // [xs][8]: B^T applied down the columns of the 8 rows
    for (int x = 0; x < xs; ++x) {
        float d[8];
        for (int k = 0; k < 8; ++k) d[k] = in[k * S + x];
        input_transform(d, T + x * 8);
    }
    for (int t = 0; t < tiles; ++t)  // U: [tile][ci][j][i]
        for (int ci = 0; ci < 3; ++ci) {
            v8 d[8], u[8];
            for (int c = 0; c < 8; ++c) d[c] = load8(T + ((4 * t + c) * 3 + ci) * 8);
            input_transform(d, u);
            for (int j = 0; j < 8; ++j) store8(U + ((t * 3 + ci) * 8 + j) * 8, u[j]);
        }
}

void wino0_product(const float* U, int Wout, const float* V, const float* b, int Cp,
                   float* const out[4], float* scratch) {
    const int tiles = Wout / 4;
    float* Z = scratch;  // [i][q][W]: row-transformed products of one tile
    for (int cv = 0; cv < Cp / W; ++cv) {
        const float* Vc = V + long(cv) * 64 * 3 * W;  // [i][j][ci][W]
        const vf bias = load(b + cv * W);
        for (int t = 0; t < tiles; ++t) {
            const float* Ut = U + t * 3 * 64;
            for (int i = 0; i < 8; ++i) {
                vf m[8], z[4];
                for (int j = 0; j < 8; ++j) {
                    const float* v = Vc + ((i * 8 + j) * 3) * W;
                    m[j] = splat(Ut[(0 * 8 + j) * 8 + i]) * load(v) +
                           splat(Ut[(1 * 8 + j) * 8 + i]) * load(v + W) +
                           splat(Ut[(2 * 8 + j) * 8 + i]) * load(v + 2 * W);
                }
                output_transform(m, z);
                for (int q = 0; q < 4; ++q) store(Z + (i * 4 + q) * W, z[q]);
            }
            for (int q = 0; q < 4; ++q) {
                vf m[8], y[4];
                for (int i = 0; i < 8; ++i) m[i] = load(Z + (i * 4 + q) * W);
                output_transform(m, y);
                for (int p = 0; p < 4; ++p)
                    store(out[p] + long(4 * t + q) * Cp + cv * W, relu(y[p] + bias));
            }
        }
    }
}

// ---- depthwise 5x5, stride s, channels-last ----
// One channel vector and one kernel row at a time: the row's 5 weights stay in registers and
// the output row accumulates in tmp (L1-resident), so every load has a simple address.
void dw_row(const float* const rows[5], int s, int Wout, const float* dw, int Cp, float* tmp) {
    const long step = long(s) * Cp;
    for (int c = 0; c < Cp; c += W) {
        for (int ky = 0; ky < 5; ++ky) {
            const float* wk = dw + ky * 5 * Cp + c;
            const vf w0 = load(wk), w1 = load(wk + Cp), w2 = load(wk + 2 * Cp),
                     w3 = load(wk + 3 * Cp), w4 = load(wk + 4 * Cp);
            const float* r = rows[ky] + c;
            float* t = tmp + c;
            for (int x = 0; x < Wout; ++x, r += step, t += Cp) {
                const vf head = ky == 0 ? load(r) * w0 : load(t) + load(r) * w0;
                const vf tail = load(r + Cp) * w1 + load(r + 2 * Cp) * w2;
                store(t, (head + tail) + (load(r + 3 * Cp) * w3 + load(r + 4 * Cp) * w4));
            }
        }
    }
}

// ---- pointwise GEMM + bias + ReLU; B is vector-major, [Np/W][K][W] ----
template <int V> constexpr int pw_pix_block() { return pix_block<V>() < 8 ? pix_block<V>() : 8; }

template <int P, int V>
inline void pw_tile(const float* a, int K, long lda, const float* B, const float* b, float* out,
                    long ldo) {
    vf acc[P][V];
    for (int v = 0; v < V; ++v) {
        const vf bv = load(b + v * W);
        for (int p = 0; p < P; ++p) acc[p][v] = bv;
    }
    const long bstride = long(K) * W;  // distance between consecutive output vectors
#pragma GCC unroll 2
    for (int k = 0; k < K; ++k) {
        vf wv[V];
        for (int v = 0; v < V; ++v) wv[v] = load(B + v * bstride + k * W);
        for (int p = 0; p < P; ++p) {
            const vf x = splat(a[p * lda + k]);
            for (int v = 0; v < V; ++v) acc[p][v] += x * wv[v];
        }
    }
    for (int p = 0; p < P; ++p)
        for (int v = 0; v < V; ++v) store(out + p * ldo + v * W, relu(acc[p][v]));
}

template <int V>
void pw_block(const float* a, int M, int K, long lda, const float* B, const float* b, float* out,
              long ldo) {
    constexpr int P = pw_pix_block<V>();
    int m = 0;
    for (; m + P <= M; m += P) pw_tile<P, V>(a + m * lda, K, lda, B, b, out + m * ldo, ldo);
    for (; m + 4 <= M; m += 4) pw_tile<4, V>(a + m * lda, K, lda, B, b, out + m * ldo, ldo);
    for (; m < M; ++m) pw_tile<1, V>(a + m * lda, K, lda, B, b, out + m * ldo, ldo);
}

void pw_row(const float* a, int M, int K, int lda, const float* B, const float* b, int Np,
            float* out, std::ptrdiff_t ldo) {
    for (int c = 0; c < Np;) {
        const int V = next_block((Np - c) / W);
        const float* Bc = B + long(c) * K;  // vector c/W of the [Np/W][K][W] layout
        switch (V) {
            case 1: pw_block<1>(a, M, K, lda, Bc, b + c, out + c, ldo); break;
            case 2: pw_block<2>(a, M, K, lda, Bc, b + c, out + c, ldo); break;
#if CC_NREG == 32
            case 3: pw_block<3>(a, M, K, lda, Bc, b + c, out + c, ldo); break;
            case 4: pw_block<4>(a, M, K, lda, Bc, b + c, out + c, ldo); break;
#endif
        }
        c += V * W;
    }
}

void gram_row(const float* a, int M, int lda, int n, float* G, int ldg, float* sums) {
    for (int c = 0; c < ldg; c += W) {
        vf s{};
        for (int x = 0; x < M; ++x) s += load(a + long(x) * lda + c);
        store(sums + c, load(sums + c) + s);
    }
    constexpr int U = 4;  // channel vectors per pass: U accumulators + 1 broadcast
    for (int j = 0; j < n; ++j) {
        float* g = G + long(j) * ldg;
        for (int c0 = j / W * W; c0 < ldg; c0 += U * W) {
            const int nv = (ldg - c0) / W < U ? (ldg - c0) / W : U;
            vf acc[U] = {};
            for (int x = 0; x < M; ++x) {
                const float* row = a + long(x) * lda;
                const vf aj = splat(row[j]);
                for (int v = 0; v < U; ++v)
                    if (v < nv) acc[v] += aj * load(row + c0 + v * W);
            }
            for (int v = 0; v < nv; ++v) store(g + c0 + v * W, load(g + c0 + v * W) + acc[v]);
        }
    }
}

float dot(const float* a, const float* b, std::ptrdiff_t n) {  // n is a multiple of W
    vf acc[4] = {};
    std::ptrdiff_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W)
        for (int u = 0; u < 4; ++u) acc[u] += load(a + i + u * W) * load(b + i + u * W);
    for (; i < n; i += W) acc[0] += load(a + i) * load(b + i);
    const vf s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    float r = 0.0f;
    for (int l = 0; l < W; ++l) r += s[l];
    return r;
}

const KernelTable table = {CC_TABLE_NAME, W, conv0_row, wino0_input, wino0_product, dw_row, pw_row, gram_row, dot};

}  // namespace

const KernelTable* CC_TABLE_FN() { return &table; }

}  // namespace cc
