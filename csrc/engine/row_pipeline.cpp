// The single-model row pipeline: input fill, layers 0-1 ring, layers 2-4 + readout, predict.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#include "workspace.hpp"

namespace cc {
using namespace detail;

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
                float acc = 0.0f, top = 0.0f;  // v*0 is 0 for finite v and NaN otherwise
                if (b.sx == 3 && b.sc == 1) {
                    for (int j = 0; j < kImg * 3; ++j) {
                        dst[j] = src[j];
                        acc += src[j] * 0.0f;
                        top = std::max(top, std::fabs(src[j]));
                    }
                } else {
                    for (int x = 0; x < kImg; ++x)
                        for (int c = 0; c < 3; ++c) {
                            const float v = src[x * b.sx + c * b.sc];
                            dst[x * 3 + c] = v;
                            acc += v * 0.0f;
                            top = std::max(top, std::fabs(v));
                        }
                }
                bad |= !std::isfinite(acc) || top > kMaxInput;
                break;
            }
            case DType::f64: {
                const double* src = static_cast<const double*>(b.data) + base;
                for (int x = 0; x < kImg; ++x)
                    for (int c = 0; c < 3; ++c) {
                        const double v = src[x * b.sx + c * b.sc];
                        dst[x * 3 + c] = float(v);
                        bad |= !(std::fabs(v) <= double(kMaxInput));  // also NaN and inf
                    }
                break;
            }
        }
    }
    ws.bad |= bad;
}

// The image rows that layer-0 rows [y, y + band) read and that `run` has not filled yet.
void Engine::fill_new_rows(Workspace& ws, const ImageBatch& b, int64_t i, int y, int band, const L0Run& run) const {
    int f0 = std::max(0, y - 2), f1 = std::min(kImg, y + band + 2);
    if (run.hi >= run.lo) {  // image rows [lo-2, hi+2] are in place already
        if (y > run.hi) f0 = std::max(f0, run.hi + 3);
        else f1 = std::min(f1, run.lo - 2);
    }
    if (f0 < f1) fill_input(ws, b, i, f0, f1);
}

// The Winograd input tiles of every band of image i into U (kImageTiles floats).
void Engine::transform_input(Workspace& ws, const ImageBatch& b, int64_t i, float* U) const {
    fill_input(ws, b, i, 0, kImg);
    for (int band = 0; band < kBands; ++band)
        k_->wino0_input(ws.in.p + 4 * band * kInStride, kInStride, kImg, U + band * kBandTiles, ws.wino.p);
}

void Engine::layer1_row(Workspace& ws, const ImageBatch& b, int64_t i, int r, bool up, L0Run& run, float* l1,
                        StatsAcc* st) const {
    const int c0 = np_[0], c1 = np_[1];
    const size_t ring_row = size_t(kL0PadW) * c0;
    auto slot = [&](int y) { return ws.ring.p + size_t(y % kRingRows) * ring_row; };
    // Row r reads layer-0 rows 2r-1 .. 2r+3 ('same' padding: 1 before, 2 after); the Winograd
    // path produces aligned bands of 4 rows. The ring's 8 rows hold those 5 and one band more,
    // in either direction.
    const int band = winograd_ ? 4 : 1;
    const int need_lo = std::max(0, 2 * r - 1), need_hi = std::min(kImg - 1, 2 * r + 3);
    if (run.hi < run.lo) {  // a new run starts at the band holding its first row, still empty
        run.lo = (up ? need_lo : need_hi) / band * band + (up ? 0 : band);
        run.hi = run.lo - 1;
    }
    auto produce = [&](int y) {  // band [y, y + band) and, first, the image rows it reads
        if (!winograd_) {
            fill_new_rows(ws, b, i, y, band, run);
            k_->conv0_row(ws.in.p + y * kInStride, kInStride, kImg, w0_.data(), b0_.data(), c0, slot(y) + c0);
            return;
        }
        float* out[4] = {slot(y) + c0, slot(y + 1) + c0, slot(y + 2) + c0, slot(y + 3) + c0};
        const float* U = ws.wino_u.p;
        if (ws.shared_u) {
            U = ws.shared_u + (y / 4) * kBandTiles;
        } else {
            fill_new_rows(ws, b, i, y, band, run);
            k_->wino0_input(ws.in.p + y * kInStride, kInStride, kImg, ws.wino_u.p, ws.wino.p);
        }
        k_->wino0_product(U, kImg, wino_v_.data(), b0_.data(), c0, out, ws.wino.p);
    };
    while (run.hi < need_hi) {
        const int y = run.hi + 1;
        produce(y);
        run.lo = std::min(run.lo, y);
        run.hi = y + band - 1;
    }
    while (run.lo > need_lo) {
        const int y = run.lo - band;
        produce(y);
        run.lo = y;
    }
    const float* rows[5];
    for (int ky = 0; ky < 5; ++ky) {
        const int y = 2 * r - 1 + ky;
        rows[ky] = (y < 0 || y >= kImg) ? ws.zero_row.p : slot(y);
    }
    k_->dw_row(rows, 2, kL1, dw_[0].data(), c0, ws.tmp.p);
    if (st) st->add_depthwise(*k_, 0, ws.tmp.p, kL1, c0);
    k_->pw_row(ws.tmp.p, kL1, n_[0], c0, pw_[0].data(), pb_[0].data(), c1, l1 + (size_t(r + 1) * kL1PadW + 1) * c1, c1);
}

