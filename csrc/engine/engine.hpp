// The CPU inference engine for one compact model: packed weights for one kernel table,
// per-thread workspaces allocated once, and the row-streaming pipeline
//   layer 0 rows -> ring buffer -> layer 1 (fused depthwise+pointwise) -> layers 2-4 -> readout.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../common/model_types.hpp"
#include "kernels.hpp"
#include "../common/thread_pool.hpp"

namespace cc {
namespace detail {
struct Buffer;
}

// First and second moments of one set of channels, summed over `count` samples.
struct Moments {
    int n = 0;
    int64_t count = 0;
    std::vector<double> sum;   // (n)
    std::vector<double> gram;  // (n, n): sum of outer products, symmetric
};

// The kernel table for an instruction-set name ("auto": the widest the CPU supports; see
// common/isa.hpp).
const KernelTable* select_kernels(const std::string& isa);

class Engine {
public:
    // winograd: layer 0 by Winograd F(4x4,5x5) (default) instead of the direct convolution.
    Engine(const ModelWeights& m, const KernelTable* k, int threads, std::array<float, 3> mean,
           bool winograd = true);
    ~Engine();

    // Writes one prediction per image to out[0..count). Returns -1, or the index of the first
    // image that holds a NaN, infinity or a value beyond +-kMaxInput (1e6) (out is then unspecified). Thread-safe (serialised).
    int64_t predict(const ImageBatch& images, float* out);

    // Pruning statistics in one pass over the images, without keeping any feature map:
    // [0..3] the depthwise outputs of layers 1-4 (the inputs of their pointwise convolutions)
    // over images and positions; [4] per image, the readout's per-channel contributions
    // sum_{h,w} readout[h,w,c] * layer4[h,w,c]. Returns the index of the first image with a NaN,
    // infinity or |value| > kMaxInput, or -1.
    int64_t moments(const ImageBatch& images, std::array<Moments, 5>& out);

    // The layer-4 map of each image (after batchnorm and ReLU), (count, 28, 28, n4) in
    // (H, W, C) order, into out; the readout is not applied. A trunk's features for readouts
    // fitted elsewhere. Returns -1, or the index of the first image with a NaN, infinity or |value| > kMaxInput.
    int64_t features(const ImageBatch& images, float* out);
    const std::array<int, 5>& filters() const { return n_; }

    const char* isa() const { return k_->name; }
    int vector_width() const { return k_->width; }
    bool winograd() const { return winograd_; }
    int threads() const { return pool_.size(); }
    // How long idle worker threads poll for the next call before sleeping (see ThreadPool).
    void set_spin_us(double us) { pool_.set_spin_us(us); }
    double spin_us() const { return pool_.spin_us(); }
    const std::array<int, 5>& padded_filters() const { return np_; }

    // For runners that drive many engines from their own threads (PopulationEngine): a
    // workspace large enough for padded filter counts `np_max`, shareable by engines whose
    // padded counts do not exceed it once prepare() has laid out its zero borders for them.
    struct Workspace;
    static std::unique_ptr<Workspace> make_workspace(const std::array<int, 5>& np_max, int width);
    void prepare(Workspace& ws) const;
    // One image through the whole model on the calling thread; `bad` is set on NaN, inf or |value| > kMaxInput.
    float run_image(Workspace& ws, const ImageBatch& images, int64_t i, bool& bad) const;
    // Image i's Winograd layer-0 input tiles, every band, into U (kImageTiles floats, see
    // workspace.hpp), for run_image of any engine of the same mean through a workspace whose shared_u
    // points at U. Sets ws.bad on NaN, inf or |value| > kMaxInput.
    void transform_input(Workspace& ws, const ImageBatch& images, int64_t i, float* U) const;

private:
    struct StatsAcc;
    // Layer-0 rows [lo, hi] in a workspace's ring, grown one band at a time upward or downward
    // (empty: hi < lo).
    struct L0Run {
        int lo = 0, hi = -1;
    };
    void fill_input(Workspace& ws, const ImageBatch& b, int64_t i, int y0, int y1) const;
    void fill_new_rows(Workspace& ws, const ImageBatch& b, int64_t i, int y, int band, const L0Run& run) const;
    // Layer-1 output row r of image i into l1 (padded for layer 2), producing first the layer-0
    // rows it reads that `run` lacks (and the image rows those read), upward or downward.
    void layer1_row(Workspace& ws, const ImageBatch& b, int64_t i, int r, bool up, L0Run& run, float* l1,
                    StatsAcc* st) const;
    void layers01(Workspace& ws, const ImageBatch& b, int64_t i, float* l1, StatsAcc* st = nullptr) const;
    void layer2_row(const float* l1, float* tmp, int r, float* l2, StatsAcc* st) const;
    float layers234(Workspace& ws, StatsAcc* st = nullptr) const;
    float layers34(Workspace& ws, StatsAcc* st = nullptr) const;

    const KernelTable* k_;
    std::array<int, 5> n_{}, np_{};  // filter counts, and padded to the vector width
    std::array<float, 3> mean_;
    bool winograd_;
    std::vector<float> w0_, wino_v_, b0_, readout_;
    std::array<std::vector<float>, 4> dw_, pw_, pb_;
    float readout_bias_;
    std::vector<std::unique_ptr<Workspace>> ws_;
    ThreadPool pool_;
    std::mutex call_mu_;
};

// Many models on the same images: per group of images, each image's layer-0 input transformed
// once, then (model, image) work items spread over the threads, each thread with one workspace
// sized for the largest model, re-laid-out per model.
class PopulationEngine {
public:
    PopulationEngine(const std::vector<ModelWeights>& models, const KernelTable* k, int threads,
                     std::array<float, 3> mean, bool winograd = true);
    ~PopulationEngine();

    // out is (count, models) row-major. Returns -1 or the first image with NaN, inf or |value| > kMaxInput.
    int64_t predict(const ImageBatch& images, float* out);

    int models() const { return int(engines_.size()); }
    int threads() const { return pool_.size(); }
    void set_spin_us(double us) { pool_.set_spin_us(us); }
    double spin_us() const { return pool_.spin_us(); }
    const char* isa() const { return engines_[0]->isa(); }
    int vector_width() const { return engines_[0]->vector_width(); }
    bool winograd() const { return engines_[0]->winograd(); }

private:
    std::vector<std::unique_ptr<Engine>> engines_;
    std::vector<std::unique_ptr<Engine::Workspace>> ws_;
    std::unique_ptr<detail::Buffer> tiles_;  // Winograd input tiles of one group of images
    ThreadPool pool_;
    std::mutex call_mu_;
};

}  // namespace cc
