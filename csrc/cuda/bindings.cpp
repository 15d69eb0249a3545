// compactcortex._engine_cuda: thin nanobind wrappers around the CUDA runner (runner.hpp). This
// file is compiled by the host C++ compiler; all CUDA code lives in runner.cu. Inputs are checked
// here, at the boundary; the GIL is released while work is enqueued or awaited.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/array.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../common/nb_inputs.hpp"
#include "runner.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using cc_nb::as_batch;
using cc_nb::check_out_size;
using cc_nb::ModelTuple;
using CudaIn = nb::ndarray<nb::device::cuda, nb::ro>;
using CudaOut = nb::ndarray<float, nb::device::cuda, nb::c_contig>;
using HostIn = nb::ndarray<nb::device::cpu, nb::ro, nb::c_contig>;
using HostOut = nb::ndarray<float, nb::device::cpu, nb::c_contig>;

class PyRunner {
public:
    PyRunner(const std::vector<ModelTuple>& models, std::array<float, 3> mean, int device,
             int64_t workspace_bytes) {
        if (models.empty()) throw nb::value_error("at least one model is needed");
        if (workspace_bytes < 1) throw nb::value_error("workspace_bytes must be >= 1");
        std::string err;
        const int count = cc_cuda::device_count(&err);
        if (count < 0) throw std::runtime_error("no CUDA device: " + err);
        if (device < 0 || device >= count)
            throw nb::value_error(("device " + std::to_string(device) + " does not exist (" +
                                   std::to_string(count) + " CUDA devices)").c_str());
        r_.reset(new cc_cuda::Runner(cc_nb::to_weights(models), mean, device, size_t(workspace_bytes)));
    }

    int64_t predict_device(CudaIn images, CudaOut out, uintptr_t stream, bool check) {
        const cc::ImageBatch b = as_batch(images);
        check_out_size(out, b.count, r_->num_models());
        if (images.device_id() != r_->device() || out.device_id() != r_->device())
            throw nb::value_error(("images and out must be on CUDA device " +
                                   std::to_string(r_->device()) + " (the predictor's), got " +
                                   std::to_string(images.device_id()) + " and " +
                                   std::to_string(out.device_id())).c_str());
        int64_t bad;
        {
            nb::gil_scoped_release release;
            bad = r_->predict_device(b, out.data(), stream, check);
        }
        return bad;
    }

    int64_t predict_host(HostIn images, HostOut out, bool check) {
        const cc::ImageBatch b = as_batch(images);
        check_out_size(out, b.count, r_->num_models());
        int64_t bad;
        {
            nb::gil_scoped_release release;
            bad = r_->predict_host(b, out.data(), check);
        }
        return bad;
    }

    int num_models() const { return r_->num_models(); }
    int device() const { return r_->device(); }
    int max_pairs() const { return r_->max_pairs(); }
    size_t device_bytes() const { return r_->device_bytes(); }

private:
    std::unique_ptr<cc_cuda::Runner> r_;
};

}  // namespace

NB_MODULE(_engine_cuda, m) {
    m.doc() = "compactcortex CUDA engine (float32 kernels; no torch inside).";

    m.def("device_count",
          []() {
              std::string err;
              const int n = cc_cuda::device_count(&err);
              return std::make_tuple(n, err);
          },
          "(count, error): usable CUDA devices, or (-1, the runtime's explanation).");
    m.def("device_name", &cc_cuda::device_name, "device"_a);
    m.def("device_capability", &cc_cuda::device_capability, "device"_a);
    m.def("runtime_version", &cc_cuda::runtime_version,
          "CUDA runtime version this module was built with (e.g. 13000 for 13.0).");
    m.def("driver_version", &cc_cuda::driver_version,
          "Highest CUDA version the installed driver supports (0: no driver).");

    nb::class_<PyRunner>(m, "Runner")
        .def(nb::init<const std::vector<ModelTuple>&, std::array<float, 3>, int, int64_t>(),
             "models"_a, "mean"_a, "device"_a = 0, "workspace_bytes"_a = int64_t(256) << 20,
             "models: [(nums_filters, w0, b0, [dw1..4], [pw1..4], [pb1..4], readout, "
             "readout_bias)], float32 arrays in a Plan's layout.")
        .def("predict_device", &PyRunner::predict_device, "images"_a, "out"_a, "stream"_a,
             "check"_a = true,
             "images: CUDA array (N,112,112,3) or (N,3,112,112), any strides; out: CUDA float32 "
             "(N, models) contiguous. Enqueued on `stream` (a cudaStream_t as an integer). "
             "Returns -1, or with check (which waits for the stream) the first image holding "
             "NaN or infinity.")
        .def("predict_host", &PyRunner::predict_host, "images"_a, "out"_a, "check"_a = true,
             "As predict_device for C-contiguous host arrays (copied to the device); waits.")
        .def_prop_ro("num_models", &PyRunner::num_models)
        .def_prop_ro("device", &PyRunner::device)
        .def_prop_ro("max_pairs", &PyRunner::max_pairs,
                     "(model, image) pairs per chunk of kernel launches.")
        .def_prop_ro("device_bytes", &PyRunner::device_bytes,
                     "Device memory held now (weights and workspace), in bytes.");
}
