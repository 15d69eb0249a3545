// The single-model row pipeline: input fill, layers 0-1 ring, layers 2-4 + readout, predict.
#include <cmath>

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
                bad |= !std::isfinite(acc);
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
        if (st) st->add_depthwise(*k_, 0, ws.tmp.p, kL1, c0);
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
        if (st) st->add_depthwise(*k_, 1, ws.tmp.p, kL2, np_[1]);
        k_->pw_row(ws.tmp.p, kL2, n_[1], np_[1], pw_[1].data(), pb_[1].data(), np_[2],
                   ws.l2.p + (size_t(r + 2) * kL2PadW + 2) * np_[2], np_[2]);
    }
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
    fill_input(ws, b, i, 0, kImg);
    layers01(ws, 0, kL1, ws.l1.p);
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
        pool_.run(T, [&](int t) {
            Workspace& ws = *ws_[t];
            for (int64_t i; (i = next.fetch_add(1)) < whole;) {
                bool bad;
                out[i] = run_image(ws, b, i, bad);
                if (bad) note_bad(first_bad, i);
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
            if (w->bad) note_bad(first_bad, i);
    }
    return first_bad.load();
}

}  // namespace cc
