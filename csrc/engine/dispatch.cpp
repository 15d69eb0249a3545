// Kernel variants that this build did not compile report themselves as absent.
#include "kernels.hpp"
#include "../train/kernels.hpp"

namespace cc {
#ifndef CC_HAVE_avx512
const KernelTable* kernels_avx512() { return nullptr; }
namespace train {
const TrainKernels* train_kernels_avx512() { return nullptr; }
}
#endif
#ifndef CC_HAVE_avx2
const KernelTable* kernels_avx2() { return nullptr; }
namespace train {
const TrainKernels* train_kernels_avx2() { return nullptr; }
}
#endif
#ifndef CC_HAVE_emu512
const KernelTable* kernels_emu512() { return nullptr; }
namespace train {
const TrainKernels* train_kernels_emu512() { return nullptr; }
}
#endif
#ifndef CC_HAVE_sse2
const KernelTable* kernels_sse2() { return nullptr; }
namespace train {
const TrainKernels* train_kernels_sse2() { return nullptr; }
}
#endif
}  // namespace cc
