// Bindings of the training kernels: checks every array at the boundary (errors name the
// argument), releases the GIL while the kernels run.
#include "bind_train.hpp"

#include <nanobind/ndarray.h>
#include <nanobind/stl/array.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <optional>
#include <stdexcept>
#include <string>

#include "../common/nb_inputs.hpp"
#include "trainer.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace cc_nb {
namespace {

using FIn = FloatIn;
using FOut = nb::ndarray<float, nb::c_contig, nb::device::cpu>;
using IIn = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu, nb::ro>;
namespace tr = cc::train;

[[noreturn]] void fail(const std::string& msg) { throw nb::value_error(msg.c_str()); }

class PyTrainer {
public:
    PyTrainer(std::array<int, 5> n, int threads, const std::string& isa, int outputs) {
        if (threads < 1) fail("threads must be >= 1");
        if (outputs < 1) fail("outputs must be >= 1");
        for (int v : n)
            if (v < 1) fail("filter counts must all be >= 1");
        const tr::TrainKernels* k;
        try {
            k = tr::select_train_kernels(isa);
        } catch (const std::exception& e) {
            fail(e.what());
        }
        t_ = std::make_unique<tr::Trainer>(n, outputs, threads, k);
    }

    std::unique_ptr<tr::Tape> forward(FIn x, const std::vector<FIn>& params, const std::vector<FOut>& running,
                                      const std::vector<IIn>& active, std::array<float, 5> eps,
                                      float momentum, bool training, FOut out) {
        const auto& n = t_->filters();
        const int64_t N = nchw_count(x);
        const int K = t_->outputs();
        check_out_shape(out, K == 1 ? std::vector<int64_t>{N} : std::vector<int64_t>{N, K});
        if (params.size() != size_t(tr::kParams)) fail("params: expected 26 arrays");
        if (running.size() != 10) fail("running: expected 10 arrays (mean and variance of layers 0-4)");
        if (active.size() != 5) fail("active: expected 5 index arrays");
        const auto sizes = tr::param_sizes(n, K);
        std::array<const float*, tr::kParams> P;
        for (int p = 0; p < tr::kParams; ++p) {
            check_size(params[p], sizes[p], "params[" + std::to_string(p) + "]");
            P[p] = params[p].data();
        }
        std::array<float*, 10> R;
        for (int i = 0; i < 10; ++i) {
            check_size(running[i], n[i / 2], "running[" + std::to_string(i) + "]");
            R[i] = running[i].data();
        }
        tr::StepConfig cfg;
        for (int l = 0; l < 5; ++l) {
            const IIn& a = active[l];
            if (a.shape(0) == 0) fail("active[" + std::to_string(l) + "]: every filter of layer " +
                                      std::to_string(l) + " is masked");
            cfg.active[l].assign(a.data(), a.data() + a.shape(0));
            for (size_t j = 0; j < cfg.active[l].size(); ++j) {
                const int v = cfg.active[l][j];
                if (v < 0 || v >= n[l] || (j && v <= cfg.active[l][j - 1]))
                    fail("active[" + std::to_string(l) + "]: indices must increase within 0.." +
                         std::to_string(n[l] - 1));
            }
            if (!(eps[l] >= 0)) fail("eps: batchnorm epsilons must be >= 0");
        }
        cfg.eps = eps;
        cfg.momentum = momentum;
        cfg.training = training;
        nb::gil_scoped_release release;
        return t_->forward(x.data(), N, P, R, cfg, out.data());
    }

    std::array<int, 5> filters() const { return t_->filters(); }
    int outputs() const { return t_->outputs(); }
    int threads() const { return t_->threads(); }
    std::string isa() const { return t_->isa(); }
    bool profile() const { return t_->profile(); }
    void set_profile(bool on) { t_->set_profile(on); }
    void reset_phases() { t_->reset_phases(); }
    nb::dict phases() const {
        const auto seconds = t_->phase_seconds();
        nb::dict out;
        for (int p = 0; p < tr::kPhases; ++p) out[tr::kPhaseNames[p]] = seconds[size_t(p)];
        return out;
    }

private:
    std::unique_ptr<tr::Trainer> t_;
};

void backward(tr::Tape& tape, FIn gout, std::optional<std::vector<FOut>> grads, std::optional<FOut> dx,
              std::array<int, 5> n) {
    const int64_t N = tape.count();
    check_size(gout, N * tape.outputs(), "grad_out");
    std::array<float*, tr::kParams> G;
    if (grads) {
        if (grads->size() != size_t(tr::kParams)) fail("grads: expected 26 arrays");
        const auto sizes = tr::param_sizes(n, tape.outputs());
        for (int p = 0; p < tr::kParams; ++p) {
            check_size((*grads)[p], sizes[p], "grads[" + std::to_string(p) + "]");
            G[p] = (*grads)[p].data();
        }
    }
    if (dx) check_size(*dx, N * 3 * 112 * 112, "dx");
    nb::gil_scoped_release release;
    try {
        tape.backward(gout.data(), grads ? &G : nullptr, dx ? dx->data() : nullptr);
    } catch (const std::runtime_error& e) {
        nb::gil_scoped_acquire acquire;
        throw nb::value_error(e.what());
    }
}

}  // namespace

