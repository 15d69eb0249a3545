// Checked conversion of a model's arrays into ModelWeights, free of nanobind (emulate.cpp uses it).
#pragma once
#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "model_types.hpp"

namespace cc {

// Throws std::invalid_argument "<name>: expected <expect> <unit>, got <got>" unless they agree.
inline void check_count(size_t got, size_t expect, const std::string& name, const char* unit = "values") {
    if (got != expect)
        throw std::invalid_argument(name + ": expected " + std::to_string(expect) + " " + unit + ", got " +
                                    std::to_string(got));
}

// `size` floats at `data`.
struct FloatView {
    const float* data;
    size_t size;
};

// One model's arrays in a Plan's layout: n, w0, b0, dw, pw, pb (layers 1-4), readout, readout_bias.
struct ModelArrays {
    std::array<int, 5> n;
    FloatView w0, b0;
    std::vector<FloatView> dw, pw, pb;
    FloatView readout;
    float readout_bias;
};

// Errors name the array after `prefix` ("model 3: ").
inline ModelWeights to_weights(const ModelArrays& a, const std::string& prefix = "") {
    for (int v : a.n)
        if (v < 1) throw std::invalid_argument(prefix + "filter counts must all be >= 1");
    if (a.dw.size() != 4 || a.pw.size() != 4 || a.pb.size() != 4)
        throw std::invalid_argument(prefix + "dw, pw and pb must each hold 4 arrays (layers 1-4)");
    auto take = [&](const FloatView& v, size_t expect, const std::string& name) {
        check_count(v.size, expect, prefix + name);
        return std::vector<float>(v.data, v.data + v.size);
    };
    const auto& n = a.n;
    ModelWeights m;
    m.n = n;
    m.w0 = take(a.w0, size_t(n[0]) * 75, "w0");
    m.b0 = take(a.b0, n[0], "b0");
    for (int l = 0; l < 4; ++l) {
        const std::string s = std::to_string(l + 1);
        m.dw[l] = take(a.dw[l], size_t(n[l]) * 25, "dw" + s);
        m.pw[l] = take(a.pw[l], size_t(n[l]) * n[l + 1], "pw" + s);
        m.pb[l] = take(a.pb[l], n[l + 1], "pb" + s);
    }
    m.readout = take(a.readout, size_t(28 * 28) * n[4], "readout");
    m.readout_bias = a.readout_bias;
    return m;
}

// The prefix of model i's errors in a list of models.
inline std::string model_prefix(size_t i) { return "model " + std::to_string(i) + ": "; }

}  // namespace cc
