#include "engine.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace cc {
namespace {

constexpr int kImg = 112;               // input height and width
constexpr int kInPadW = kImg + 4;       // layer-0 input with a 2-pixel zero border
constexpr long kInStride = kInPadW * 3;  // floats per padded input row
constexpr int kL1 = 56, kL2 = 28;
constexpr int kRingRows = 8;             // >= 5 rows in use + 2 being produced
constexpr int kL0PadW = 1 + kImg + 2;    // layer-0 output row, TF 'same' stride-2 pad 1/2
constexpr int kL1PadW = 1 + kL1 + 2;     // layer-1 output, padded for layer 2 (stride 2)
constexpr int kL2PadW = 2 + kL2 + 2;     // layers 2-3 outputs, padded for the stride-1 layers

int round_up(int v, int m) { return (v + m - 1) / m * m; }

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

bool finite(float v) { return std::isfinite(v); }

}  // namespace

struct Engine::Workspace {
    Buffer in, wino, ring, zero_row, l1, l2, l3, l4, tmp;
    bool bad = false;
    Workspace(const std::array<int, 5>& np, int width)
        : in(size_t(kInPadW) * kInStride),
          wino(size_t(wino0_scratch_floats(kImg, width))),
          ring(size_t(kRingRows) * kL0PadW * np[0]),
          zero_row(size_t(kL0PadW) * np[0]),
          l1(size_t(kL1PadW) * kL1PadW * np[1]),
          l2(size_t(kL2PadW) * kL2PadW * np[2]),
          l3(size_t(kL2PadW) * kL2PadW * np[3]),
          l4(size_t(kL2) * kL2 * np[4]),
          tmp(size_t(kL1) * std::max(std::max(np[0], np[1]), std::max(np[2], np[3]))) {}
};

// Per-thread pruning statistics: float moments of the current image, added into doubles after
// each image (float sums over one image's positions are accurate enough; totals are not).
struct Engine::StatsAcc {
    std::array<std::vector<float>, 4> fsum, fgram;
    std::array<Moments, 5> total;
    StatsAcc(const std::array<int, 5>& n, const std::array<int, 5>& np) {
        for (int l = 0; l < 5; ++l) {
            total[l].n = n[l];
            total[l].sum.assign(n[l], 0.0);
            total[l].gram.assign(size_t(n[l]) * n[l], 0.0);
            if (l < 4) {
                fsum[l].assign(np[l], 0.0f);
                fgram[l].assign(size_t(n[l]) * np[l], 0.0f);
            }
        }
    }
    void flush(const std::array<int, 5>& np, int64_t positions[4]) {
        for (int l = 0; l < 4; ++l) {
            Moments& m = total[l];
            for (int j = 0; j < m.n; ++j) {
                m.sum[j] += fsum[l][j];
                for (int c = j; c < m.n; ++c) m.gram[size_t(j) * m.n + c] += fgram[l][size_t(j) * np[l] + c];
            }
            m.count += positions[l];
            std::fill(fsum[l].begin(), fsum[l].end(), 0.0f);
            std::fill(fgram[l].begin(), fgram[l].end(), 0.0f);
        }
    }
};

const KernelTable* select_kernels(const std::string& isa) {
    const KernelTable* t = nullptr;
    if (isa == "auto") {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && (t = kernels_avx512())) return t;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && (t = kernels_avx2()))
            return t;
#endif
        return kernels_sse2() ? kernels_sse2() : kernels_reference();
    }
    if (isa == "reference") return kernels_reference();
    if (isa == "sse2") t = kernels_sse2();
    else if (isa == "avx2" || isa == "emu512") {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            t = isa == "avx2" ? kernels_avx2() : kernels_emu512();
#endif
    } else if (isa == "avx512") {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) t = kernels_avx512();
#endif
    } else {
        throw std::invalid_argument("unknown isa '" + isa +
                                    "' (expected auto, avx512, avx2, emu512, sse2 or reference)");
    }
    if (!t) throw std::runtime_error("isa '" + isa + "' is not supported by this CPU or build");
    return t;
}

