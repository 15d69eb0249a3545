// The training kernel table for an instruction-set name (common/isa.hpp decides which, as it
// does for the engine).
#include "kernels.hpp"
#include "../common/isa.hpp"

namespace cc {
namespace train {

const TrainKernels* select_train_kernels(const std::string& isa) {
    return pick_table(isa, train_kernels_avx512, train_kernels_avx2, train_kernels_emu512, train_kernels_sse2,
                      train_kernels_reference);
}

// Variants this build did not compile (resolve_isa never names them).
#ifndef CC_HAVE_avx512
const TrainKernels* train_kernels_avx512() { return nullptr; }
#endif
#ifndef CC_HAVE_avx2
const TrainKernels* train_kernels_avx2() { return nullptr; }
#endif
#ifndef CC_HAVE_emu512
const TrainKernels* train_kernels_emu512() { return nullptr; }
#endif
#ifndef CC_HAVE_sse2
const TrainKernels* train_kernels_sse2() { return nullptr; }
#endif

}  // namespace train
}  // namespace cc
