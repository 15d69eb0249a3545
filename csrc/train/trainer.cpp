#include "trainer.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <stdexcept>

#include "../engine/engine.hpp"
#include "../engine/thread_pool.hpp"

namespace cc {
namespace train {

namespace {
constexpr int kSize[5] = {112, 56, 28, 28, 28};  // output map size of each layer
constexpr int kStride[5] = {1, 2, 2, 1, 1};
constexpr int kPad[5] = {2, 1, 1, 2, 2};          // TF 'same': stride 2 pads 1 before, 2 after
constexpr int kPadded = 116;                      // layer-0 input with its 2-pixel border
constexpr int kK0 = 75;                           // layer-0 patch length (ky, kx, ci)
constexpr int kK0p = 80;                          // ... padded to a multiple of every width
constexpr int kBandPixels = 112;                  // pixels per band of rows
constexpr int kRing = 8;                          // rows of layer 0's maps held by layer 1

constexpr int64_t kReadoutBlock = 8;              // images per readout product

int round_up(int v, int w) { return (v + w - 1) / w * w; }
int64_t blocks(int64_t n, int64_t size) { return (n + size - 1) / size; }
int param_base(int l) { return 4 + 5 * (l - 1); }  // first of layer l's (1..4) five arrays
}  // namespace

const TrainKernels* select_train_kernels(const std::string& isa) {
    const std::string name = select_kernels(isa)->name;  // the engine's CPU detection decides
    const TrainKernels* t = name == "avx512" ? train_kernels_avx512()
                            : name == "avx2"   ? train_kernels_avx2()
                            : name == "emu512" ? train_kernels_emu512()
                            : name == "sse2"   ? train_kernels_sse2()
                                               : train_kernels_reference();
    if (!t) throw std::runtime_error("no training kernels for isa '" + name + "' in this build");
    return t;
}

std::array<int64_t, kParams> param_sizes(const std::array<int, 5>& n, int outputs) {
    std::array<int64_t, kParams> s{};
    s[0] = int64_t(n[0]) * kK0;
    s[1] = s[2] = s[3] = n[0];
    for (int l = 1; l < 5; ++l) {
        const int b = param_base(l);
        s[b] = int64_t(n[l - 1]) * 25;
        s[b + 1] = int64_t(n[l]) * n[l - 1];
        s[b + 2] = s[b + 3] = s[b + 4] = n[l];
    }
    s[24] = int64_t(outputs) * 28 * 28 * n[4];
    s[25] = outputs;
    return s;
}

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

struct Impl {
    std::array<int, 5> n;
    int outputs;
    const TrainKernels* k;
    ThreadPool pool;
    std::mutex mu;       // one pass at a time (the pool is not re-entrant)
    std::mutex free_mu;  // guards `free`
    std::vector<std::unique_ptr<Workspace>> free;

    Impl(std::array<int, 5> n_, int outputs_, int threads, const TrainKernels* k_)
        : n(n_), outputs(outputs_), k(k_), pool(threads) {}

    // fn(thread, image) over all images, images handed out in order.
    void for_images(int64_t N, const std::function<void(int, int64_t)>& fn) {
        std::atomic<int64_t> next{0};
        const int T = int(std::min<int64_t>(pool.size(), N));
        pool.run(T, [&](int tid) {
            for (int64_t i; (i = next.fetch_add(1)) < N;) fn(tid, i);
        });
    }

