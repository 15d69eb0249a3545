// Training weight packing: parameters into the kernels' compact padded layouts, gradients back.
#include "workspace.hpp"

namespace cc {
namespace train {

std::array<int64_t, kParams> param_sizes(const std::array<int, 5>& n, int outputs) {
    std::array<int64_t, kParams> s{};
    s[0] = int64_t(n[0]) * kK0;
    s[1] = s[2] = s[3] = n[0];
    for (int l = 1; l < 5; ++l) {
        const int b = param_base(l);
        s[b] = int64_t(n[l - 1]) * 25;
        s[b + 1] = int64_t(n[l]) * n[l - 1];
        s[b + 2] = s[b + 3] = s[b + 4] = n[l];
    }
    s[24] = int64_t(outputs) * 28 * 28 * n[4];
    s[25] = outputs;
    return s;
}

void pack(Tape::State& s, const std::array<int, 5>& n, const std::array<const float*, kParams>& P) {
    const auto& act = s.cfg.active;
    const int cp0 = s.cp[0];
    s.w0T.assign(size_t(kK0) * cp0, 0.0f);
    s.w0p.assign(size_t(s.c[0]) * kK0p, 0.0f);
    for (int cj = 0; cj < s.c[0]; ++cj) {
        const int j = act[0][cj];
        for (int ci = 0; ci < 3; ++ci)
            for (int ky = 0; ky < 5; ++ky)
                for (int kx = 0; kx < 5; ++kx) {
                    const float v = P[0][((j * 3 + ci) * 5 + ky) * 5 + kx];
                    const int k = ky * 15 + kx * 3 + ci;
                    s.w0T[size_t(k) * cp0 + cj] = v;
                    s.w0p[size_t(cj) * kK0p + k] = v;
                }
    }
    s.b0.assign(cp0, 0.0f);
    for (int cj = 0; cj < s.c[0]; ++cj) s.b0[cj] = P[1][act[0][cj]];
    for (int l = 0; l < 5; ++l) {
        const float* g = l == 0 ? P[2] : P[param_base(l) + 3];
        const float* b = l == 0 ? P[3] : P[param_base(l) + 4];
        s.gamma[l].assign(s.cp[l], 0.0f);
        s.beta[l].assign(s.cp[l], 0.0f);
        for (int cj = 0; cj < s.c[l]; ++cj) {
            s.gamma[l][cj] = g[act[l][cj]];
            s.beta[l][cj] = b[act[l][cj]];
        }
    }
    for (int l = 1; l < 5; ++l) {
        const int base = param_base(l), ci_n = s.c[l - 1], cpi = s.cp[l - 1], co_n = s.c[l], cpo = s.cp[l];
        s.dw[l].assign(size_t(25) * cpi, 0.0f);
        for (int cj = 0; cj < ci_n; ++cj)
            for (int t = 0; t < 25; ++t) s.dw[l][size_t(t) * cpi + cj] = P[base][act[l - 1][cj] * 25 + t];
        s.pwT[l].assign(size_t(ci_n) * cpo, 0.0f);
        s.pwB[l].assign(size_t(co_n) * cpi, 0.0f);
        for (int co = 0; co < co_n; ++co)
            for (int ci = 0; ci < ci_n; ++ci) {
                const float v = P[base + 1][int64_t(act[l][co]) * n[l - 1] + act[l - 1][ci]];
                s.pwT[l][size_t(ci) * cpo + co] = v;
                s.pwB[l][size_t(co) * cpi + ci] = v;
            }
        s.pb[l].assign(cpo, 0.0f);
        for (int co = 0; co < co_n; ++co) s.pb[l][co] = P[base + 2][act[l][co]];
    }
    const int64_t rsize = int64_t(28 * 28) * s.cp[4], D = int64_t(28 * 28) * n[4];
    s.R.assign(size_t(s.K) * rsize, 0.0f);
    s.RT.assign(size_t(rsize) * s.Kp, 0.0f);
    for (int k = 0; k < s.K; ++k)
        for (int hw = 0; hw < 28 * 28; ++hw)
            for (int cj = 0; cj < s.c[4]; ++cj) {
                const float v = P[24][k * D + int64_t(hw) * n[4] + act[4][cj]];
                s.R[k * rsize + int64_t(hw) * s.cp[4] + cj] = v;
                s.RT[(int64_t(hw) * s.cp[4] + cj) * s.Kp + k] = v;
            }
    s.rb.assign(P[25], P[25] + s.K);

    int64_t off = 0;
    s.off_w0T = off; off += int64_t(kK0) * cp0;
    s.off_b0 = off; off += cp0;
    for (int l = 1; l < 5; ++l) {
        s.off_dw[l] = off; off += int64_t(25) * s.cp[l - 1];
        s.off_pwT[l] = off; off += int64_t(s.c[l - 1]) * s.cp[l];
        s.off_pb[l] = off; off += s.cp[l];
    }
    s.acc_size = off;
}

void unpack_grads(const Tape::State& s, const std::array<int, 5>& n, const std::vector<double>& acc,
                  const std::array<std::vector<float>, 5>& dgamma,
                  const std::array<std::vector<float>, 5>& dbeta, const std::vector<float>& dR,
                  const float* gout, const std::array<float*, kParams>& G) {
    const auto& act = s.cfg.active;
    const int KK = s.K;
    const int64_t rsize = int64_t(28 * 28) * s.cp[4];
    // A bias added before a training-mode batchnorm is subtracted again with the batch mean:
    // its gradient is exactly zero (the sum of dz is only rounding noise).
    auto bias_grad = [&](double sum) { return s.cfg.training ? 0.0f : float(sum); };
    const auto sizes = param_sizes(n, KK);
    for (int p = 0; p < kParams; ++p) std::fill(G[p], G[p] + sizes[p], 0.0f);
    for (int cj = 0; cj < s.c[0]; ++cj) {
        const int j = act[0][cj];
        for (int ci = 0; ci < 3; ++ci)
            for (int ky = 0; ky < 5; ++ky)
                for (int kx = 0; kx < 5; ++kx)
                    G[0][((j * 3 + ci) * 5 + ky) * 5 + kx] =
                        float(acc[s.off_w0T + int64_t(ky * 15 + kx * 3 + ci) * s.cp[0] + cj]);
        G[1][j] = bias_grad(acc[s.off_b0 + cj]);
    }
    for (int l = 0; l < 5; ++l) {
        float* dg = l == 0 ? G[2] : G[param_base(l) + 3];
        float* db = l == 0 ? G[3] : G[param_base(l) + 4];
        for (int cj = 0; cj < s.c[l]; ++cj) {
            dg[act[l][cj]] = dgamma[l][cj];
            db[act[l][cj]] = dbeta[l][cj];
        }
    }
    for (int l = 1; l < 5; ++l) {
        const int base = param_base(l);
        for (int ci = 0; ci < s.c[l - 1]; ++ci) {
            const int ji = act[l - 1][ci];
            for (int t = 0; t < 25; ++t) G[base][ji * 25 + t] = float(acc[s.off_dw[l] + int64_t(t) * s.cp[l - 1] + ci]);
            for (int co = 0; co < s.c[l]; ++co)
                G[base + 1][int64_t(act[l][co]) * n[l - 1] + ji] =
                    float(acc[s.off_pwT[l] + int64_t(ci) * s.cp[l] + co]);
        }
        for (int co = 0; co < s.c[l]; ++co) G[base + 2][act[l][co]] = bias_grad(acc[s.off_pb[l] + co]);
    }
    const int64_t D = int64_t(28 * 28) * n[4];
    for (int k = 0; k < KK; ++k) {
        for (int hw = 0; hw < 28 * 28; ++hw)
            for (int cj = 0; cj < s.c[4]; ++cj)
                G[24][k * D + int64_t(hw) * n[4] + act[4][cj]] = dR[k * rsize + int64_t(hw) * s.cp[4] + cj];
        double sum = 0;
        for (int64_t i = 0; i < s.N; ++i) sum += gout[i * KK + k];
        G[25][k] = float(sum);
    }
}

}  // namespace train
}  // namespace cc
