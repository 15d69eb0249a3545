// Kernel table shared by every instruction-set variant of the engine's inner loops.
//
// Layout conventions (all float32):
//  * feature maps are channels-last with the channel count padded to a multiple of the table's
//    vector width (`width`); padded lanes hold zeros and stay zero through every layer;
//  * "rows" point at padded pixel 0 of a feature-map row; pixel stride = padded channel count.
#pragma once
#include <cstddef>

namespace cc {

struct KernelTable {
    const char* name;  // "avx512", "avx2", "sse2", "emu512", "reference"
    int width;         // floats per vector; padded channel counts are multiples of it

    // Layer 0: one output row of the 5x5, 3 -> Cp convolution with folded bias and ReLU.
    // `in` points at padded input row y (the image has a 2-pixel zero border, 3 channels,
    // row stride `S` floats); output pixel x reads padded pixels x..x+4 of rows y..y+4.
    // `w` is vector-major [Cp/width][k][width] with k = ky*15 + kx*3 + ci, `b` is [Cp]; `out` receives Wout pixels x Cp channels.
    void (*conv0_row)(const float* in, std::ptrdiff_t S, int Wout, const float* w,
                      const float* b, int Cp, float* out);

    // Layer 0 by Winograd F(4x4, 5x5), in two steps so that a population can transform an
    // image once for all its models. wino0_input: the transformed 8x8 input tiles `U`
    // (wino0_u_floats(Wout) floats, a layout private to the table) of padded input rows
    // y..y+7 (`in`, row stride S). wino0_product: output rows y..y+3 (out[0..3], each Wout x Cp,
    // Wout a multiple of 4) from those tiles. `V` holds the transformed weights G w G^T as
    // [Cp/width][i][j][ci][width] (i, j < 8, ci < 3); `scratch` needs
    // wino0_scratch_floats(Wout, width) floats.
    void (*wino0_input)(const float* in, std::ptrdiff_t S, int Wout, float* U, float* scratch);
    void (*wino0_product)(const float* U, int Wout, const float* V, const float* b, int Cp,
                          float* const out[4], float* scratch);

    // Depthwise 5x5 with stride s: tmp[x][c] = sum_{ky,kx} rows[ky][(s*x+kx)*Cp + c] * dw[ky*5+kx][c].
    void (*dw_row)(const float* const rows[5], int s, int Wout, const float* dw, int Cp,
                   float* tmp);

    // Pointwise + bias + ReLU: out[p*ldo + c] = max(0, b[c] + sum_{k<K} a[p*lda + k] * B(k, c))
    // for p < M, c < Np, with B vector-major: B(k, c) = B[((c/width)*K + k)*width + c%width].
    void (*pw_row)(const float* a, int M, int K, int lda, const float* B, const float* b, int Np,
                   float* out, std::ptrdiff_t ldo);

    // Second moments of a feature-map row, for pruning statistics: for x < M and j < n,
    // sums[c] += a[x*lda + c] and G[j*ldg + c] += a[x*lda + j] * a[x*lda + c] for c in
    // [j rounded down to the width, ldg); ldg is a multiple of the width and G's lower
    // triangle is left partly unfilled (callers read the upper triangle).
    void (*gram_row)(const float* a, int M, int lda, int n, float* G, int ldg, float* sums);

    // sum_i a[i] * b[i]
    float (*dot)(const float* a, const float* b, std::ptrdiff_t n);
};

constexpr std::ptrdiff_t wino0_u_floats(int Wout) { return std::ptrdiff_t(Wout / 4) * 3 * 64; }
inline std::ptrdiff_t wino0_scratch_floats(int Wout, int width) {
    const std::ptrdiff_t columns = std::ptrdiff_t(Wout + 4) * 3 * 8, products = 32 * width;
    return columns > products ? columns : products;
}

// Variants compiled from kernels_simd.cpp with different vector widths and target flags, plus
// the plain scalar reference (kernels_reference.cpp). Unavailable variants return nullptr.
const KernelTable* kernels_avx512();
const KernelTable* kernels_avx2();
const KernelTable* kernels_emu512();  // the 16-wide code path compiled for AVX2 (for testing it)
const KernelTable* kernels_sse2();
const KernelTable* kernels_reference();

}  // namespace cc