std::vector<std::string> available_isas() {
    std::vector<std::string> out;
    for (const char* name : {"avx512", "avx2", "emu512", "sse2", "reference"}) {
        try {
            select_kernels(name);
            out.emplace_back(name);
        } catch (const std::exception&) {
        }
    }
    return out;
}

// Winograd F(4x4,5x5) weight transform G w G^T, in double, packed as [Cp/W][i][j][ci][W].
static std::vector<float> wino_pack(const std::vector<float>& w0, int n0, int Cp, int W) {
    const double pts[7] = {0, 1, -1, 2, -2, 0.5, -0.5};
    double G[8][5] = {};
    for (int i = 0; i < 7; ++i) {
        double norm = 1;
        for (int j = 0; j < 7; ++j)
            if (j != i) norm *= pts[i] - pts[j];
        for (int k = 0; k < 5; ++k) G[i][k] = std::pow(pts[i], k) / norm;
    }
    G[7][4] = 1;  // the point at infinity
    std::vector<float> V(size_t(64) * 3 * Cp, 0.0f);
    for (int c = 0; c < n0; ++c)
        for (int ci = 0; ci < 3; ++ci)
            for (int i = 0; i < 8; ++i)
                for (int j = 0; j < 8; ++j) {
                    double acc = 0;
                    for (int ky = 0; ky < 5; ++ky)
                        for (int kx = 0; kx < 5; ++kx)
                            acc += G[i][ky] * w0[((c * 3 + ci) * 5 + ky) * 5 + kx] * G[j][kx];
                    V[((size_t(c / W) * 64 + i * 8 + j) * 3 + ci) * W + c % W] = float(acc);
                }
    return V;
}

Engine::Engine(const ModelWeights& m, const KernelTable* k, int threads, std::array<float, 3> mean,
               bool winograd)
    : k_(k), n_(m.n), mean_(mean), winograd_(winograd), readout_bias_(m.readout_bias),
      pool_(threads < 1 ? 1 : threads) {
    for (int i = 0; i < 5; ++i) np_[i] = round_up(n_[i], k_->width);
    // Index of (channel c, reduction index k) in a vector-major [Cp/W][K][W] weight array.
    const int W = k_->width;
    auto vec_major = [W](int c, int k, int K) { return (size_t(c / W) * K + k) * W + c % W; };

    // Layer 0: (n0,3,5,5) -> [ky][kx*3+ci][C0p].
    w0_.assign(size_t(75) * np_[0], 0.0f);
    b0_.assign(np_[0], 0.0f);
    if (winograd_) wino_v_ = wino_pack(m.w0, n_[0], np_[0], W);
    for (int c = 0; c < n_[0]; ++c) {
        b0_[c] = m.b0[c];
        for (int ci = 0; ci < 3; ++ci)
            for (int ky = 0; ky < 5; ++ky)
                for (int kx = 0; kx < 5; ++kx)
                    w0_[vec_major(c, ky * 15 + kx * 3 + ci, 75)] = m.w0[((c * 3 + ci) * 5 + ky) * 5 + kx];
    }
    // Layers 1-4: depthwise (n_in,5,5) -> [ky*5+kx][Cin_p]; pointwise (n_out,n_in) -> [k][Cout_p].
    for (int l = 0; l < 4; ++l) {
        const int ni = n_[l], no = n_[l + 1], nip = np_[l], nop = np_[l + 1];
        dw_[l].assign(size_t(25) * nip, 0.0f);
        for (int c = 0; c < ni; ++c)
            for (int t = 0; t < 25; ++t) dw_[l][t * nip + c] = m.dw[l][c * 25 + t];
        pw_[l].assign(size_t(ni) * nop, 0.0f);
        pb_[l].assign(nop, 0.0f);
        for (int o = 0; o < no; ++o) {
            pb_[l][o] = m.pb[l][o];
            for (int c = 0; c < ni; ++c) pw_[l][vec_major(o, c, ni)] = m.pw[l][o * ni + c];
        }
    }
    // Readout: (28,28,n4) -> (28,28,C4p).
    readout_.assign(size_t(kL2) * kL2 * np_[4], 0.0f);
    for (int p = 0; p < kL2 * kL2; ++p)
        for (int c = 0; c < n_[4]; ++c) readout_[p * np_[4] + c] = m.readout[p * n_[4] + c];

    for (int t = 0; t < pool_.size(); ++t) ws_.emplace_back(new Workspace(np_, W));
}

