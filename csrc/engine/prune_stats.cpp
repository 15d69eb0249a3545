// Pruning statistics: moments of the depthwise outputs and of the readout's contributions.
#include "workspace.hpp"

namespace cc {
using namespace detail;

Engine::StatsAcc::StatsAcc(const std::array<int, 5>& n, const std::array<int, 5>& np) {
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

void Engine::StatsAcc::add_readout(const float* l4, const float* readout, int Cp) {
    Moments& m = total[4];
    std::vector<double> c(m.n, 0.0);
    for (int p = 0; p < kL2 * kL2; ++p)
        for (int j = 0; j < m.n; ++j) c[j] += double(l4[size_t(p) * Cp + j]) * readout[size_t(p) * Cp + j];
    for (int j = 0; j < m.n; ++j) {
        m.sum[j] += c[j];
        for (int k = j; k < m.n; ++k) m.gram[size_t(j) * m.n + k] += c[j] * c[k];
    }
    m.count += 1;
}

void Engine::StatsAcc::flush(const std::array<int, 5>& np, const int64_t positions[4]) {
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

int64_t Engine::moments(const ImageBatch& b, std::array<Moments, 5>& out) {
    std::lock_guard<std::mutex> lock(call_mu_);
    const int T = pool_.size();
    std::vector<std::unique_ptr<StatsAcc>> acc;
    for (int t = 0; t < T; ++t) acc.emplace_back(new StatsAcc(n_, np_));
    std::atomic<int64_t> next{0}, first_bad{-1};
    pool_.run_elastic([&](int t) {
        Workspace& ws = *ws_[t];
        const int64_t positions[4] = {kL1 * kL1, kL2 * kL2, kL2 * kL2, kL2 * kL2};
        for (int64_t i; (i = next.fetch_add(1)) < b.count;) {
            ws.bad = false;
            layers01(ws, b, i, ws.l1.p, acc[t].get());
            layers234(ws, acc[t].get());
            acc[t]->flush(np_, positions);
            if (ws.bad) note_bad(first_bad, i);
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

}  // namespace cc
