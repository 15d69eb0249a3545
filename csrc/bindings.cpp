// The one nanobind module, compactcortex._engine: thin wrappers that validate inputs at the
// boundary and release the GIL while kernels run. Python-facing errors name the problem.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/array.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "common/isa.hpp"
#include "common/nb_inputs.hpp"
#include "engine/engine.hpp"
#include "train/bind_train.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using cc_nb::as_batch;
using cc_nb::check_out_shape;
using cc_nb::FloatIn;
using cc_nb::ModelTuple;
using cc_nb::raise_if_bad;
using cc_nb::to_weights;
using FloatOut = nb::ndarray<float, nb::c_contig, nb::device::cpu>;
using AnyIn = nb::ndarray<nb::device::cpu, nb::ro>;

// The one place the engines' limits are checked (the Python front end passes them through).
// Each thread holds a workspace of ~1.4 MB for a published-size model; beyond this, a typo.
constexpr int kMaxThreads = 1024;

// nanobind raises std::invalid_argument (an unknown isa) as ValueError, std::runtime_error (one
// this CPU or build lacks) as RuntimeError.
const cc::KernelTable* kernels_for(const std::string& isa, int threads) {
    if (threads < 1 || threads > kMaxThreads)
        throw nb::value_error(("threads must be between 1 and " + std::to_string(kMaxThreads) + ", got " +
                               std::to_string(threads)).c_str());
    return cc::select_kernels(isa);
}

// One model (cc::Engine, predictions (N,)) or a population (cc::PopulationEngine, (N, models)):
// the same calls, checks and GIL release for both.
template <class E>
class Bound {
public:
    explicit Bound(std::unique_ptr<E> e) : eng_(std::move(e)) {}

    void predict(AnyIn images, FloatOut out) {
        const cc::ImageBatch b = as_batch(images);
        if constexpr (std::is_same_v<E, cc::Engine>)
            check_out_shape(out, {b.count});
        else
            check_out_shape(out, {b.count, eng_->models()});
        run([&] { return eng_->predict(b, out.data()); });
    }

    std::string isa() const { return eng_->isa(); }
    int threads() const { return eng_->threads(); }
    bool winograd() const { return eng_->winograd(); }
    int vector_width() const { return eng_->vector_width(); }
    double spin_ms() const { return eng_->spin_us() / 1e3; }
    void set_spin_ms(double ms) {
        if (!(ms >= 0.0 && ms <= 1e4))
            throw nb::value_error(("spin_ms must be between 0 and 10000, got " + std::to_string(ms)).c_str());
        eng_->set_spin_us(ms * 1e3);
    }

protected:
    // Runs the kernels without the GIL; a non-finite or out-of-range image raises BadImageError.
    template <class F>
    void run(F&& kernels) {
        int64_t bad;
        {
            nb::gil_scoped_release release;
            bad = kernels();
        }
        raise_if_bad(bad);
    }

    std::unique_ptr<E> eng_;
};

class PyEngine : public Bound<cc::Engine> {
public:
    PyEngine(std::array<int, 5> n, FloatIn w0, FloatIn b0, std::vector<FloatIn> dw,
             std::vector<FloatIn> pw, std::vector<FloatIn> pb, FloatIn readout, float readout_bias,
             std::array<float, 3> mean, int threads, const std::string& isa, bool winograd)
        : Bound(std::make_unique<cc::Engine>(to_weights({n, w0, b0, dw, pw, pb, readout, readout_bias}),
                                             kernels_for(isa, threads), threads, mean, winograd)) {}

    void features(AnyIn images, FloatOut out) {
        const cc::ImageBatch b = as_batch(images);
        check_out_shape(out, {b.count, 28, 28, eng_->filters()[4]});
        run([&] { return eng_->features(b, out.data()); });
    }

    // {name: (count, sum (n,), gram (n, n))} for "layer1".."layer4" and "readout".
    nb::dict moments(AnyIn images) {
        const cc::ImageBatch b = as_batch(images);
        std::array<cc::Moments, 5> m;
        run([&] { return eng_->moments(b, m); });
        nb::dict out;
        const char* names[5] = {"layer1", "layer2", "layer3", "layer4", "readout"};
        for (int l = 0; l < 5; ++l) {
            const size_t n = size_t(m[l].n);
            auto* sum = new std::vector<double>(std::move(m[l].sum));
            auto* gram = new std::vector<double>(std::move(m[l].gram));
            nb::capsule own_s(sum, [](void* p) noexcept { delete static_cast<std::vector<double>*>(p); });
            nb::capsule own_g(gram, [](void* p) noexcept { delete static_cast<std::vector<double>*>(p); });
            out[names[l]] = nb::make_tuple(
                m[l].count,
                nb::ndarray<nb::numpy, double, nb::ndim<1>>(sum->data(), {n}, own_s),
                nb::ndarray<nb::numpy, double, nb::ndim<2>>(gram->data(), {n, n}, own_g));
        }
        return out;
    }
};

