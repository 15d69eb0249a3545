// The population scheduler: (model, image chunk) work items of many models over the threads.
#include "workspace.hpp"

namespace cc {
using namespace detail;

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
    pool_.run_elastic([&](int t) {
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
                if (bad) note_bad(first_bad, i);
            }
        }
    });
    return first_bad.load();
}

}  // namespace cc