Engine::~Engine() = default;

std::unique_ptr<Engine::Workspace> Engine::make_workspace(const std::array<int, 5>& np_max, int width) {
    return std::unique_ptr<Workspace>(new Workspace(np_max, width));
}

namespace {
// Zeroes the border of an H x W x C channels-last map outside rows [top, H-bottom) and
// columns [left, W-right).
void zero_frame(float* map, int H, int W, int C, int top, int left, int bottom, int right) {
    for (int y = 0; y < H; ++y) {
        float* row = map + size_t(y) * W * C;
        if (y < top || y >= H - bottom) {
            std::fill(row, row + size_t(W) * C, 0.0f);
        } else {
            std::fill(row, row + size_t(left) * C, 0.0f);
            std::fill(row + size_t(W - right) * C, row + size_t(W) * C, 0.0f);
        }
    }
}
}  // namespace

void Engine::prepare(Workspace& ws) const {
    // The layer-0 input border and zero_row never change; the rest depends on this model's
    // padded channel counts, which set the layout of the buffers.
    for (int slot = 0; slot < kRingRows; ++slot)
        zero_frame(ws.ring.p + size_t(slot) * kL0PadW * np_[0], 1, kL0PadW, np_[0], 0, 1, 0, 2);
    zero_frame(ws.l1.p, kL1PadW, kL1PadW, np_[1], 1, 1, 2, 2);
    zero_frame(ws.l2.p, kL2PadW, kL2PadW, np_[2], 2, 2, 2, 2);
    zero_frame(ws.l3.p, kL2PadW, kL2PadW, np_[3], 2, 2, 2, 2);
}

float Engine::run_image(Workspace& ws, const ImageBatch& b, int64_t i, bool& bad) const {
    ws.bad = false;
    fill_input(ws, b, i, 0, kImg);
    layers01(ws, 0, kL1, ws.l1.p);
    const float y = layers234(ws);
    bad = ws.bad;
    return y;
}

PopulationEngine::PopulationEngine(const std::vector<ModelWeights>& models, const KernelTable* k,
                                   int threads, std::array<float, 3> mean, bool winograd)
    : pool_(threads < 1 ? 1 : threads) {
    std::array<int, 5> np_max{};
    for (const ModelWeights& m : models) {
        engines_.emplace_back(new Engine(m, k, 1, mean, winograd));
        for (int l = 0; l < 5; ++l) np_max[l] = std::max(np_max[l], engines_.back()->padded_filters()[l]);
    }
    for (int t = 0; t < pool_.size(); ++t) ws_.push_back(Engine::make_workspace(np_max, k->width));
}

PopulationEngine::~PopulationEngine() = default;

int64_t PopulationEngine::predict(const ImageBatch& b, float* out) {
    std::lock_guard<std::mutex> lock(call_mu_);
    const int T = pool_.size(), M = models();
    // Chunks of images per model: enough items to balance the threads, few enough model
    // switches (each re-lays out the workspace and reloads weights).
    const int64_t per_model = std::max<int64_t>(1, (4 * T + M - 1) / M);
    const int64_t chunk = std::max<int64_t>(1, (b.count + per_model - 1) / per_model);
    const int64_t chunks = (b.count + chunk - 1) / chunk, items = chunks * M;
    std::atomic<int64_t> next{0}, first_bad{-1};
    pool_.run(T, [&](int t) {
        Engine::Workspace& ws = *ws_[t];
        int current = -1;
        for (int64_t item; (item = next.fetch_add(1)) < items;) {
            const int m = int(item / chunks);
            const int64_t i0 = (item % chunks) * chunk, i1 = std::min(b.count, i0 + chunk);
            if (m != current) {
                engines_[m]->prepare(ws);
                current = m;
            }
            for (int64_t i = i0; i < i1; ++i) {
                bool bad = false;
                out[i * M + m] = engines_[m]->run_image(ws, b, i, bad);
                if (bad) {
                    int64_t cur = first_bad.load();
                    while ((cur < 0 || i < cur) && !first_bad.compare_exchange_weak(cur, i)) {
                    }
                }
            }
        }
    });
    return first_bad.load();
}

