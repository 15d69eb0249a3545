// Host side of the CUDA engine: plain C++ (no CUDA types), so that the nanobind bindings build
// with the host compiler and the tests can build the same runner as CPU emulation.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../common/model_types.hpp"

namespace cc_cuda {

// The plain model and image types are the CPU engine's.
using cc::DType;
using cc::ImageBatch;
using cc::ModelWeights;

// Number of usable devices, or -1 with `error` set to the runtime's explanation.
int device_count(std::string* error);
std::string device_name(int device);
// "major.minor" compute capability, and the runtime and driver versions (e.g. 13000).
std::string device_capability(int device);
int runtime_version();
int driver_version();

class Runner {
public:
    // Uploads the packed weights to `device`. workspace_bytes bounds the feature-map workspace
    // (more: fewer, larger chunks of (model, image) pairs per launch).
    Runner(const std::vector<ModelWeights>& models, std::array<float, 3> mean, int device,
           size_t workspace_bytes);
    ~Runner();
    Runner(const Runner&) = delete;
    Runner& operator=(const Runner&) = delete;

    // Images in device memory; out: device float32 [count][num_models]. All work is enqueued on
    // `stream` (a cudaStream_t, 0 = the legacy default stream) after any earlier call's work.
    // check: wait for the stream and return the index of the first image holding NaN,
    // infinity or |value| > kMaxInput (-1 if none); without check returns -1 at once (such
    // images give NaN outputs).
    int64_t predict_device(const ImageBatch& images, float* out, uintptr_t stream, bool check);

    // Images in host memory, each image contiguous (sn = 112*112*3); out: host float32
    // [count][num_models]. Copies chunks to the device on the runner's own stream and waits.
    int64_t predict_host(const ImageBatch& images, float* out, bool check);

    int num_models() const { return int(n_.size()); }
    int device() const { return device_; }
    // (model, image) pairs per chunk, and bytes of device memory held now.
    int max_pairs() const { return max_pairs_; }
    size_t device_bytes() const;

private:
    struct Impl;
    int64_t run(const ImageBatch& images, float* out, void* stream, bool check, bool host);
    std::vector<std::array<int, 5>> n_;
    std::array<float, 3> mean_;
    int device_;
    int max_pairs_;
    std::unique_ptr<Impl> impl_;
    std::mutex mu_;
};

}  // namespace cc_cuda
