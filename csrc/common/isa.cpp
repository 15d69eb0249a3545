#include "isa.hpp"

#include <stdexcept>

namespace cc {
namespace {

// CMake defines CC_HAVE_<isa> for each variant it compiles (cc_kernel_variant).
bool built(const std::string& isa) {
    if (isa == "reference") return true;
#ifdef CC_HAVE_avx512
    if (isa == "avx512") return true;
#endif
#ifdef CC_HAVE_avx2
    if (isa == "avx2") return true;
#endif
#ifdef CC_HAVE_emu512
    if (isa == "emu512") return true;
#endif
#ifdef CC_HAVE_sse2
    if (isa == "sse2") return true;  // on aarch64: the 128-bit generic-vector build (NEON)
#endif
    return false;
}

bool cpu_supports(const std::string& isa) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (isa == "avx512") return __builtin_cpu_supports("avx512f");
    if (isa == "avx2" || isa == "emu512") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return isa == "sse2" || isa == "reference";
#else
    return isa == "sse2" || isa == "reference";
#endif
}

}  // namespace

std::string resolve_isa(const std::string& isa) {
    if (isa == "auto") {
        for (const char* name : {"avx512", "avx2", "sse2"})
            if (built(name) && cpu_supports(name)) return name;
        return "reference";
    }
    if (isa != "avx512" && isa != "avx2" && isa != "emu512" && isa != "sse2" && isa != "reference")
        throw std::invalid_argument("unknown isa '" + isa +
                                    "' (expected auto, avx512, avx2, emu512, sse2 or reference)");
    if (!built(isa) || !cpu_supports(isa))
        throw std::runtime_error("isa '" + isa + "' is not supported by this CPU or build");
    return isa;
}

std::vector<std::string> available_isas() {
    std::vector<std::string> out;
    for (const char* name : {"avx512", "avx2", "emu512", "sse2", "reference"})
        if (built(name) && cpu_supports(name)) out.emplace_back(name);
    return out;
}

}  // namespace cc
