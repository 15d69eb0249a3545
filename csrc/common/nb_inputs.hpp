// Input checks at the Python boundary, shared by the CPU (_engine) and CUDA (_engine_cuda)
// bindings: errors name the argument and what was expected.
#pragma once
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <array>
#include <string>
#include <vector>

#include "model_types.hpp"

namespace cc_nb {

namespace nb = nanobind;

using FloatIn = nb::ndarray<const float, nb::c_contig, nb::device::cpu, nb::ro>;

inline std::vector<float> take(const FloatIn& a, size_t expect, const std::string& name) {
    if (a.size() != expect)
        throw nb::value_error((name + ": expected " + std::to_string(expect) + " values, got " +
                               std::to_string(a.size())).c_str());
    return std::vector<float>(a.data(), a.data() + a.size());
}

template <class A>
std::string shape_str(const A& a) {
    std::string s = "(";
    for (size_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
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

// A Plan's arrays -> ModelWeights, every size checked; `prefix` starts each error ("model 3: ").
inline cc::ModelWeights to_weights(std::array<int, 5> n, const FloatIn& w0, const FloatIn& b0,
                                   const std::vector<FloatIn>& dw, const std::vector<FloatIn>& pw,
                                   const std::vector<FloatIn>& pb, const FloatIn& readout,
                                   float readout_bias, const std::string& prefix = "") {
    for (int v : n)
        if (v < 1) throw nb::value_error((prefix + "filter counts must all be >= 1").c_str());
    if (dw.size() != 4 || pw.size() != 4 || pb.size() != 4)
        throw nb::value_error((prefix + "dw, pw and pb must each hold 4 arrays (layers 1-4)").c_str());
    cc::ModelWeights m;
    m.n = n;
    m.w0 = take(w0, size_t(n[0]) * 75, prefix + "w0");
    m.b0 = take(b0, n[0], prefix + "b0");
    for (int l = 0; l < 4; ++l) {
        const std::string s = std::to_string(l + 1);
        m.dw[l] = take(dw[l], size_t(n[l]) * 25, prefix + "dw" + s);
        m.pw[l] = take(pw[l], size_t(n[l]) * n[l + 1], prefix + "pw" + s);
        m.pb[l] = take(pb[l], n[l + 1], prefix + "pb" + s);
    }
    m.readout = take(readout, size_t(28 * 28) * n[4], prefix + "readout");
    m.readout_bias = readout_bias;
    return m;
}

}  // namespace cc_nb