void Engine::layers01(Workspace& ws, const ImageBatch& b, int64_t i, float* l1, StatsAcc* st) const {
    L0Run run;
    for (int r = 0; r < kL1; ++r) layer1_row(ws, b, i, r, true, run, l1, st);
}

// Layer-2 output row r (stride 2 over the 56x56 map, padded 1 before, 2 after) from l1 into
// the interior of l2, through the depthwise scratch row tmp.
void Engine::layer2_row(const float* l1, float* tmp, int r, float* l2, StatsAcc* st) const {
    const float* rows[5];
    for (int ky = 0; ky < 5; ++ky) rows[ky] = l1 + size_t(2 * r + ky) * kL1PadW * np_[1];
    k_->dw_row(rows, 2, kL2, dw_[1].data(), np_[1], tmp);
    if (st) st->add_depthwise(*k_, 1, tmp, kL2, np_[1]);
    k_->pw_row(tmp, kL2, n_[1], np_[1], pw_[1].data(), pb_[1].data(), np_[2],
               l2 + (size_t(r + 2) * kL2PadW + 2) * np_[2], np_[2]);
}

// Layers 2-4 and the readout from this workspace's layer-1 output.
float Engine::layers234(Workspace& ws, StatsAcc* st) const {
    for (int r = 0; r < kL2; ++r) layer2_row(ws.l1.p, ws.tmp.p, r, ws.l2.p, st);
    return layers34(ws, st);
}

// Layers 3-4 and the readout from this workspace's layer-2 output.
float Engine::layers34(Workspace& ws, StatsAcc* st) const {
    const float* rows[5];
    // Layers 3 and 4: stride 1, pad 2.
    for (int l = 2; l < 4; ++l) {
        const float* src = l == 2 ? ws.l2.p : ws.l3.p;
        for (int r = 0; r < kL2; ++r) {
            for (int ky = 0; ky < 5; ++ky) rows[ky] = src + size_t(r + ky) * kL2PadW * np_[l];
            k_->dw_row(rows, 1, kL2, dw_[l].data(), np_[l], ws.tmp.p);
            if (st) st->add_depthwise(*k_, l, ws.tmp.p, kL2, np_[l]);
            float* dst = l == 2 ? ws.l3.p + (size_t(r + 2) * kL2PadW + 2) * np_[3]
                                : ws.l4.p + size_t(r) * kL2 * np_[4];
            k_->pw_row(ws.tmp.p, kL2, n_[l], np_[l], pw_[l].data(), pb_[l].data(), np_[l + 1], dst,
                       np_[l + 1]);
        }
    }
    if (st) st->add_readout(ws.l4.p, readout_.data(), np_[4]);
    return k_->dot(ws.l4.p, readout_.data(), std::ptrdiff_t(kL2) * kL2 * np_[4]) + readout_bias_;
}

