// The population scheduler: many models over the same images, in groups of images. With the
// Winograd layer 0, each image is read and transformed once per call for every model (the
// transformed tiles are the only work models can share: their filters differ from layer 0 on).
#include "workspace.hpp"

namespace cc {
using namespace detail;

namespace {
// Images per group: the transformed tiles of a group (600 KB an image) stay in the last-level
// cache while every model reads them; enough (model, image) items to balance the threads.
constexpr int64_t kGroupPerThread = 2;
}  // namespace

PopulationEngine::PopulationEngine(const std::vector<ModelWeights>& models, const KernelTable* k,
                                   int threads, std::array<float, 3> mean, bool winograd)
    : pool_(threads < 1 ? 1 : threads) {
    std::array<int, 5> np_max{};
    for (const ModelWeights& m : models) {
        engines_.emplace_back(new Engine(m, k, 1, mean, winograd));
        for (int l = 0; l < 5; ++l) np_max[l] = std::max(np_max[l], engines_.back()->padded_filters()[l]);
    }
    for (int t = 0; t < pool_.size(); ++t) ws_.push_back(Engine::make_workspace(np_max, k->width));
    if (winograd) tiles_.reset(new Buffer(size_t(kGroupPerThread * pool_.size()) * kImageTiles));
}

PopulationEngine::~PopulationEngine() = default;

int64_t PopulationEngine::predict(const ImageBatch& b, float* out) {
    std::lock_guard<std::mutex> lock(call_mu_);
    const int64_t M = models(), G = kGroupPerThread * pool_.size();
    std::atomic<int64_t> first_bad{-1};
    for (int64_t g0 = 0; g0 < b.count; g0 += G) {
        const int64_t n = std::min(G, b.count - g0);
        if (tiles_) {  // every image of the group read, checked and transformed once
            std::atomic<int64_t> next{0};
            pool_.run_elastic([&](int t) {
                Engine::Workspace& ws = *ws_[t];
                for (int64_t j; (j = next.fetch_add(1)) < n;) {
                    ws.bad = false;
                    engines_[0]->transform_input(ws, b, g0 + j, tiles_->p + j * kImageTiles);
                    if (ws.bad) note_bad(first_bad, g0 + j);
                }
            });
        }
        // (model, image) items, model-major, so that a thread keeps one model's weights and
        // workspace layout over consecutive images.
        std::atomic<int64_t> next{0};
        pool_.run_elastic([&](int t) {
            Engine::Workspace& ws = *ws_[t];
            int64_t current = -1;
            for (int64_t item; (item = next.fetch_add(1)) < n * M;) {
                const int64_t m = item / n, j = item % n;
                if (m != current) {
                    engines_[m]->prepare(ws);
                    current = m;
                }
                ws.shared_u = tiles_ ? tiles_->p + j * kImageTiles : nullptr;
                bool bad = false;
                out[(g0 + j) * M + m] = engines_[m]->run_image(ws, b, g0 + j, bad);
                if (bad) note_bad(first_bad, g0 + j);
            }
            ws.shared_u = nullptr;
        });
    }
    return first_bad.load();
}

}  // namespace cc
