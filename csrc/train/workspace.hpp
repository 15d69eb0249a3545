// Training-driver internals shared by its .cpp files: geometry, states, workspaces, row helpers.
#pragma once
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "trainer.hpp"
#include "../common/thread_pool.hpp"

namespace cc {
namespace train {

constexpr int kSize[5] = {112, 56, 28, 28, 28};  // output map size of each layer
constexpr int kStride[5] = {1, 2, 2, 1, 1};
constexpr int kPad[5] = {2, 1, 1, 2, 2};          // TF 'same': stride 2 pads 1 before, 2 after
constexpr int kPadded = 116;                      // layer-0 input with its 2-pixel border
constexpr int kK0 = 75;                           // layer-0 patch length (ky, kx, ci)
constexpr int kK0p = 80;                          // ... padded to a multiple of every width
constexpr int kBandPixels = 112;                  // pixels per band of rows
constexpr int kRing = 8;                          // rows of layer 0's maps held by layer 1

constexpr int64_t kReadoutBlock = 8;              // images per readout product

inline int round_up(int v, int w) { return (v + w - 1) / w * w; }
inline int64_t blocks(int64_t n, int64_t size) { return (n + size - 1) / size; }
inline int param_base(int l) { return 4 + 5 * (l - 1); }  // first of layer l's (1..4) five arrays

// Per-thread scratch: bands, patch rows and the gradient accumulators.
struct Scratch {
    std::vector<float> patches, dband, dzband, ddband, dpatch, dxpad;
    std::vector<float> ring_a, ring_da;  // 8 rows of layer 0's activations and their gradient
    std::vector<float> img_acc, fa, fb;  // one image's gradient sums; one band's statistics
    std::vector<double> acc, sa, sb;     // the thread's sums over its images
};

// Feature maps of one batch, reused from step to step while the sizes stay the same.
struct Workspace {
    int64_t N = 0;
    std::array<int, 5> cp{};
    std::vector<float> xpad;                          // (N, 116, 116, 3)
    std::array<std::vector<float>, 5> z, a, da;       // (N, H, H, cp[l]); no a[0] (recomputed)
    std::vector<Scratch> scratch;
};

std::unique_ptr<Workspace> make_workspace(int64_t N, const std::array<int, 5>& cp, int threads);

struct Impl {
    std::array<int, 5> n;
    int outputs;
    const TrainKernels* k;
    ThreadPool pool;
    std::mutex mu;       // one pass at a time (the pool is not re-entrant)
    std::mutex free_mu;  // guards `free`
    std::vector<std::unique_ptr<Workspace>> free;
    bool profile = false;                 // read and written under `mu`
    std::array<double, kPhases> phase_s{};

    Impl(std::array<int, 5> n_, int outputs_, int threads, const TrainKernels* k_)
        : n(n_), outputs(outputs_), k(k_), pool(threads) {}

    // fn(thread, image) over all images, images handed out in order.
    void for_images(int64_t N, const std::function<void(int, int64_t)>& fn);
    // A free workspace of these sizes, or null; and back into the pool after a step.
    std::unique_ptr<Workspace> take(int64_t N, const std::array<int, 5>& cp);
    void give_back(std::unique_ptr<Workspace> ws);
};

// A stopwatch over the phases of one pass: lap(p) adds the time since the last lap to phase p
// (when the trainer profiles; callers hold im.mu).
class Laps {
public:
    explicit Laps(Impl& im) : im_(im), t_(std::chrono::steady_clock::now()) {}
    void lap(int phase) {
        if (!im_.profile) return;
        const auto t = std::chrono::steady_clock::now();
        im_.phase_s[size_t(phase)] += std::chrono::duration<double>(t - t_).count();
        t_ = t;
    }

private:
    Impl& im_;
    std::chrono::steady_clock::time_point t_;
};

// Everything backward needs: the workspace, the step's compact weights and statistics.
struct Tape::State {
    std::shared_ptr<Impl> impl;
    std::unique_ptr<Workspace> ws;
    StepConfig cfg;
    std::array<int, 5> c{}, cp{};
    int64_t N = 0;
    bool used = false;
    // Packed compact weights (padded lanes zero). R: readout (K, 28*28*cp4); RT its transpose
    // (28*28*cp4, Kp) with K padded to Kp lanes.
    std::vector<float> w0T, w0p, b0, R, RT, rb;
    std::array<std::vector<float>, 5> gamma, beta;
    std::array<std::vector<float>, 5> dw, pwT, pwB, pb;  // index l = 1..4
    int K = 1, Kp = 1;
    std::array<std::vector<float>, 5> mu, rstd;          // statistics used by the batchnorm
    std::array<std::vector<float>, 5> scale, shift;      // the batchnorm as z*scale + shift
    // Offsets into the flat per-image gradient accumulator.
    int64_t off_w0T = 0, off_b0 = 0, acc_size = 0;
    std::array<int64_t, 5> off_dw{}, off_pwT{}, off_pb{};