float Engine::run_image(Workspace& ws, const ImageBatch& b, int64_t i, bool& bad) const {
    ws.bad = false;
    layers01(ws, b, i, ws.l1.p);
    const float y = layers234(ws);
    bad = ws.bad;
    return y;
}

int64_t Engine::predict(const ImageBatch& b, float* out) {
    std::lock_guard<std::mutex> lock(call_mu_);
    const int T = pool_.size();
    for (auto& w : ws_) w->bad = false;
    std::atomic<int64_t> first_bad{-1};

    // Whole images per thread while there are at least T left ...
    const int64_t whole = b.count - b.count % T;
    if (whole > 0) {
        std::atomic<int64_t> next{0};
        pool_.run_elastic([&](int t) {
            Workspace& ws = *ws_[t];
            for (int64_t i; (i = next.fetch_add(1)) < whole;) {
                bool bad;
                out[i] = run_image(ws, b, i, bad);
                if (bad) note_bad(first_bad, i);
            }
        });
    }
    // ... then each remaining image's layer-1 rows in blocks claimed from both ends: the
    // caller from the top down, the workers from the bottom up, so that each side's layer-0
    // ring runs on from block to block and a late worker only shrinks its share.
    constexpr int kBlock = 2;
    for (int64_t i = whole; i < b.count; ++i) {
        for (auto& w : ws_) w->bad = false;
        std::atomic<uint32_t> rows{uint32_t(kL1)};  // unclaimed rows [top, bottom): top << 16 | bottom
        std::atomic<int> l1_done{0}, next_l2{0};
        pool_.run_elastic([&](int t) {
            Workspace& ws = *ws_[t];
            const bool up = t == 0;
            L0Run run;
            int last = -1;  // this thread's previous block started (down) / ended (up) here
            for (uint32_t s = rows.load();;) {
                const int top = int(s >> 16), bottom = int(s & 0xffff);
                if (top >= bottom) break;
                const int n = std::min(kBlock, bottom - top);
                const uint32_t claimed = up ? uint32_t(top + n) << 16 | uint32_t(bottom)
                                            : uint32_t(top) << 16 | uint32_t(bottom - n);
                if (!rows.compare_exchange_weak(s, claimed)) continue;
                const int r0 = up ? top : bottom - n;
                if ((up ? r0 : r0 + n) != last) run = L0Run{};  // not adjacent: start a new run
                for (int k = 0; k < n; ++k)
                    layer1_row(ws, b, i, up ? r0 + k : r0 + n - 1 - k, up, run, ws_[0]->l1.p, nullptr);
                last = up ? r0 + n : r0;
                l1_done.fetch_add(n, std::memory_order_release);
                s = rows.load();
            }
            // Layer 2 by whoever is here, once every layer-1 row is in place.
            while (l1_done.load(std::memory_order_acquire) < kL1) std::this_thread::yield();
            for (int r; (r = next_l2.fetch_add(1)) < kL2;) layer2_row(ws_[0]->l1.p, ws.tmp.p, r, ws_[0]->l2.p, nullptr);
        });
        out[i] = layers34(*ws_[0]);
        for (auto& w : ws_)
            if (w->bad) note_bad(first_bad, i);
    }
    return first_bad.load();
}

// Whole images per thread (a trunk's features are asked for in large batches).
int64_t Engine::features(const ImageBatch& b, float* out) {
    std::lock_guard<std::mutex> lock(call_mu_);
    std::atomic<int64_t> first_bad{-1}, next{0};
    const size_t cells = size_t(kL2) * kL2, n4 = size_t(n_[4]), np4 = size_t(np_[4]);
    pool_.run_elastic([&](int t) {
        Workspace& ws = *ws_[t];
        for (int64_t i; (i = next.fetch_add(1)) < b.count;) {
            bool bad;
            run_image(ws, b, i, bad);
            if (bad) note_bad(first_bad, i);
            float* dst = out + size_t(i) * cells * n4;
            for (size_t p = 0; p < cells; ++p) std::memcpy(dst + p * n4, ws.l4.p + p * np4, sizeof(float) * n4);
        }
    });
    return first_bad.load();
}

}  // namespace cc
