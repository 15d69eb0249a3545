// The Python boundary of _engine and _engine_cuda: model conversion, input checks, errors.
#pragma once
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <array>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "model_weights.hpp"

// Every shape and dtype check of the bindings lives here; errors name the argument and what
// was expected.
namespace cc_nb {

namespace nb = nanobind;

using FloatIn = nb::ndarray<const float, nb::c_contig, nb::device::cpu, nb::ro>;

// A model as a tuple (n, w0, b0, dw, pw, pb, readout, readout_bias), as Plan gives it.
using ModelTuple = std::tuple<std::array<int, 5>, FloatIn, FloatIn, std::vector<FloatIn>,
                              std::vector<FloatIn>, std::vector<FloatIn>, FloatIn, float>;

// ValueError "<name>: expected <expect> <unit>, got <size>" unless `a` holds `expect` values.
template <class A>
void check_size(const A& a, int64_t expect, const std::string& name, const char* unit = "float32 values") {
    cc::check_count(a.size(), size_t(expect), name, unit);
}

inline std::string dims_str(const std::vector<int64_t>& dims) {
    std::string s = "(";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + (dims.size() == 1 ? ",)" : ")");
}

template <class A>
std::string shape_str(const A& a) {
    std::vector<int64_t> dims;
    for (size_t i = 0; i < a.ndim(); ++i) dims.push_back(int64_t(a.shape(i)));
    return dims_str(dims);
}

// ValueError unless `out` has exactly the shape `dims`.
template <class A>
void check_out_shape(const A& out, const std::vector<int64_t>& dims) {
    bool ok = out.ndim() == dims.size();
    for (size_t i = 0; ok && i < dims.size(); ++i) ok = int64_t(out.shape(i)) == dims[i];
    if (!ok) throw nb::value_error(("out: expected a float32 array of shape " + dims_str(dims)).c_str());
}

// ValueError unless `out` holds count x models float32 values, in any shape.
template <class A>
void check_out_size(const A& out, int64_t count, int models) {
    check_size(out, count * models, "out", "float32 values (N x models)");
}

// compactcortex.engine.errors.BadImageError(bad) (a ValueError carrying the image's index) for the
// first image holding NaN, infinity or a value beyond kMaxInput (bad >= 0; -1: none). Called with
// the GIL held.
inline void raise_if_bad(int64_t bad) {
    if (bad < 0) return;
    nb::object error = nb::module_::import_("compactcortex.engine.errors").attr("BadImageError")(bad);
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
    throw nb::python_error();
}

// Interprets a 4-d array (CPU or CUDA) as NHWC (N,112,112,3) or NCHW (N,3,112,112).
template <class A>
cc::ImageBatch as_batch(const A& x) {
    cc::ImageBatch b{};
    if (x.dtype() == nb::dtype<float>()) b.dtype = cc::DType::f32;
    else if (x.dtype() == nb::dtype<double>()) b.dtype = cc::DType::f64;
    else if (x.dtype() == nb::dtype<uint8_t>()) b.dtype = cc::DType::u8;
    else
        throw nb::type_error("images: dtype must be float32 (recentred pixels), float64 or uint8 "
                             "(raw pixels 0-255)");
    if (x.ndim() != 4)
        throw nb::value_error(("images: expected a 4-d array (N,112,112,3) or (N,3,112,112), got "
                               "shape " + shape_str(x)).c_str());
    const bool nhwc = x.shape(1) == 112 && x.shape(2) == 112 && x.shape(3) == 3;
    const bool nchw = x.shape(1) == 3 && x.shape(2) == 112 && x.shape(3) == 112;
    if (!nhwc && !nchw)
        throw nb::value_error(("images: expected shape (N,112,112,3) or (N,3,112,112), got " +
                               shape_str(x)).c_str());
    if (x.shape(0) == 0) throw nb::value_error("images: empty batch (N = 0)");
    b.data = x.data();
    b.count = int64_t(x.shape(0));
    b.sn = x.stride(0);
    if (nhwc) { b.sy = x.stride(1); b.sx = x.stride(2); b.sc = x.stride(3); }
    else      { b.sc = x.stride(1); b.sy = x.stride(2); b.sx = x.stride(3); }
    return b;
}

// The training input: N >= 1 recentred images (N, 3, 112, 112).
template <class A>
int64_t nchw_count(const A& x) {
    if (x.ndim() != 4 || x.shape(1) != 3 || x.shape(2) != 112 || x.shape(3) != 112 || x.shape(0) == 0)
        throw nb::value_error("x: expected a float32 array of shape (N, 3, 112, 112) with N >= 1");
    return int64_t(x.shape(0));
}

// A model's arrays -> ModelWeights, every size checked; `prefix` starts each error ("model 3: ").
inline cc::ModelWeights to_weights(const ModelTuple& t, const std::string& prefix = "") {
    auto view = [](const FloatIn& a) { return cc::FloatView{a.data(), a.size()}; };
    auto views = [&](const std::vector<FloatIn>& v) {
        std::vector<cc::FloatView> out;
        for (const FloatIn& a : v) out.push_back(view(a));
        return out;
    };
    const auto& [n, w0, b0, dw, pw, pb, readout, bias] = t;
    return cc::to_weights({n, view(w0), view(b0), views(dw), views(pw), views(pb), view(readout), bias}, prefix);
}

inline std::vector<cc::ModelWeights> to_weights(const std::vector<ModelTuple>& models) {
    std::vector<cc::ModelWeights> w;
    for (size_t i = 0; i < models.size(); ++i) w.push_back(to_weights(models[i], cc::model_prefix(i)));
    return w;
}

}  // namespace cc_nb