    std::unique_ptr<Workspace> take(int64_t N, const std::array<int, 5>& cp) {
        std::lock_guard<std::mutex> lock(free_mu);
        for (auto it = free.begin(); it != free.end(); ++it)
            if ((*it)->N == N && (*it)->cp == cp) {
                auto ws = std::move(*it);
                free.erase(it);
                return ws;
            }
        return nullptr;
    }
    void give_back(std::unique_ptr<Workspace> ws) {
        std::lock_guard<std::mutex> lock(free_mu);
        free.push_back(std::move(ws));
        if (free.size() > 2) free.erase(free.begin());
    }
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

Tape::~Tape() {
    if (s_ && s_->ws) s_->impl->give_back(std::move(s_->ws));
}
int64_t Tape::count() const { return s_->N; }
int Tape::outputs() const { return s_->K; }

Trainer::Trainer(std::array<int, 5> n, int outputs, int threads, const TrainKernels* k) {
    for (int v : n)
        if (v < 1) throw std::invalid_argument("filter counts must all be >= 1");
    if (outputs < 1) throw std::invalid_argument("outputs must be >= 1");
    if (threads < 1) throw std::invalid_argument("threads must be >= 1");
    impl_ = std::make_shared<Impl>(n, outputs, threads, k);
}
Trainer::~Trainer() = default;
const std::array<int, 5>& Trainer::filters() const { return impl_->n; }
int Trainer::outputs() const { return impl_->outputs; }
int Trainer::threads() const { return impl_->pool.size(); }
const char* Trainer::isa() const { return impl_->k->name; }

namespace {

void pack(Tape::State& s, const std::array<int, 5>& n, const std::array<const float*, kParams>& P) {
    const auto& act = s.cfg.active;
    const int cp0 = s.cp[0];
    s.w0T.assign(size_t(kK0) * cp0, 0.0f);
    s.w0p.assign(size_t(s.c[0]) * kK0p, 0.0f);
    for (int cj = 0; cj < s.c[0]; ++cj) {
        const int j = act[0][cj];
        for (int ci = 0; ci < 3; ++ci)
            for (int ky = 0; ky < 5; ++ky)
                for (int kx = 0; kx < 5; ++kx) {
                    const float v = P[0][((j * 3 + ci) * 5 + ky) * 5 + kx];
                    const int k = ky * 15 + kx * 3 + ci;
                    s.w0T[size_t(k) * cp0 + cj] = v;
                    s.w0p[size_t(cj) * kK0p + k] = v;
                }
    }
    s.b0.assign(cp0, 0.0f);
    for (int cj = 0; cj < s.c[0]; ++cj) s.b0[cj] = P[1][act[0][cj]];
    for (int l = 0; l < 5; ++l) {
        const float* g = l == 0 ? P[2] : P[param_base(l) + 3];
        const float* b = l == 0 ? P[3] : P[param_base(l) + 4];
        s.gamma[l].assign(s.cp[l], 0.0f);
        s.beta[l].assign(s.cp[l], 0.0f);
        for (int cj = 0; cj < s.c[l]; ++cj) {
            s.gamma[l][cj] = g[act[l][cj]];
            s.beta[l][cj] = b[act[l][cj]];
        }
    }
    for (int l = 1; l < 5; ++l) {
        const int base = param_base(l), ci_n = s.c[l - 1], cpi = s.cp[l - 1], co_n = s.c[l], cpo = s.cp[l];
        s.dw[l].assign(size_t(25) * cpi, 0.0f);
        for (int cj = 0; cj < ci_n; ++cj)
            for (int t = 0; t < 25; ++t) s.dw[l][size_t(t) * cpi + cj] = P[base][act[l - 1][cj] * 25 + t];
        s.pwT[l].assign(size_t(ci_n) * cpo, 0.0f);
        s.pwB[l].assign(size_t(co_n) * cpi, 0.0f);
        for (int co = 0; co < co_n; ++co)
            for (int ci = 0; ci < ci_n; ++ci) {
                const float v = P[base + 1][int64_t(act[l][co]) * n[l - 1] + act[l - 1][ci]];
                s.pwT[l][size_t(ci) * cpo + co] = v;
                s.pwB[l][size_t(co) * cpi + ci] = v;
            }
        s.pb[l].assign(cpo, 0.0f);
        for (int co = 0; co < co_n; ++co) s.pb[l][co] = P[base + 2][act[l][co]];
    }
    const int64_t rsize = int64_t(28 * 28) * s.cp[4], D = int64_t(28 * 28) * n[4];
    s.R.assign(size_t(s.K) * rsize, 0.0f);
    s.RT.assign(size_t(rsize) * s.Kp, 0.0f);
    for (int k = 0; k < s.K; ++k)
        for (int hw = 0; hw < 28 * 28; ++hw)
            for (int cj = 0; cj < s.c[4]; ++cj) {
                const float v = P[24][k * D + int64_t(hw) * n[4] + act[4][cj]];
                s.R[k * rsize + int64_t(hw) * s.cp[4] + cj] = v;
                s.RT[(int64_t(hw) * s.cp[4] + cj) * s.Kp + k] = v;
            }
    s.rb.assign(P[25], P[25] + s.K);

    int64_t off = 0;
    s.off_w0T = off; off += int64_t(kK0) * cp0;
    s.off_b0 = off; off += cp0;
    for (int l = 1; l < 5; ++l) {
        s.off_dw[l] = off; off += int64_t(25) * s.cp[l - 1];
        s.off_pwT[l] = off; off += int64_t(s.c[l - 1]) * s.cp[l];
        s.off_pb[l] = off; off += s.cp[l];
    }
    s.acc_size = off;
}

std::unique_ptr<Workspace> make_workspace(int64_t N, const std::array<int, 5>& cp, int threads) {
    auto ws = std::make_unique<Workspace>();
    ws->N = N;
    ws->cp = cp;
    ws->xpad.assign(size_t(N) * kPadded * kPadded * 3, 0.0f);
    int cmax = 0;
    for (int l = 0; l < 5; ++l) {
        const size_t sz = size_t(N) * kSize[l] * kSize[l] * cp[l];
        ws->z[l].assign(sz, 0.0f);
        if (l > 0) ws->a[l].assign(sz, 0.0f);
        cmax = std::max(cmax, cp[l]);
    }
    ws->scratch.resize(threads);
    for (auto& sc : ws->scratch) {
        sc.patches.assign(size_t(kBandPixels) * kK0, 0.0f);
        sc.dband.assign(size_t(kBandPixels) * cmax, 0.0f);
        sc.dzband.assign(size_t(kBandPixels) * cmax, 0.0f);
        sc.ddband.assign(size_t(kBandPixels) * cmax, 0.0f);
        sc.ring_a.assign(size_t(kRing) * 112 * cp[0], 0.0f);
        sc.ring_da.assign(size_t(kRing) * 112 * cp[0], 0.0f);
        sc.fa.assign(cmax, 0.0f);
        sc.fb.assign(cmax, 0.0f);
        sc.sa.assign(cmax, 0.0);
        sc.sb.assign(cmax, 0.0);
    }
    return ws;
}

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

InputRows input_rows(Tape::State& s, Workspace& ws, Scratch& sc, int l, int64_t i) {
    if (l == 1)
        return InputRows{*s.impl->k, s.map(ws.z[0], 0, i), 1, s.cp[0], sc.ring_a.data(), s.scale[0].data(),
                         s.shift[0].data()};
    return InputRows{*s.impl->k, s.map(ws.a[l - 1], l - 1, i), l, s.cp[l - 1]};
}

// Layer-0 patch rows: patches[x*75 + ky*15 + j] = xpad[(y+ky)*116*3 + 3x + j].
void im2col(const float* xpad, int y, float* patches) {
    for (int x = 0; x < 112; ++x)
        for (int ky = 0; ky < 5; ++ky) {
            const float* src = xpad + (int64_t(y + ky) * kPadded + x) * 3;
            std::copy(src, src + 15, patches + x * kK0 + ky * 15);
        }
}

void zero_stats(std::vector<Scratch>& scratch) {
    for (auto& sc : scratch) {
        std::fill(sc.sa.begin(), sc.sa.end(), 0.0);
        std::fill(sc.sb.begin(), sc.sb.end(), 0.0);
    }
}

// Adds a band's float statistics into the thread's double sums and clears them.
void flush_stats(Scratch& sc, int C) {
    for (int c = 0; c < C; ++c) {
        sc.sa[c] += sc.fa[c];
        sc.sb[c] += sc.fb[c];
        sc.fa[c] = sc.fb[c] = 0.0f;
    }
}

}  // namespace

std::unique_ptr<Tape> Trainer::forward(const float* x, int64_t N, const std::array<const float*, kParams>& params,
                                       const std::array<float*, 10>& running, const StepConfig& cfg,
                                       float* out) {
    Impl& im = *impl_;
    if (N < 1) throw std::invalid_argument("empty batch");
    auto st = std::make_unique<Tape::State>();
    Tape::State& s = *st;
    s.impl = impl_;
    s.cfg = cfg;
    s.N = N;
    for (int l = 0; l < 5; ++l) {
        s.c[l] = int(cfg.active[l].size());
        s.cp[l] = round_up(s.c[l], im.k->width);
    }
    s.K = im.outputs;
    s.Kp = round_up(s.K, im.k->width);
    pack(s, im.n, params);
    std::lock_guard<std::mutex> pass(im.mu);
    s.ws = im.take(N, s.cp);
    if (!s.ws) s.ws = make_workspace(N, s.cp, im.pool.size());
    Workspace& ws = *s.ws;
    const TrainKernels& K = *im.k;

    // Images -> channels-last with a zero border of 2 (the border is never written).
    im.for_images(N, [&](int, int64_t i) {
        float* dst = ws.xpad.data() + i * kPadded * kPadded * 3;
        const float* src = x + i * 3 * 112 * 112;
        for (int y = 0; y < 112; ++y)
            for (int xx = 0; xx < 112; ++xx)
                for (int ci = 0; ci < 3; ++ci)
                    dst[(int64_t(y + 2) * kPadded + xx + 2) * 3 + ci] = src[(int64_t(ci) * 112 + y) * 112 + xx];
    });

    for (int l = 0; l < 5; ++l) {
        const int H = kSize[l], cpo = s.cp[l];
        zero_stats(ws.scratch);
        // Convolution, bias and batch statistics, one band of rows at a time.
        if (l == 0) {
            im.for_images(N, [&](int tid, int64_t i) {
                Scratch& sc = ws.scratch[tid];
                for (int y = 0; y < H; ++y) {
                    im2col(ws.xpad.data() + i * kPadded * kPadded * 3, y, sc.patches.data());
                    float* z = s.map(ws.z[0], 0, i) + int64_t(y) * H * cpo;
                    K.gemm(H, cpo, kK0, sc.patches.data(), kK0, 1, s.w0T.data(), cpo, z, cpo, false);
                    K.bias_stats(z, H, cpo, s.b0.data(), sc.fa.data(), sc.fb.data());
                    flush_stats(sc, cpo);
                }
            });
        } else {
            const int cpi = s.cp[l - 1], rows = std::max(1, kBandPixels / H);
            im.for_images(N, [&](int tid, int64_t i) {
                Scratch& sc = ws.scratch[tid];
                InputRows in = input_rows(s, ws, sc, l, i);
                for (int y0 = 0; y0 < H; y0 += rows) {
                    const int nr = std::min(rows, H - y0), P = nr * H;
                    for (int r = 0; r < nr; ++r) {
                        const float* ir[5];
                        in.rows_for(y0 + r, ir);
                        K.dw_row(ir, kSize[l - 1], kPad[l], kStride[l], H, s.dw[l].data(), cpi,
                                 sc.dband.data() + int64_t(r) * H * cpi);
                    }
                    float* z = s.map(ws.z[l], l, i) + int64_t(y0) * H * cpo;
                    K.gemm(P, cpo, s.c[l - 1], sc.dband.data(), cpi, 1, s.pwT[l].data(), cpo, z, cpo, false);
                    K.bias_stats(z, P, cpo, s.pb[l].data(), sc.fa.data(), sc.fb.data());
                    flush_stats(sc, cpo);
                }
            });
        }
        // Batchnorm statistics: the batch's (training) or the running ones.
        const double M = double(N) * H * H;
        s.mu[l].assign(cpo, 0.0f);
        s.rstd[l].assign(cpo, 0.0f);
        std::vector<float>& scale = s.scale[l];
        std::vector<float>& shift = s.shift[l];
        scale.assign(cpo, 0.0f);
        shift.assign(cpo, 0.0f);
        float* rm = running[2 * l];
        float* rv = running[2 * l + 1];
        for (int cj = 0; cj < s.c[l]; ++cj) {
            const int j = cfg.active[l][cj];
            double mean, var;
            if (cfg.training) {
                double sum = 0, sumsq = 0;
                for (auto& sc : ws.scratch) { sum += sc.sa[cj]; sumsq += sc.sb[cj]; }
                mean = sum / M;
                var = std::max(0.0, sumsq / M - mean * mean);
                const double m = cfg.momentum;
                rm[j] = float((1 - m) * rm[j] + m * mean);
                rv[j] = float((1 - m) * rv[j] + m * var * (M > 1 ? M / (M - 1) : 1.0));
            } else {
                mean = rm[j];
                var = rv[j];
            }
            const double r = 1.0 / std::sqrt(var + cfg.eps[l]);
            s.mu[l][cj] = float(mean);
            s.rstd[l][cj] = float(r);
            scale[cj] = float(s.gamma[l][cj] * r);
            shift[cj] = float(s.beta[l][cj] - mean * s.gamma[l][cj] * r);
        }
        if (l > 0)  // layer 0's activations are recomputed where needed (InputRows)
            im.for_images(N, [&](int, int64_t i) {
                K.bn_relu(s.map(ws.z[l], l, i), H * H, cpo, scale.data(), shift.data(), s.map(ws.a[l], l, i));
            });
    }
    // Readout over the (H, W, C) map: out (N, K) = A (N, rsize) RT, in blocks of images.
    const int64_t rsize = int64_t(28 * 28) * s.cp[4];
    std::vector<float> outp(size_t(N) * s.Kp);
    im.for_images(blocks(N, kReadoutBlock), [&](int, int64_t b) {
        const int64_t i0 = b * kReadoutBlock, m = std::min<int64_t>(kReadoutBlock, N - i0);
        K.gemm(int(m), s.Kp, int(rsize), s.map(ws.a[4], 4, i0), rsize, 1, s.RT.data(), s.Kp,
               outp.data() + i0 * s.Kp, s.Kp, false);
    });
    for (int64_t i = 0; i < N; ++i)
        for (int k = 0; k < s.K; ++k) out[i * s.K + k] = outp[i * s.Kp + k] + s.rb[k];
    auto tape = std::unique_ptr<Tape>(new Tape());
    tape->s_ = std::move(st);
    return tape;
}

void Tape::backward(const float* gout, const std::array<float*, kParams>* grads, float* dx) {
    if (!s_->ws || s_->used) throw std::runtime_error("backward was already run on this forward pass");
    s_->used = true;
    State& s = *s_;
    Impl& im = *s.impl;
    std::lock_guard<std::mutex> pass(im.mu);
    Workspace& ws = *s.ws;
    const TrainKernels& K = *im.k;
    const int64_t N = s.N;
    const auto& n = im.n;
    const auto& act = s.cfg.active;
    const bool want = grads != nullptr;  // else only dx: skip the weight-gradient products

    for (int l = 0; l < 5; ++l)
        if (ws.da[l].size() != ws.z[l].size()) ws.da[l].assign(ws.z[l].size(), 0.0f);
    const int64_t rsize = int64_t(28 * 28) * s.cp[4];
    for (auto& sc : ws.scratch) {
        sc.img_acc.assign(s.acc_size, 0.0f);
        sc.acc.assign(s.acc_size, 0.0);
        if (dx) {
            sc.dpatch.assign(size_t(kBandPixels) * kK0p, 0.0f);
            sc.dxpad.assign(size_t(kPadded) * kPadded * 3, 0.0f);
        }
    }
    auto flush_image = [&](Scratch& sc) {
        for (int64_t k = 0; k < s.acc_size; ++k) {
            sc.acc[k] += sc.img_acc[k];
            sc.img_acc[k] = 0.0f;
        }
    };

    // Readout: the gradient of layer 4's map, da (N, rsize) = G (N, K) R, in blocks of images;
    // its own weights' gradient dR (K, rsize) = G^T A, in blocks of columns.
    const int KK = s.K;
    im.for_images(blocks(N, kReadoutBlock), [&](int, int64_t b) {
        const int64_t i0 = b * kReadoutBlock, m = std::min<int64_t>(kReadoutBlock, N - i0);
        K.gemm(int(m), int(rsize), KK, gout + i0 * KK, KK, 1, s.R.data(), rsize, s.map(ws.da[4], 4, i0), rsize,
               false);
    });
    std::vector<float> dR;
    if (want) {
        dR.assign(size_t(KK) * rsize, 0.0f);
        const int64_t cols = round_up(int(std::min<int64_t>(rsize, 1024)), K.width);
        im.for_images(blocks(rsize, cols), [&](int, int64_t b) {
            const int64_t c0 = b * cols, w = std::min(cols, rsize - c0);
            K.gemm(KK, int(w), int(N), gout, 1, KK, s.map(ws.a[4], 4, 0) + c0, rsize, dR.data() + c0, rsize, false);
        });
    }

    std::array<std::vector<float>, 5> dgamma, dbeta;
    std::vector<float> k1, k2, k3;
    for (int l = 4; l >= 0; --l) {
        const int H = kSize[l], cpo = s.cp[l], rows = std::max(1, kBandPixels / H);
        // Pass A: the batch sums the batchnorm backward needs (and its own gradients). Layer
        // 0's are summed by layer 1's pass B as its gradient rows complete.
        if (l > 0) {
            zero_stats(ws.scratch);
            im.for_images(N, [&](int tid, int64_t i) {
                Scratch& sc = ws.scratch[tid];
                for (int y0 = 0; y0 < H; y0 += rows) {
                    const int64_t off = int64_t(y0) * H * cpo;
                    const int P = std::min(rows, H - y0) * H;
                    K.bn_back_stats(s.map(ws.da[l], l, i) + off, s.map(ws.z[l], l, i) + off, P, cpo,
                                    s.scale[l].data(), s.shift[l].data(), s.mu[l].data(), s.rstd[l].data(),
                                    sc.fa.data(), sc.fb.data());
                    flush_stats(sc, cpo);
                }
            });
        }
        const double M = double(N) * H * H;
        dgamma[l].assign(cpo, 0.0f);
        dbeta[l].assign(cpo, 0.0f);
        k1.assign(cpo, 0.0f);
        k2.assign(cpo, 0.0f);
        k3.assign(cpo, 0.0f);
        for (int cj = 0; cj < s.c[l]; ++cj) {
            double sg = 0, sgx = 0;
            for (auto& sc : ws.scratch) { sg += sc.sa[cj]; sgx += sc.sb[cj]; }
            dbeta[l][cj] = float(sg);
            dgamma[l][cj] = float(sgx);
            const double a1 = double(s.gamma[l][cj]) * s.rstd[l][cj];
            k1[cj] = float(a1);
            if (s.cfg.training) {  // dz = a1 * (g - mean(g) - xhat * mean(g * xhat))
                const double mg = sg / M, mgx = sgx / M, r = s.rstd[l][cj];
                k2[cj] = float(-a1 * r * mgx);
                k3[cj] = float(-a1 * mg + a1 * r * mgx * s.mu[l][cj]);
            }
        }
        // Pass B: the convolution's gradients, band by band; dz is never stored.
        if (l >= 1) {
            const int cpi = s.cp[l - 1], Hin = kSize[l - 1];
            const int64_t rs = int64_t(Hin) * cpi;
            if (l == 1) zero_stats(ws.scratch);  // layer 0's pass A happens here
            im.for_images(N, [&](int tid, int64_t i) {
                Scratch& sc = ws.scratch[tid];
                InputRows in = input_rows(s, ws, sc, l, i);
                float* din = s.map(ws.da[l - 1], l - 1, i);
                // Layer 1 gathers layer 0's gradient rows in a ring and writes each row out once,
                // with its batchnorm sums, when no later output row reads it.
                const bool ring = l == 1;
                int zeroed = 0, done = 0;
                auto grad_row = [&](int yi) -> float* {
                    if (!ring) return din + yi * rs;
                    for (; zeroed <= yi; ++zeroed)
                        std::fill_n(sc.ring_da.data() + (zeroed % kRing) * rs, rs, 0.0f);
                    return sc.ring_da.data() + (yi % kRing) * rs;
                };
                auto finish_rows = [&](int upto) {
                    for (; done <= upto; ++done) {
                        const float* src = sc.ring_da.data() + (done % kRing) * rs;
                        const float* z0 = s.map(ws.z[0], 0, i) + done * rs;
                        K.bn_back_stats(src, z0, Hin, cpi, s.scale[0].data(), s.shift[0].data(), s.mu[0].data(),
                                        s.rstd[0].data(), sc.fa.data(), sc.fb.data());
                        flush_stats(sc, cpi);
                        std::copy_n(src, rs, din + done * rs);
                    }
                };
                if (!ring) std::fill(din, din + int64_t(Hin) * rs, 0.0f);
                for (int y0 = 0; y0 < H; y0 += rows) {
                    const int nr = std::min(rows, H - y0), P = nr * H;
                    const int64_t off = int64_t(y0) * H * cpo;
                    K.bn_back(s.map(ws.da[l], l, i) + off, s.map(ws.z[l], l, i) + off, P, cpo, s.scale[l].data(),
                              s.shift[l].data(), k1.data(), k2.data(), k3.data(), sc.dzband.data(),
                              sc.img_acc.data() + s.off_pb[l]);
                    for (int r = 0; r < nr; ++r) {  // recompute the depthwise output
                        const float* ir[5];
                        in.rows_for(y0 + r, ir);
                        K.dw_row(ir, Hin, kPad[l], kStride[l], H, s.dw[l].data(), cpi,
                                 sc.dband.data() + int64_t(r) * H * cpi);
                    }
                    if (want)
                        K.gemm(s.c[l - 1], cpo, P, sc.dband.data(), 1, cpi, sc.dzband.data(), cpo,
                               sc.img_acc.data() + s.off_pwT[l], cpo, true);
                    K.gemm(P, cpi, s.c[l], sc.dzband.data(), cpo, 1, s.pwB[l].data(), cpi, sc.ddband.data(),
                           cpi, false);
                    for (int r = 0; r < nr; ++r) {
                        const float* ir[5];
                        float* dr[5];
                        in.rows_for(y0 + r, ir);
                        for (int ky = 0; ky < 5; ++ky) {
                            const int yi = kStride[l] * (y0 + r) + ky - kPad[l];
                            dr[ky] = ir[ky] ? grad_row(yi) : nullptr;
                        }
                        K.dw_row_backward(ir, dr, Hin, kPad[l], kStride[l], H, s.dw[l].data(),
                                          sc.ddband.data() + int64_t(r) * H * cpi, cpi,
                                          sc.img_acc.data() + s.off_dw[l]);
                    }
                    // Rows no later output row reads: r + pad < stride * (last output row + 1).
                    if (ring) finish_rows(y0 + nr >= H ? Hin - 1 : kStride[l] * (y0 + nr) - kPad[l] - 1);
                }
                flush_image(sc);
            });
        } else {
            im.for_images(N, [&](int tid, int64_t i) {
                Scratch& sc = ws.scratch[tid];
                const float* xpad = ws.xpad.data() + i * kPadded * kPadded * 3;
                if (dx) std::fill(sc.dxpad.begin(), sc.dxpad.end(), 0.0f);
                for (int y = 0; y < H; ++y) {
                    const int64_t off = int64_t(y) * H * cpo;
                    K.bn_back(s.map(ws.da[0], 0, i) + off, s.map(ws.z[0], 0, i) + off, H, cpo, s.scale[0].data(),
                              s.shift[0].data(), k1.data(), k2.data(), k3.data(), sc.dzband.data(),
                              sc.img_acc.data() + s.off_b0);
                    if (want) {
                        im2col(xpad, y, sc.patches.data());
                        K.gemm(kK0, cpo, H, sc.patches.data(), 1, kK0, sc.dzband.data(), cpo,
                               sc.img_acc.data() + s.off_w0T, cpo, true);
                    }
                    if (dx) {
                        K.gemm(H, kK0p, s.c[0], sc.dzband.data(), cpo, 1, s.w0p.data(), kK0p, sc.dpatch.data(),
                               kK0p, false);
                        for (int xx = 0; xx < H; ++xx)
                            for (int ky = 0; ky < 5; ++ky) {
                                float* d = sc.dxpad.data() + (int64_t(y + ky) * kPadded + xx) * 3;
                                const float* g = sc.dpatch.data() + xx * kK0p + ky * 15;
                                for (int j = 0; j < 15; ++j) d[j] += g[j];
                            }
                    }
                }
                if (dx) {
                    float* dst = dx + i * 3 * 112 * 112;
                    for (int ci = 0; ci < 3; ++ci)
                        for (int y = 0; y < 112; ++y)
                            for (int xx = 0; xx < 112; ++xx)
                                dst[(int64_t(ci) * 112 + y) * 112 + xx] =
                                    sc.dxpad[(int64_t(y + 2) * kPadded + xx + 2) * 3 + ci];
                }
                flush_image(sc);
            });
        }
    }

    if (!want) {
        im.give_back(std::move(s.ws));
        return;
    }
    // Sum the threads' accumulators and scatter into PyTorch's layouts (zeros where masked).
    const auto& G = *grads;
    std::vector<double> acc(s.acc_size, 0.0);
    for (auto& sc : ws.scratch)
        for (size_t k = 0; k < acc.size(); ++k) acc[k] += sc.acc[k];
    // A bias added before a training-mode batchnorm is subtracted again with the batch mean:
    // its gradient is exactly zero (the sum of dz is only rounding noise).
    auto bias_grad = [&](double sum) { return s.cfg.training ? 0.0f : float(sum); };
    const auto sizes = param_sizes(n, KK);
    for (int p = 0; p < kParams; ++p) std::fill(G[p], G[p] + sizes[p], 0.0f);
    for (int cj = 0; cj < s.c[0]; ++cj) {
        const int j = act[0][cj];
        for (int ci = 0; ci < 3; ++ci)
            for (int ky = 0; ky < 5; ++ky)
                for (int kx = 0; kx < 5; ++kx)
                    G[0][((j * 3 + ci) * 5 + ky) * 5 + kx] =
                        float(acc[s.off_w0T + int64_t(ky * 15 + kx * 3 + ci) * s.cp[0] + cj]);
        G[1][j] = bias_grad(acc[s.off_b0 + cj]);
    }
    for (int l = 0; l < 5; ++l) {
        float* dg = l == 0 ? G[2] : G[param_base(l) + 3];
        float* db = l == 0 ? G[3] : G[param_base(l) + 4];
        for (int cj = 0; cj < s.c[l]; ++cj) {
            dg[act[l][cj]] = dgamma[l][cj];
            db[act[l][cj]] = dbeta[l][cj];
        }
    }
    for (int l = 1; l < 5; ++l) {
        const int base = param_base(l);
        for (int ci = 0; ci < s.c[l - 1]; ++ci) {
            const int ji = act[l - 1][ci];
            for (int t = 0; t < 25; ++t) G[base][ji * 25 + t] = float(acc[s.off_dw[l] + int64_t(t) * s.cp[l - 1] + ci]);
            for (int co = 0; co < s.c[l]; ++co)
                G[base + 1][int64_t(act[l][co]) * n[l - 1] + ji] =
                    float(acc[s.off_pwT[l] + int64_t(ci) * s.cp[l] + co]);
        }
        for (int co = 0; co < s.c[l]; ++co) G[base + 2][act[l][co]] = bias_grad(acc[s.off_pb[l] + co]);
    }
    const int64_t D = int64_t(28 * 28) * n[4];
    for (int k = 0; k < KK; ++k) {
        for (int hw = 0; hw < 28 * 28; ++hw)
            for (int cj = 0; cj < s.c[4]; ++cj)
                G[24][k * D + int64_t(hw) * n[4] + act[4][cj]] = dR[k * rsize + int64_t(hw) * s.cp[4] + cj];
        double sum = 0;
        for (int64_t i = 0; i < N; ++i) sum += gout[i * KK + k];
        G[25][k] = float(sum);
    }
    // The feature maps are no longer needed: hand the workspace back for the next step.
    im.give_back(std::move(s.ws));
}

}  // namespace train
}  // namespace cc
