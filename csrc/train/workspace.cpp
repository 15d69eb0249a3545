// The Trainer and Tape objects, the image loop and the reusable batch workspaces.
#include <atomic>
#include <stdexcept>

#include "workspace.hpp"

namespace cc {
namespace train {

void Impl::for_images(int64_t N, const std::function<void(int, int64_t)>& fn) {
    std::atomic<int64_t> next{0};
    const int T = int(std::min<int64_t>(pool.size(), N));
    pool.run(T, [&](int tid) {
        for (int64_t i; (i = next.fetch_add(1)) < N;) fn(tid, i);
    });
}

std::unique_ptr<Workspace> Impl::take(int64_t N, const std::array<int, 5>& cp) {
    std::lock_guard<std::mutex> lock(free_mu);
    for (auto it = free.begin(); it != free.end(); ++it)
        if ((*it)->N == N && (*it)->cp == cp) {
            auto ws = std::move(*it);
            free.erase(it);
            return ws;
        }
    return nullptr;
}

void Impl::give_back(std::unique_ptr<Workspace> ws) {
    std::lock_guard<std::mutex> lock(free_mu);
    free.push_back(std::move(ws));
    if (free.size() > 2) free.erase(free.begin());
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

const char* const kPhaseNames[kPhases] = {
    "prepare", "forward layer0", "forward layer1", "forward layer2", "forward layer3", "forward layer4",
    "forward readout", "backward readout", "backward layer4", "backward layer3", "backward layer2",
    "backward layer1", "backward layer0", "finish"};

void Trainer::set_profile(bool on) {
    std::lock_guard<std::mutex> pass(impl_->mu);
    impl_->profile = on;
}
bool Trainer::profile() const {
    std::lock_guard<std::mutex> pass(impl_->mu);
    return impl_->profile;
}
std::array<double, kPhases> Trainer::phase_seconds() const {
    std::lock_guard<std::mutex> pass(impl_->mu);
    return impl_->phase_s;
}
void Trainer::reset_phases() {
    std::lock_guard<std::mutex> pass(impl_->mu);
    impl_->phase_s.fill(0.0);
}

}  // namespace train
}  // namespace cc
