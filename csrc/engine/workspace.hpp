// Engine internals shared by its .cpp files: map geometry, Workspace, StatsAcc, Buffer.
#pragma once
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "engine.hpp"

namespace cc {
namespace detail {

constexpr int kImg = 112;                // input height and width
constexpr int kInPadW = kImg + 4;        // layer-0 input with a 2-pixel zero border
constexpr long kInStride = kInPadW * 3;  // floats per padded input row
constexpr int kL1 = 56, kL2 = 28;
constexpr int kBands = kImg / 4;          // Winograd layer 0 works in bands of 4 rows
constexpr std::ptrdiff_t kBandTiles = wino0_u_floats(kImg);  // transformed input tiles of one band
constexpr std::ptrdiff_t kImageTiles = kBands * kBandTiles;  // ... of a whole image
constexpr int kRingRows = 8;             // >= 5 rows in use + 2 being produced
constexpr int kL0PadW = 1 + kImg + 2;    // layer-0 output row, TF 'same' stride-2 pad 1/2
constexpr int kL1PadW = 1 + kL1 + 2;     // layer-1 output, padded for layer 2 (stride 2)
constexpr int kL2PadW = 2 + kL2 + 2;     // layers 2-3 outputs, padded for the stride-1 layers

inline int round_up(int v, int m) { return (v + m - 1) / m * m; }

// Lowers `first` to image i unless an earlier image is already recorded (any thread may call).
inline void note_bad(std::atomic<int64_t>& first, int64_t i) {
    int64_t cur = first.load();
    while ((cur < 0 || i < cur) && !first.compare_exchange_weak(cur, i)) {
    }
}

// 64-byte aligned, zero-initialised float buffer.
struct Buffer {
    float* p = nullptr;
    explicit Buffer(size_t n) {
        const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
        p = static_cast<float*>(std::aligned_alloc(64, bytes ? bytes : 64));
        if (!p) throw std::bad_alloc();
        std::memset(p, 0, bytes);
    }
    ~Buffer() { std::free(p); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
};

}  // namespace detail

struct Engine::Workspace {
    detail::Buffer in, wino_u, wino, ring, zero_row, l1, l2, l3, l4, tmp;
    bool bad = false;
    // Where set (PopulationEngine), the current image's Winograd input tiles, every band's
    // (kImageTiles floats), computed once for all models: layer 0 then neither reads
    // the image nor transforms it.
    const float* shared_u = nullptr;
    Workspace(const std::array<int, 5>& np, int width);
};

// Per-thread pruning statistics (prune_stats.cpp): float moments of the current image, added
// into doubles after each image (float sums over one image's positions are accurate enough;
// totals are not). The row pipeline feeds it as it computes each depthwise output.
struct Engine::StatsAcc {
    std::array<std::vector<float>, 4> fsum, fgram;
    std::array<Moments, 5> total;
    StatsAcc(const std::array<int, 5>& n, const std::array<int, 5>& np);
    // Layer l's (0..3: layers 1-4) depthwise output rows: M pixels of Cp floats at a.
    void add_depthwise(const KernelTable& k, int l, const float* a, int M, int Cp) {
        k.gram_row(a, M, Cp, total[l].n, fgram[l].data(), Cp, fsum[l].data());
    }
    // This image's readout contributions from layer 4's map (28x28 pixels of Cp floats).
    void add_readout(const float* l4, const float* readout, int Cp);
    void flush(const std::array<int, 5>& np, const int64_t positions[4]);
};

}  // namespace cc