// Copies image rows [y0, y1) into the padded layer-0 input, converting to float32 and
// recentring uint8 pixels; flags NaN/inf.
void Engine::fill_input(Workspace& ws, const ImageBatch& b, int64_t i, int y0, int y1) const {
    bool bad = false;
    for (int y = y0; y < y1; ++y) {
        float* dst = ws.in.p + (y + 2) * kInStride + 2 * 3;
        const int64_t base = i * b.sn + y * b.sy;
        switch (b.dtype) {
            case DType::u8: {
                const uint8_t* src = static_cast<const uint8_t*>(b.data) + base;
                for (int x = 0; x < kImg; ++x)
                    for (int c = 0; c < 3; ++c)
                        dst[x * 3 + c] = float(src[x * b.sx + c * b.sc]) - mean_[c];
                break;
            }
            case DType::f32: {
                const float* src = static_cast<const float*>(b.data) + base;
                float acc = 0.0f;  // v*0 is 0 for finite v and NaN otherwise
                if (b.sx == 3 && b.sc == 1) {
                    for (int j = 0; j < kImg * 3; ++j) {
                        dst[j] = src[j];
                        acc += src[j] * 0.0f;
                    }
                } else {
                    for (int x = 0; x < kImg; ++x)
                        for (int c = 0; c < 3; ++c) {
                            const float v = src[x * b.sx + c * b.sc];
                            dst[x * 3 + c] = v;
                            acc += v * 0.0f;
                        }
                }
                bad |= !finite(acc);
                break;
            }
            case DType::f64: {
                const double* src = static_cast<const double*>(b.data) + base;
                for (int x = 0; x < kImg; ++x)
                    for (int c = 0; c < 3; ++c) {
                        const double v = src[x * b.sx + c * b.sc];
                        dst[x * 3 + c] = float(v);
                        bad |= !std::isfinite(float(v));
                    }
                break;
            }
        }
    }
    ws.bad |= bad;
}

std::array<int, 2> Engine::l0_rows(int r0, int r1) const {
    // Output row r of layer 1 reads layer-0 rows 2r-1 .. 2r+3 ('same' padding: 1 before, 2
    // after); the Winograd path produces aligned bands of 4 rows.
    int first = std::max(0, 2 * r0 - 1), last = std::min(kImg - 1, 2 * r1 + 1);
    if (winograd_) {
        first = first / 4 * 4;
        last = last / 4 * 4 + 3;
    }
    return {first, last};
}

