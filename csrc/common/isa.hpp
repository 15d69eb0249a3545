// Instruction-set variants of the vector kernels: which the CPU supports and which this build
// compiled. The engine's and the training kernels each have one table per variant and pick it by
// the name resolve_isa returns, so both families always agree on what "auto" means.
#pragma once
#include <string>
#include <vector>

namespace cc {

// The variant to run for a request: "auto" gives the widest the CPU supports and the build has
// ("avx512", "avx2", "sse2", else "reference"); a name is returned if usable. Throws
// std::invalid_argument for an unknown name (ValueError in Python) and std::runtime_error for a
// variant this CPU or build lacks (RuntimeError).
std::string resolve_isa(const std::string& isa);

// Every variant resolve_isa accepts here, widest first ("emu512" is the 16-wide code compiled
// for AVX2, which exists to test that code on machines without AVX-512).
std::vector<std::string> available_isas();

// The table of the variant resolve_isa picks, from one table function per variant.
template <class T>
const T* pick_table(const std::string& isa, const T* (*avx512)(), const T* (*avx2)(), const T* (*emu512)(),
                    const T* (*sse2)(), const T* (*reference)()) {
    const std::string name = resolve_isa(isa);
    return (name == "avx512" ? avx512 : name == "avx2" ? avx2 : name == "emu512" ? emu512 : name == "sse2" ? sse2 : reference)();
}

}  // namespace cc