    float* map(std::vector<float>& v, int l, int64_t i) const {
        return v.data() + i * int64_t(kSize[l]) * kSize[l] * cp[l];
    }
};

// weight_pack.cpp: the step's parameters (PyTorch's layouts) -> s's packed compact weights and
// accumulator offsets; and back, the summed accumulators (acc) and the batchnorm and readout
// gradients -> the 26 gradient arrays, zeros where masked.
void pack(Tape::State& s, const std::array<int, 5>& n, const std::array<const float*, kParams>& P);
void unpack_grads(const Tape::State& s, const std::array<int, 5>& n, const std::vector<double>& acc,
                  const std::array<std::vector<float>, 5>& dgamma,
                  const std::array<std::vector<float>, 5>& dbeta, const std::vector<float>& dR,
                  const float* gout, const std::array<float*, kParams>& G);

// The input rows of layer l's (1..4) output rows, for one image. Layer 0's activations are
// never stored: for layer 1 they are recomputed from z0 (batchnorm + ReLU) into a ring of
// kRing rows as the output rows advance (rows are asked for in increasing order, and one band
// of two output rows spans 7 input rows).
struct InputRows {
    const TrainKernels& K;
    const float* map;  // layer l-1's activations, or z0 for l == 1
    int l, cpi;
    float* ring = nullptr;  // l == 1
    const float *scale = nullptr, *shift = nullptr;
    int next = 0;

    const float* row(int yi) {
        const int64_t rs = int64_t(kSize[l - 1]) * cpi;
        if (!ring) return map + yi * rs;
        for (; next <= yi; ++next)
            K.bn_relu(map + next * rs, kSize[l - 1], cpi, scale, shift, ring + (next % kRing) * rs);
        return ring + (yi % kRing) * rs;
    }
    void rows_for(int y, const float* rows[5]) {
        for (int ky = 0; ky < 5; ++ky) {
            const int yi = kStride[l] * y + ky - kPad[l];
            rows[ky] = yi >= 0 && yi < kSize[l - 1] ? row(yi) : nullptr;
        }
    }
};

inline InputRows input_rows(Tape::State& s, Workspace& ws, Scratch& sc, int l, int64_t i) {
    if (l == 1)
        return InputRows{*s.impl->k, s.map(ws.z[0], 0, i), 1, s.cp[0], sc.ring_a.data(), s.scale[0].data(),
                         s.shift[0].data()};
    return InputRows{*s.impl->k, s.map(ws.a[l - 1], l - 1, i), l, s.cp[l - 1]};
}

// Layer-0 patch rows: patches[x*75 + ky*15 + j] = xpad[(y+ky)*116*3 + 3x + j].
inline void im2col(const float* xpad, int y, float* patches) {
    for (int x = 0; x < 112; ++x)
        for (int ky = 0; ky < 5; ++ky) {
            const float* src = xpad + (int64_t(y + ky) * kPadded + x) * 3;
            std::copy(src, src + 15, patches + x * kK0 + ky * 15);
        }
}

inline void zero_stats(std::vector<Scratch>& scratch) {
    for (auto& sc : scratch) {
        std::fill(sc.sa.begin(), sc.sa.end(), 0.0);
        std::fill(sc.sb.begin(), sc.sb.end(), 0.0);
    }
}

// Adds a band's float statistics into the thread's double sums and clears them.
inline void flush_stats(Scratch& sc, int C) {
    for (int c = 0; c < C; ++c) {
        sc.sa[c] += sc.fa[c];
        sc.sb[c] += sc.fb[c];
        sc.fa[c] = sc.fb[c] = 0.0f;
    }
}

}  // namespace train
}  // namespace cc