// Layer-1 output rows [r0, r1) into l1 (padded for layer 2), producing the layer-0 rows they
// need into this workspace's ring buffer on the fly. Needs the image rows that l0_rows(r0, r1)
// read (2 more on each side) filled in.
void Engine::layers01(Workspace& ws, int r0, int r1, float* l1, StatsAcc* st) const {
    const int c0 = np_[0], c1 = np_[1];
    const size_t ring_row = size_t(kL0PadW) * c0;
    auto slot = [&](int y) { return ws.ring.p + size_t(y % kRingRows) * ring_row; };
    int have = l0_rows(r0, r1)[0] - 1;  // last layer-0 row produced
    const float* rows[5];
    for (int r = r0; r < r1; ++r) {
        // The ring holds 8 rows: the 5 that row r reads and at most 3 more of the newest band.
        while (have < std::min(kImg - 1, 2 * r + 3)) {
            const int y = have + 1;
            if (winograd_) {
                float* out[4] = {slot(y) + c0, slot(y + 1) + c0, slot(y + 2) + c0, slot(y + 3) + c0};
                k_->wino0_band(ws.in.p + y * kInStride, kInStride, kImg, wino_v_.data(),
                               b0_.data(), c0, out, ws.wino.p);
                have = y + 3;
            } else {
                k_->conv0_row(ws.in.p + y * kInStride, kInStride, kImg, w0_.data(), b0_.data(),
                              c0, slot(y) + c0);
                have = y;
            }
        }
        for (int ky = 0; ky < 5; ++ky) {
            const int y = 2 * r - 1 + ky;
            rows[ky] = (y < 0 || y >= kImg) ? ws.zero_row.p : slot(y);
        }
        k_->dw_row(rows, 2, kL1, dw_[0].data(), c0, ws.tmp.p);
        if (st) k_->gram_row(ws.tmp.p, kL1, c0, n_[0], st->fgram[0].data(), c0, st->fsum[0].data());
        k_->pw_row(ws.tmp.p, kL1, n_[0], c0, pw_[0].data(), pb_[0].data(), c1,
                   l1 + (size_t(r + 1) * kL1PadW + 1) * c1, c1);
    }
}

// Layers 2-4 and the readout from this workspace's layer-1 output.
float Engine::layers234(Workspace& ws, StatsAcc* st) const {
    const float* rows[5];
    // Layer 2: stride 2 over the 56x56 map (padded 1 before, 2 after) -> l2 interior.
    for (int r = 0; r < kL2; ++r) {
        for (int ky = 0; ky < 5; ++ky) rows[ky] = ws.l1.p + size_t(2 * r + ky) * kL1PadW * np_[1];
        k_->dw_row(rows, 2, kL2, dw_[1].data(), np_[1], ws.tmp.p);
        if (st) k_->gram_row(ws.tmp.p, kL2, np_[1], n_[1], st->fgram[1].data(), np_[1], st->fsum[1].data());
        k_->pw_row(ws.tmp.p, kL2, n_[1], np_[1], pw_[1].data(), pb_[1].data(), np_[2],
                   ws.l2.p + (size_t(r + 2) * kL2PadW + 2) * np_[2], np_[2]);
    }
    // Layers 3 and 4: stride 1, pad 2.
    for (int l = 2; l < 4; ++l) {
        const float* src = l == 2 ? ws.l2.p : ws.l3.p;
        for (int r = 0; r < kL2; ++r) {
            for (int ky = 0; ky < 5; ++ky) rows[ky] = src + size_t(r + ky) * kL2PadW * np_[l];
            k_->dw_row(rows, 1, kL2, dw_[l].data(), np_[l], ws.tmp.p);
            if (st) k_->gram_row(ws.tmp.p, kL2, np_[l], n_[l], st->fgram[l].data(), np_[l], st->fsum[l].data());
            float* dst = l == 2 ? ws.l3.p + (size_t(r + 2) * kL2PadW + 2) * np_[3]
                                : ws.l4.p + size_t(r) * kL2 * np_[4];
            k_->pw_row(ws.tmp.p, kL2, n_[l], np_[l], pw_[l].data(), pb_[l].data(), np_[l + 1], dst,
                       np_[l + 1]);
        }
    }
    if (st) {  // the readout's per-channel contributions of this image
        Moments& m = st->total[4];
        std::vector<double> c(m.n, 0.0);
        for (int p = 0; p < kL2 * kL2; ++p)
            for (int j = 0; j < m.n; ++j)
                c[j] += double(ws.l4.p[size_t(p) * np_[4] + j]) * readout_[size_t(p) * np_[4] + j];
        for (int j = 0; j < m.n; ++j) {
            m.sum[j] += c[j];
            for (int k = j; k < m.n; ++k) m.gram[size_t(j) * m.n + k] += c[j] * c[k];
        }
        m.count += 1;
    }
    return k_->dot(ws.l4.p, readout_.data(), std::ptrdiff_t(kL2) * kL2 * np_[4]) + readout_bias_;
}