class PyPopulation : public Bound<cc::PopulationEngine> {
public:
    PyPopulation(const std::vector<ModelTuple>& models, std::array<float, 3> mean, int threads,
                 const std::string& isa, bool winograd)
        : Bound(make(models, mean, threads, isa, winograd)) {}

    int models() const { return eng_->models(); }

private:
    static std::unique_ptr<cc::PopulationEngine> make(const std::vector<ModelTuple>& models,
                                                      std::array<float, 3> mean, int threads,
                                                      const std::string& isa, bool winograd) {
        if (models.empty()) throw nb::value_error("a population needs at least one model");
        return std::make_unique<cc::PopulationEngine>(to_weights(models), kernels_for(isa, threads), threads,
                                                      mean, winograd);
    }
};

// The properties and predict call both classes share.
template <class Py>
void bind_common(nb::class_<Py>& c, const char* predict_doc) {
    c.def("predict", [](Py& self, AnyIn images, FloatOut out) { self.predict(images, out); }, "images"_a,
          "out"_a, predict_doc)
        .def_prop_ro("isa", [](const Py& self) { return self.isa(); })
        .def_prop_ro("threads", [](const Py& self) { return self.threads(); })
        .def_prop_ro("winograd", [](const Py& self) { return self.winograd(); })
        .def_prop_ro("vector_width", [](const Py& self) { return self.vector_width(); },
                     "floats per vector of the kernels in use")
        .def_prop_rw("spin_ms", [](const Py& self) { return self.spin_ms(); },
                     [](Py& self, double ms) { self.set_spin_ms(ms); },
                     "How long idle worker threads poll for the next call before sleeping (ms).");
}

}  // namespace

