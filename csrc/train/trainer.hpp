// Forward and backward passes of the compact model over a batch, for training on the CPU.
//
// A Trainer owns a thread pool and reusable workspaces; forward() runs one batch and returns
// the Tape that backward() needs (the feature maps, the step's packed weights and batchnorm
// statistics). Masked filters are compacted away before any kernel runs, so a step costs what
// the physically smaller model's step costs, and masked parameters get exactly zero gradient.
//
// Parameters come in PyTorch's layouts, 26 arrays in this order (see param_index):
//   0 layer0_conv.weight (n0,3,5,5)   1 layer0_conv.bias   2 layer0_bn.weight   3 layer0_bn.bias
//   4+5(l-1)+{0..4} for l = 1..4: layer{l}_conv_depth.weight (n_{l-1},1,5,5),
//       layer{l}_conv_point.weight (n_l,n_{l-1},1,1), layer{l}_conv_point.bias,
//       layer{l}_bn.weight, layer{l}_bn.bias
//   24 readout.weight (K, 28*28*n4) in (H,W,C) order   25 readout.bias (K)
// K >= 1 outputs share the trunk (layers 0-4): a population student has one readout row per
// neuron, and out, grad_out are (N, K) row-major.
// Running statistics: 10 arrays, running_mean and running_var of layers 0..4.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "kernels.hpp"

namespace cc {
namespace train {

constexpr int kParams = 26;

// Phases of a training step, for profiling where its time goes (Trainer::set_profile).
constexpr int kPhases = 14;
extern const char* const kPhaseNames[kPhases];
enum Phase : int {
    kPhasePrepare = 0,           // weights packed, images laid out channels-last
    kPhaseForward0 = 1,          // + l: layer l's convolution, batch statistics, batchnorm + ReLU
    kPhaseForwardReadout = 6,
    kPhaseBackwardReadout = 7,
    kPhaseBackward4 = 8,         // + (4 - l): layer l's batchnorm and convolution gradients
    kPhaseFinish = 13,           // the threads' gradient sums into PyTorch's layouts
};

// Sizes (in floats) of the 26 parameter arrays of a model with filters n and K outputs.
std::array<int64_t, kParams> param_sizes(const std::array<int, 5>& n, int outputs);

struct StepConfig {
    std::array<std::vector<int>, 5> active;  // kept filters of each layer, increasing, non-empty
    std::array<float, 5> eps;                // batchnorm epsilons
    float momentum = 0.1f;                   // PyTorch's running-statistics momentum
    bool training = true;                    // batch statistics (and update the running ones)
};

struct Workspace;
struct Impl;

class Tape {
public:
    ~Tape();
    // Gradients of sum_{i,k} gout[i*K + k] * out[i*K + k]: when grads is not null, every parameter into its 26
    // arrays (fully written, zeros for masked entries); when dx is not null, the input
    // (N,3,112,112). Once only.
    void backward(const float* gout, const std::array<float*, kParams>* grads, float* dx);
    int64_t count() const;
    int outputs() const;

    struct State;  // defined in workspace.hpp

private:
    friend class Trainer;
    std::unique_ptr<State> s_;
};

class Trainer {
public:
    Trainer(std::array<int, 5> n, int outputs, int threads, const TrainKernels* k);
    ~Trainer();
    // x: (N,3,112,112) recentred images, C-contiguous. Writes out (N, K) and, in training mode,
    // updates the running statistics in place.
    std::unique_ptr<Tape> forward(const float* x, int64_t N,
                                  const std::array<const float*, kParams>& params,
                                  const std::array<float*, 10>& running, const StepConfig& cfg,
                                  float* out);
    const std::array<int, 5>& filters() const;
    int outputs() const;
    int threads() const;
    const char* isa() const;

    // While on, each pass adds the wall time of its phases (kPhaseNames) to phase_seconds().
    void set_profile(bool on);
    bool profile() const;
    std::array<double, kPhases> phase_seconds() const;
    void reset_phases();

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace train
}  // namespace cc
