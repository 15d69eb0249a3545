// The CUDA kernels of the compact-model pipeline, float32, for a chunk of (model, image) pairs.
//
// Feature maps are planar per pair: [pair][channel][row][column], so threads mapped to
// neighbouring pixels read and write neighbouring addresses. Every kernel takes a Chunk: the
// pairs of models [m0, m0 + mg) x images [img0, img0 + ic), model-major (pair = mi * ic + ii),
// one per blockIdx.z (or blockIdx.x for the readout). Models may differ in their filter counts;
// blocks beyond a model's channels return at once (block-uniformly).
//
//   prep      raw images (any strides; float32/float64 recentred, or uint8 recentred here) ->
//             float32 planar with a 2-pixel zero border [ic][3][116][116]; flags NaN/inf
//   conv0     layer 0: 5x5 conv 3 -> n0, 'same', + folded bias, ReLU -> [n0][112][112]
//   dwpw<S>   layers 1-4: depthwise 5x5 (stride 2, TF 'same' pad 1/2; or stride 1 pad 2) fused
//             with the pointwise 1x1, bias and ReLU
//   readout   dot over the (C, 28, 28) map with the readout (pre-transposed to C, H, W) + bias
//
// All sums run in a fixed order: results are deterministic run to run.
#pragma once

#include "compat.cuh"
#include "../common/model_types.hpp"  // kMaxInput

namespace cc_cuda {

constexpr int kImg = 112;
constexpr int kPadImg = kImg + 4;              // 2-pixel zero border for layer 0
constexpr int kPadPlane = kPadImg * kPadImg;   // floats per padded input channel
constexpr int kPrepFloats = 3 * kPadPlane;     // floats per prepared image
constexpr int kMap = 28;                       // layers 2-4 maps are 28x28

// One model's packed weights on the device (all float32).
struct DevModel {
    int n[5];
    const float* w0;     // [75][n0]: tap (ci*25 + ky*5 + kx) major
    const float* b0;     // [n0]
    const float* dw[4];  // layer l+1: [n_l][25]
    const float* pw[4];  // layer l+1: [n_l][n_{l+1}] (input-channel major: transposed)
    const float* pb[4];  // layer l+1: [n_{l+1}]
    const float* ro;     // [n4][28*28]: (C, H, W), transposed from the plan's (H, W, C)
    float ro_bias;
};

struct Chunk {
    const DevModel* models;  // all models of the runner
    int m0;                  // first model of the chunk
    int ic;                  // images in the chunk
    int img0;                // global index of the chunk's first image
    int num_models;          // all models (the output's row length)
};

__device__ __forceinline__ float relu(float v) { return v < 0.0f ? 0.0f : v; }  // keeps NaN

// acc[j] += v * w[j] for j < N, reading w (16-byte aligned, N a multiple of 4) as float4.
template <int N>
__device__ __forceinline__ void axpy4(float (&acc)[N], float v, const float* w) {
    const float4* w4 = reinterpret_cast<const float4*>(w);
#pragma unroll
    for (int q = 0; q < N / 4; ++q) {
        const float4 x = w4[q];
        acc[4 * q + 0] += v * x.x;
        acc[4 * q + 1] += v * x.y;
        acc[4 * q + 2] += v * x.z;
        acc[4 * q + 3] += v * x.w;
    }
}

// ---------------------------------------------------------------------------- prep

template <typename T>
__device__ __forceinline__ float to_float(T v) { return float(v); }

// dst[i][c][y+2][x+2] = src(img0 + i, y, x, c) (minus mean[c] for uint8); zero border.
template <typename T>
__global__ void CC_LAUNCH_BOUNDS(256)
prep_kernel(const T* __restrict__ src, long long sn, long long sy, long long sx, long long sc,
            int ic, float mean0, float mean1, float mean2, int recentre, float* __restrict__ dst,
            int* first_bad, int img0) {
    const long long total = (long long)ic * kPrepFloats;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int i = int(idx / kPrepFloats);
        const int r = int(idx % kPrepFloats);
        const int c = r / kPadPlane;
        const int y = (r / kPadImg) % kPadImg - 2;
        const int x = r % kPadImg - 2;
        float v = 0.0f;
        if (y >= 0 && y < kImg && x >= 0 && x < kImg) {
            v = to_float(__ldg(src + i * sn + y * sy + x * sx + c * sc));
            if (recentre) v -= c == 0 ? mean0 : (c == 1 ? mean1 : mean2);
            if (!(fabsf(v) <= cc::kMaxInput)) atomicMin(first_bad, img0 + i);  // NaN, inf, overflow
        }
        dst[idx] = v;
    }
}