NB_MODULE(_engine, m) {
    m.doc() = "compactcortex C++ CPU engine (no Python or torch inside).";
    // Test hooks (single kernels, probes): compared with their references by the tests; not API.
    nb::module_ testing = m.def_submodule("_testing", "Test hooks: single kernels and probes (not API).");
    cc_nb::bind_train(m, testing);

    nb::class_<PyEngine> engine(m, "Engine");
    engine.def(nb::init<std::array<int, 5>, FloatIn, FloatIn, std::vector<FloatIn>, std::vector<FloatIn>,
                        std::vector<FloatIn>, FloatIn, float, std::array<float, 3>, int, const std::string&, bool>(),
               "n"_a, "w0"_a, "b0"_a, "dw"_a, "pw"_a, "pb"_a, "readout"_a, "readout_bias"_a, "mean"_a,
               "threads"_a, "isa"_a = "auto", "winograd"_a = true)
        .def("features", &PyEngine::features, "images"_a, "out"_a,
             "The layer-4 map of each image (after batchnorm and ReLU) into out (float32, shape "
             "(N, 28, 28, n4), (H, W, C) order); the readout is not applied.")
        .def("moments", &PyEngine::moments, "images"_a,
             "Pruning statistics in one pass: {name: (count, sum, gram)} for the depthwise outputs "
             "of layer1..layer4 (over images and positions) and the readout's per-channel "
             "contributions (over images).");
    bind_common(engine, "Predict into out (float32, shape (N,)). images: (N,112,112,3) or (N,3,112,112); "
                        "float32/float64 recentred pixels or uint8 raw pixels.");

    nb::class_<PyPopulation> population(m, "Population");
    population.def(nb::init<const std::vector<ModelTuple>&, std::array<float, 3>, int, const std::string&, bool>(),
                   "models"_a, "mean"_a, "threads"_a, "isa"_a = "auto", "winograd"_a = true)
        .def_prop_ro("models", &PyPopulation::models);
    bind_common(population, "Predict every model into out (float32, shape (N, models)).");

    m.attr("MAX_THREADS") = kMaxThreads;
    m.def("available_isas", &cc::available_isas,
          "Kernel variants this CPU and build can run (the first is what 'auto' picks, except "
          "emu512, which only exists to test the 16-wide code on AVX2 machines).");
    m.def("vector_width", [](const std::string& isa) { return cc::select_kernels(isa)->width; }, "isa"_a);
    testing.def("denormals_flushed", [](int threads) {
        // For each thread of a pool: does a subnormal input read as zero (DAZ) and a subnormal
        // result become zero (FTZ)? volatile keeps the compiler from folding the arithmetic.
        cc::ThreadPool pool(threads);
        std::vector<int> out(size_t(pool.size()), 0);
        pool.run(pool.size(), [&](int t) {
            volatile float sub = 1e-40f, one = 1.0f, tiny = 1e-30f, scale = 1e-10f;
            const float in = sub * one, result = tiny * scale;  // operands volatile: not folded
            uint32_t in_bits, result_bits;  // bits, not ==: under DAZ a subnormal compares equal to 0
            std::memcpy(&in_bits, &in, 4);
            std::memcpy(&result_bits, &result, 4);
            out[size_t(t)] = in_bits == 0 && result_bits == 0;
        });
        return out;
    }, "threads"_a, "Per pool thread, whether subnormal floats are flushed to zero inside its jobs (tests).");
    testing.def("wino0_scratch_floats", &cc::wino0_scratch_floats, "wout"_a, "width"_a,
          "Floats of scratch that _kernel_wino0_band needs for Wout output pixels at this vector width.");

    // Direct, unchecked access to one kernel of one table: for the tests against the reference only.
    testing.def("kernel_conv0_row",
          [](const std::string& isa, FloatIn in, int64_t S, int Wout, FloatIn w, FloatIn b, int Cp,
             FloatOut out) {
              cc::select_kernels(isa)->conv0_row(in.data(), S, Wout, w.data(), b.data(), Cp, out.data());
          },
          "isa"_a, "inp"_a, "S"_a, "Wout"_a, "w"_a, "b"_a, "Cp"_a, "out"_a);
    testing.def("kernel_wino0_band",
          [](const std::string& isa, FloatIn in, int64_t S, int Wout, FloatIn V, FloatIn b, int Cp,
             FloatOut out, FloatOut scratch) {
              float* rows[4];
              for (int p = 0; p < 4; ++p) rows[p] = out.data() + size_t(p) * Wout * Cp;
              const cc::KernelTable* k = cc::select_kernels(isa);
              std::vector<float> U(size_t(cc::wino0_u_floats(Wout)));
              k->wino0_input(in.data(), S, Wout, U.data(), scratch.data());
              k->wino0_product(U.data(), Wout, V.data(), b.data(), Cp, rows, scratch.data());
          },
          "isa"_a, "inp"_a, "S"_a, "Wout"_a, "V"_a, "b"_a, "Cp"_a, "out"_a, "scratch"_a);
    testing.def("kernel_gram_row",
          [](const std::string& isa, FloatIn a, int M, int lda, int n, FloatOut G, int ldg,
             FloatOut sums) { cc::select_kernels(isa)->gram_row(a.data(), M, lda, n, G.data(), ldg, sums.data()); },
          "isa"_a, "a"_a, "M"_a, "lda"_a, "n"_a, "G"_a, "ldg"_a, "sums"_a);
    testing.def("kernel_dw_row",
          [](const std::string& isa, FloatIn rows, int64_t row_stride, int s, int Wout, FloatIn dw,
             int Cp, FloatOut tmp) {
              const float* r[5];
              for (int i = 0; i < 5; ++i) r[i] = rows.data() + i * row_stride;
              cc::select_kernels(isa)->dw_row(r, s, Wout, dw.data(), Cp, tmp.data());
          },
          "isa"_a, "rows"_a, "row_stride"_a, "s"_a, "Wout"_a, "dw"_a, "Cp"_a, "tmp"_a);
    testing.def("kernel_pw_row",
          [](const std::string& isa, FloatIn a, int M, int K, int lda, FloatIn B, FloatIn b, int Np,
             FloatOut out, int64_t ldo) {
              cc::select_kernels(isa)->pw_row(a.data(), M, K, lda, B.data(), b.data(), Np, out.data(), ldo);
          },
          "isa"_a, "a"_a, "M"_a, "K"_a, "lda"_a, "B"_a, "b"_a, "Np"_a, "out"_a, "ldo"_a);
}
