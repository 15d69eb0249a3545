// The engine's kernel table for an instruction-set name (common/isa.hpp decides which).
#include "engine.hpp"
#include "../common/isa.hpp"

namespace cc {

const KernelTable* select_kernels(const std::string& isa) {
    return pick_table(isa, kernels_avx512, kernels_avx2, kernels_emu512, kernels_sse2, kernels_reference);
}

// Variants this build did not compile (resolve_isa never names them).
#ifndef CC_HAVE_avx512
const KernelTable* kernels_avx512() { return nullptr; }
#endif
#ifndef CC_HAVE_avx2
const KernelTable* kernels_avx2() { return nullptr; }
#endif
#ifndef CC_HAVE_emu512
const KernelTable* kernels_emu512() { return nullptr; }
#endif
#ifndef CC_HAVE_sse2
const KernelTable* kernels_sse2() { return nullptr; }
#endif

}  // namespace cc