// ---------------------------------------------------------------------------- layer 0

constexpr int kC0Tile = 16;  // 16x16 output pixels per block, one per thread
constexpr int kC0Ch = 16;    // output channels per block (and per thread)
constexpr int kC0Tiles = kImg / kC0Tile;  // 7 per side

// grid (49, ceil(max n0 / 16), pairs), block 256. in: [ic][3][116][116]; out: pair * out_stride
// + [n0][112][112].
__global__ void CC_LAUNCH_BOUNDS(256)
conv0_kernel(Chunk ch, const float* __restrict__ in, float* __restrict__ out, long long out_stride) {
    const int pair = blockIdx.z;
    const DevModel& M = ch.models[ch.m0 + pair / ch.ic];
    const int n0 = M.n[0];
    const int cb0 = blockIdx.y * kC0Ch;
    if (cb0 >= n0) return;
    const int ty0 = (blockIdx.x / kC0Tiles) * kC0Tile, tx0 = (blockIdx.x % kC0Tiles) * kC0Tile;
    const int tid = threadIdx.x;

    __shared__ float s_in[3][kC0Tile + 4][kC0Tile + 4];
    __shared__ CC_ALIGN16 float s_w[75][kC0Ch];
    __shared__ float s_b[kC0Ch];
    const float* img = in + (long long)(pair % ch.ic) * kPrepFloats;
    for (int i = tid; i < 3 * (kC0Tile + 4) * (kC0Tile + 4); i += 256) {
        const int c = i / ((kC0Tile + 4) * (kC0Tile + 4));
        const int r = (i / (kC0Tile + 4)) % (kC0Tile + 4);
        const int col = i % (kC0Tile + 4);
        s_in[c][r][col] = __ldg(img + c * kPadPlane + (ty0 + r) * kPadImg + tx0 + col);
    }
    for (int i = tid; i < 75 * kC0Ch; i += 256) {
        const int tap = i / kC0Ch, j = i % kC0Ch;
        s_w[tap][j] = cb0 + j < n0 ? __ldg(M.w0 + tap * n0 + cb0 + j) : 0.0f;
    }
    if (tid < kC0Ch) s_b[tid] = cb0 + tid < n0 ? __ldg(M.b0 + cb0 + tid) : 0.0f;
    __syncthreads();

    const int ty = tid / kC0Tile, tx = tid % kC0Tile;
    float acc[kC0Ch];
#pragma unroll
    for (int j = 0; j < kC0Ch; ++j) acc[j] = s_b[j];
#pragma unroll
    for (int ci = 0; ci < 3; ++ci)
#pragma unroll
        for (int ky = 0; ky < 5; ++ky)
#pragma unroll
            for (int kx = 0; kx < 5; ++kx)
                axpy4(acc, s_in[ci][ty + ky][tx + kx], s_w[ci * 25 + ky * 5 + kx]);
    float* o = out + pair * out_stride + (long long)cb0 * (kImg * kImg) + (ty0 + ty) * kImg + tx0 + tx;
#pragma unroll
    for (int j = 0; j < kC0Ch; ++j)
        if (cb0 + j < n0) o[(long long)j * (kImg * kImg)] = relu(acc[j]);
}

// ---------------------------------------------------------------------------- layers 1-4

constexpr int kDwPix = 64;    // output pixels per block
constexpr int kDwGroups = 4;  // thread groups over output channels (256 = 64 x 4)
constexpr int kDwOpt = 16;    // output channels per thread
constexpr int kDwOut = kDwGroups * kDwOpt;  // output channels per block (64)
constexpr int kDwK = 32;      // input channels per shared-memory round

