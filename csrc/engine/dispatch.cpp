// ISA dispatch: CPU detection for the engine and training tables, stubs for absent variants.
#include <stdexcept>

#include "engine.hpp"
#include "../train/kernels.hpp"

namespace cc {

const KernelTable* select_kernels(const std::string& isa) {
    const KernelTable* t = nullptr;
    if (isa == "auto") {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && (t = kernels_avx512())) return t;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && (t = kernels_avx2()))
            return t;
#endif
        return kernels_sse2() ? kernels_sse2() : kernels_reference();
    }
    if (isa == "reference") return kernels_reference();
    if (isa == "sse2") t = kernels_sse2();
    else if (isa == "avx2" || isa == "emu512") {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            t = isa == "avx2" ? kernels_avx2() : kernels_emu512();
#endif
    } else if (isa == "avx512") {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) t = kernels_avx512();
#endif
    } else {
        throw std::invalid_argument("unknown isa '" + isa +
                                    "' (expected auto, avx512, avx2, emu512, sse2 or reference)");
    }
    if (!t) throw std::runtime_error("isa '" + isa + "' is not supported by this CPU or build");
    return t;
}

std::vector<std::string> available_isas() {
    std::vector<std::string> out;
    for (const char* name : {"avx512", "avx2", "emu512", "sse2", "reference"}) {
        try {
            select_kernels(name);
            out.emplace_back(name);
        } catch (const std::exception&) {
        }
    }
    return out;
}

namespace train {
const TrainKernels* select_train_kernels(const std::string& isa) {
    const std::string name = select_kernels(isa)->name;  // the engine's CPU detection decides
    const TrainKernels* t = name == "avx512" ? train_kernels_avx512()
                            : name == "avx2"   ? train_kernels_avx2()
                            : name == "emu512" ? train_kernels_emu512()
                            : name == "sse2"   ? train_kernels_sse2()
                                               : train_kernels_reference();
    if (!t) throw std::runtime_error("no training kernels for isa '" + name + "' in this build");
    return t;
}
}  // namespace train

// CMake defines CC_HAVE_<isa> for each variant it compiles (cc_kernel_variant); the others
// report themselves as absent.
#define CC_ABSENT_VARIANT(isa)                                        \
    const KernelTable* kernels_##isa() { return nullptr; }            \
    namespace train {                                                 \
    const TrainKernels* train_kernels_##isa() { return nullptr; }     \
    }
#ifndef CC_HAVE_avx512
CC_ABSENT_VARIANT(avx512)
#endif
#ifndef CC_HAVE_avx2
CC_ABSENT_VARIANT(avx2)
#endif
#ifndef CC_HAVE_emu512
CC_ABSENT_VARIANT(emu512)
#endif
#ifndef CC_HAVE_sse2
CC_ABSENT_VARIANT(sse2)
#endif
#undef CC_ABSENT_VARIANT

}  // namespace cc
