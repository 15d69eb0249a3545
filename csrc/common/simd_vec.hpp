// The vector type and helpers shared by the kernel files that CMake compiles once per
// instruction set (csrc/engine/kernels_simd.cpp, csrc/train/kernels_simd.cpp). The including
// file's build sets CC_VEC_BYTES (vector width) and CC_NREG (vector registers to block for).
// Everything here has internal linkage (an unnamed namespace) on purpose: every copy is built
// with different target flags, and a shared inline symbol could hand AVX-512 code to a CPU
// without it. No standard-library inline functions for the same reason.
#pragma once

#if !defined(CC_VEC_BYTES) || !defined(CC_NREG)
#error "CC_VEC_BYTES and CC_NREG must be defined by the build"
#endif

namespace cc {
namespace vec {
namespace {

constexpr int W = CC_VEC_BYTES / 4;
typedef float vf __attribute__((vector_size(CC_VEC_BYTES)));

inline vf load(const float* p) { vf v; __builtin_memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
template <unsigned... I> struct lanes {};
template <unsigned N, unsigned... I> struct make_lanes : make_lanes<N - 1, N - 1, I...> {};
template <unsigned... I> struct make_lanes<0, I...> { using type = lanes<I...>; };
template <unsigned... I> inline vf splat_impl(float x, lanes<I...>) { return vf{((void)I, x)...}; }
inline vf splat(float x) { return splat_impl(x, typename make_lanes<W>::type{}); }  // one broadcast
inline vf relu(vf v) { const vf z{}; return v > z ? v : z; }

// Rows (pixels) per register tile of V column vectors: P*V accumulators + V loaded vectors + 1
// broadcast must fit in the register file, with the V vectors kept in registers (as memory
// operands they are reloaded for every row and the loads, not the FMAs, set the pace).
template <int V> constexpr int pix_block() {
    return CC_NREG == 32 ? (V == 4 ? 6 : V == 3 ? 8 : V == 2 ? 12 : 16) : (V == 2 ? 6 : 12);
}
constexpr int kMaxV = CC_NREG == 32 ? 4 : 2;

// Splits nv column vectors into blocks of at most kMaxV, avoiding a lone 1-vector block where
// two 2-vector blocks do (they block more rows).
inline int next_block(int rem) {
    if (rem >= kMaxV + 2 || rem == kMaxV) return kMaxV;
    if (rem > kMaxV) return rem - 2 <= kMaxV ? 2 : kMaxV;
    return rem;
}

}  // namespace
}  // namespace vec
}  // namespace cc