// Layer `layer` (1..4) of every pair: in: pair * in_stride + [Cin][HIN][HIN]; out: pair *
// out_stride + [Cout][HIN/S][HIN/S]. grid (ceil(HOUT^2 / 64), ceil(max Cout / 64), pairs),
// block 256: thread (pixel p = tid % 64, group g = tid / 64) accumulates output channels
// ob0 + 16g .. ob0 + 16g + 15 of pixel p0 + p. Per round of 32 input channels: the depthwise
// outputs of the block's 64 pixels go to shared memory, then the pointwise products.
template <int S, int HIN>
__global__ void CC_LAUNCH_BOUNDS(256)
dwpw_kernel(Chunk ch, int layer, const float* __restrict__ in, long long in_stride,
            float* __restrict__ out, long long out_stride) {
    constexpr int HOUT = HIN / S;
    constexpr int NPIX = HOUT * HOUT;
    constexpr int PAD = S == 2 ? 1 : 2;  // TF 'same': stride 2 pads 1 before, 2 after
    const int pair = blockIdx.z;
    const DevModel& M = ch.models[ch.m0 + pair / ch.ic];
    const int cin = M.n[layer - 1], cout = M.n[layer];
    const int ob0 = blockIdx.y * kDwOut;
    if (ob0 >= cout) return;
    const int p0 = blockIdx.x * kDwPix;
    const float* dw = M.dw[layer - 1];
    const float* pw = M.pw[layer - 1];
    const float* src = in + pair * in_stride;
    const int tid = threadIdx.x;
    const int pix = tid % kDwPix, grp = tid / kDwPix;

    __shared__ float s_dw[kDwK][kDwPix];
    __shared__ CC_ALIGN16 float s_pw[kDwK][kDwOut];
    float acc[kDwOpt];
#pragma unroll
    for (int j = 0; j < kDwOpt; ++j) acc[j] = 0.0f;

    for (int k0 = 0; k0 < cin; k0 += kDwK) {
        const int kc = cin - k0 < kDwK ? cin - k0 : kDwK;
        for (int i = tid; i < kDwK * kDwPix; i += 256) {
            const int kk = i / kDwPix, pp = i % kDwPix;
            float v = 0.0f;
            if (kk < kc && p0 + pp < NPIX) {
                const int c = k0 + kk;
                const int oy = (p0 + pp) / HOUT, ox = (p0 + pp) % HOUT;
                const float* w = dw + c * 25;
                const float* plane = src + (long long)c * (HIN * HIN);
#pragma unroll
                for (int ky = 0; ky < 5; ++ky) {
                    const int iy = oy * S - PAD + ky;
                    if (iy < 0 || iy >= HIN) continue;
#pragma unroll
                    for (int kx = 0; kx < 5; ++kx) {
                        const int ix = ox * S - PAD + kx;
                        if (ix < 0 || ix >= HIN) continue;
                        v += __ldg(w + ky * 5 + kx) * __ldg(plane + iy * HIN + ix);
                    }
                }
            }
            s_dw[kk][pp] = v;
        }
        for (int i = tid; i < kDwK * kDwOut; i += 256) {
            const int kk = i / kDwOut, j = i % kDwOut;
            s_pw[kk][j] = kk < kc && ob0 + j < cout ? __ldg(pw + (k0 + kk) * cout + ob0 + j) : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < kc; ++kk) axpy4(acc, s_dw[kk][pix], &s_pw[kk][grp * kDwOpt]);
        __syncthreads();
    }
    if (p0 + pix < NPIX) {
        const float* pb = M.pb[layer - 1];
        float* dst = out + pair * out_stride + p0 + pix;
#pragma unroll
        for (int j = 0; j < kDwOpt; ++j) {
            const int o = ob0 + grp * kDwOpt + j;
            if (o < cout) dst[(long long)o * NPIX] = relu(acc[j] + __ldg(pb + o));
        }
    }
}

// ---------------------------------------------------------------------------- readout

// grid (pairs), block 256. in: pair * in_stride + [n4][28][28]; out[(img0 + ii) * num_models +
// m0 + mi] = dot + bias, summed in a fixed tree order.
__global__ void CC_LAUNCH_BOUNDS(256)
readout_kernel(Chunk ch, const float* __restrict__ in, long long in_stride, float* __restrict__ out) {
    const int pair = blockIdx.x;
    const int mi = pair / ch.ic, ii = pair % ch.ic;
    const DevModel& M = ch.models[ch.m0 + mi];
    const int total = M.n[4] * (kMap * kMap);
    const float* src = in + pair * in_stride;
    const int tid = threadIdx.x;
    float s = 0.0f;
    for (int e = tid; e < total; e += 256) s += __ldg(src + e) * __ldg(M.ro + e);
    __shared__ float s_red[256];
    s_red[tid] = s;
    __syncthreads();
    for (int half = 128; half > 0; half /= 2) {
        if (tid < half) s_red[tid] += s_red[tid + half];
        __syncthreads();
    }
    if (tid == 0)
        out[(long long)(ch.img0 + ii) * ch.num_models + ch.m0 + mi] = s_red[0] + M.ro_bias;
}

}  // namespace cc_cuda