int64_t Engine::moments(const ImageBatch& b, std::array<Moments, 5>& out) {
    std::lock_guard<std::mutex> lock(call_mu_);
    const int T = pool_.size();
    std::vector<std::unique_ptr<StatsAcc>> acc;
    for (int t = 0; t < T; ++t) acc.emplace_back(new StatsAcc(n_, np_));
    std::atomic<int64_t> next{0}, first_bad{-1};
    pool_.run(T, [&](int t) {
        Workspace& ws = *ws_[t];
        int64_t positions[4] = {kL1 * kL1, kL2 * kL2, kL2 * kL2, kL2 * kL2};
        for (int64_t i; (i = next.fetch_add(1)) < b.count;) {
            ws.bad = false;
            fill_input(ws, b, i, 0, kImg);
            layers01(ws, 0, kL1, ws.l1.p, acc[t].get());
            layers234(ws, acc[t].get());
            acc[t]->flush(np_, positions);
            if (ws.bad) {
                int64_t cur = first_bad.load();
                while ((cur < 0 || i < cur) && !first_bad.compare_exchange_weak(cur, i)) {
                }
            }
        }
    });
    // Sum the threads' totals and mirror the upper triangles.
    for (int l = 0; l < 5; ++l) {
        out[l] = acc[0]->total[l];
        for (int t = 1; t < T; ++t) {
            const Moments& m = acc[t]->total[l];
            out[l].count += m.count;
            for (size_t j = 0; j < m.sum.size(); ++j) out[l].sum[j] += m.sum[j];
            for (size_t j = 0; j < m.gram.size(); ++j) out[l].gram[j] += m.gram[j];
        }
        const int n = out[l].n;
        for (int j = 0; j < n; ++j)
            for (int k = 0; k < j; ++k) out[l].gram[size_t(j) * n + k] = out[l].gram[size_t(k) * n + j];
    }
    return first_bad.load();
}

int64_t Engine::predict(const ImageBatch& b, float* out) {
    std::lock_guard<std::mutex> lock(call_mu_);
    const int T = pool_.size();
    for (auto& w : ws_) w->bad = false;
    std::atomic<int64_t> first_bad{-1};
    auto note_bad = [&](int64_t i) {
        int64_t cur = first_bad.load();
        while ((cur < 0 || i < cur) && !first_bad.compare_exchange_weak(cur, i)) {
        }
    };

    // Whole images per thread while there are at least T left ...
    const int64_t whole = b.count - b.count % T;
    if (whole > 0) {
        std::atomic<int64_t> next{0};
        pool_.run(T, [&](int t) {
            Workspace& ws = *ws_[t];
            for (int64_t i; (i = next.fetch_add(1)) < whole;) {
                ws.bad = false;
                fill_input(ws, b, i, 0, kImg);
                layers01(ws, 0, kL1, ws.l1.p);
                out[i] = layers234(ws);
                if (ws.bad) note_bad(i);
            }
        });
    }
    // ... then each remaining image split into bands of layer-1 rows across the threads.
    for (int64_t i = whole; i < b.count; ++i) {
        for (auto& w : ws_) w->bad = false;
        pool_.run(T, [&](int t) {
            Workspace& ws = *ws_[t];
            const int r0 = kL1 * t / T, r1 = kL1 * (t + 1) / T;
            if (r0 == r1) return;
            const auto rows = l0_rows(r0, r1);
            fill_input(ws, b, i, std::max(0, rows[0] - 2), std::min(kImg, rows[1] + 3));
            layers01(ws, r0, r1, ws_[0]->l1.p);
        });
        out[i] = layers234(*ws_[0]);
        for (auto& w : ws_)
            if (w->bad) note_bad(i);
    }
    return first_bad.load();
}

}  // namespace cc