void bind_train(nb::module_& m, nb::module_& testing) {
    nb::class_<tr::Tape>(m, "Tape", "What a training forward pass keeps for its backward pass.")
        .def_prop_ro("count", &tr::Tape::count)
        .def("backward", &backward, "grad_out"_a, "grads"_a.none(), "dx"_a.none(), "filters"_a,
             "Gradients of sum(grad_out * out) into grads (26 arrays in parameter order; None: "
             "skip them) and, when dx is given, the input (N,3,112,112). Once per forward pass.");

    nb::class_<PyTrainer>(m, "Trainer",
                          "Forward and backward passes of a CompactModel on the CPU, multi-threaded.")
        .def(nb::init<std::array<int, 5>, int, const std::string&, int>(), "filters"_a, "threads"_a,
             "isa"_a = "auto", "outputs"_a = 1)
        .def("forward", &PyTrainer::forward, "x"_a, "params"_a, "running"_a, "active"_a, "eps"_a,
             "momentum"_a, "training"_a, "out"_a,
             "One batch (N,3,112,112) through the model into out ((N,), or (N, K) for K outputs); returns the Tape for "
             "backward. Training mode uses batch statistics and updates `running` in place.")
        .def_prop_ro("filters", &PyTrainer::filters)
        .def_prop_ro("outputs", &PyTrainer::outputs)
        .def_prop_ro("threads", &PyTrainer::threads)
        .def_prop_ro("isa", &PyTrainer::isa)
        .def_prop_rw("profile", &PyTrainer::profile, &PyTrainer::set_profile,
                     "While True, each pass adds the wall time of its phases to phases().")
        .def("phases", &PyTrainer::phases,
             "{phase: seconds} summed over the passes run while profiling (prepare, forward layer0..4, "
             "forward readout, backward readout, backward layer4..0, finish).")
        .def("reset_phases", &PyTrainer::reset_phases);

    testing.def("train_kernel_gemm",
          [](const std::string& isa, int M, int N, int K, FIn X, int64_t si, int64_t st, FIn Y, int64_t ldy,
             FOut C, int64_t ldc, bool accumulate) {
              tr::select_train_kernels(isa)->gemm(M, N, K, X.data(), si, st, Y.data(), ldy, C.data(), ldc,
                                                  accumulate);
          },
          "isa"_a, "M"_a, "N"_a, "K"_a, "X"_a, "si"_a, "st"_a, "Y"_a, "ldy"_a, "C"_a, "ldc"_a,
          "accumulate"_a, "Unchecked access to one training kernel, for the tests.");
    // rows: (5, Win, C) input rows (row ky absent where has_row[ky] is false), w (25, C).
    testing.def("train_kernel_dw_row",
          [](const std::string& isa, FIn rows, std::array<bool, 5> has_row, int Win, int pad, int s, int Wout,
             FIn w, int C, FOut out) {
              const float* r[5];
              for (int ky = 0; ky < 5; ++ky) r[ky] = has_row[ky] ? rows.data() + int64_t(ky) * Win * C : nullptr;
              tr::select_train_kernels(isa)->dw_row(r, Win, pad, s, Wout, w.data(), C, out.data());
          },
          "isa"_a, "rows"_a, "has_row"_a, "Win"_a, "pad"_a, "s"_a, "Wout"_a, "w"_a, "C"_a, "out"_a);
    testing.def("train_kernel_dw_row_backward",
          [](const std::string& isa, FIn rows, FOut drows, std::array<bool, 5> has_row, int Win, int pad, int s,
             int Wout, FIn w, FIn g, int C, FOut dw) {
              const float* r[5];
              float* d[5];
              for (int ky = 0; ky < 5; ++ky) {
                  r[ky] = has_row[ky] ? rows.data() + int64_t(ky) * Win * C : nullptr;
                  d[ky] = has_row[ky] ? drows.data() + int64_t(ky) * Win * C : nullptr;
              }
              tr::select_train_kernels(isa)->dw_row_backward(r, d, Win, pad, s, Wout, w.data(), g.data(), C, dw.data());
          },
          "isa"_a, "rows"_a, "drows"_a, "has_row"_a, "Win"_a, "pad"_a, "s"_a, "Wout"_a, "w"_a, "g"_a, "C"_a, "dw"_a);
}

}  // namespace cc_nb
