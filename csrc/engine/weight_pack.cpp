// Engine construction: a model's weights packed for one kernel table, Winograd transform included.
#include <cmath>

#include "workspace.hpp"

namespace cc {
using namespace detail;

namespace {
// Winograd F(4x4,5x5) weight transform G w G^T, in double, packed as [Cp/W][i][j][ci][W].
std::vector<float> wino_pack(const std::vector<float>& w0, int n0, int Cp, int W) {
    const double pts[7] = {0, 1, -1, 2, -2, 0.5, -0.5};
    double G[8][5] = {};
    for (int i = 0; i < 7; ++i) {
        double norm = 1;
        for (int j = 0; j < 7; ++j)
            if (j != i) norm *= pts[i] - pts[j];
        for (int k = 0; k < 5; ++k) G[i][k] = std::pow(pts[i], k) / norm;
    }
    G[7][4] = 1;  // the point at infinity
    std::vector<float> V(size_t(64) * 3 * Cp, 0.0f);
    for (int c = 0; c < n0; ++c)
        for (int ci = 0; ci < 3; ++ci)
            for (int i = 0; i < 8; ++i)
                for (int j = 0; j < 8; ++j) {
                    double acc = 0;
                    for (int ky = 0; ky < 5; ++ky)
                        for (int kx = 0; kx < 5; ++kx)
                            acc += G[i][ky] * w0[((c * 3 + ci) * 5 + ky) * 5 + kx] * G[j][kx];
                    V[((size_t(c / W) * 64 + i * 8 + j) * 3 + ci) * W + c % W] = float(acc);
                }
    return V;
}
}  // namespace

Engine::Engine(const ModelWeights& m, const KernelTable* k, int threads, std::array<float, 3> mean,
               bool winograd)
    : k_(k), n_(m.n), mean_(mean), winograd_(winograd), readout_bias_(m.readout_bias),
      pool_(threads < 1 ? 1 : threads) {
    for (int i = 0; i < 5; ++i) np_[i] = round_up(n_[i], k_->width);
    // Index of (channel c, reduction index k) in a vector-major [Cp/W][K][W] weight array.
    const int W = k_->width;
    auto vec_major = [W](int c, int k, int K) { return (size_t(c / W) * K + k) * W + c % W; };

    // Layer 0: (n0,3,5,5) -> [ky][kx*3+ci][C0p].
    w0_.assign(size_t(75) * np_[0], 0.0f);
    b0_.assign(np_[0], 0.0f);
    if (winograd_) wino_v_ = wino_pack(m.w0, n_[0], np_[0], W);
    for (int c = 0; c < n_[0]; ++c) {
        b0_[c] = m.b0[c];
        for (int ci = 0; ci < 3; ++ci)
            for (int ky = 0; ky < 5; ++ky)
                for (int kx = 0; kx < 5; ++kx)
                    w0_[vec_major(c, ky * 15 + kx * 3 + ci, 75)] = m.w0[((c * 3 + ci) * 5 + ky) * 5 + kx];
    }
    // Layers 1-4: depthwise (n_in,5,5) -> [ky*5+kx][Cin_p]; pointwise (n_out,n_in) -> [k][Cout_p].
    for (int l = 0; l < 4; ++l) {
        const int ni = n_[l], no = n_[l + 1], nip = np_[l], nop = np_[l + 1];
        dw_[l].assign(size_t(25) * nip, 0.0f);
        for (int c = 0; c < ni; ++c)
            for (int t = 0; t < 25; ++t) dw_[l][t * nip + c] = m.dw[l][c * 25 + t];
        pw_[l].assign(size_t(ni) * nop, 0.0f);
        pb_[l].assign(nop, 0.0f);
        for (int o = 0; o < no; ++o) {
            pb_[l][o] = m.pb[l][o];
            for (int c = 0; c < ni; ++c) pw_[l][vec_major(o, c, ni)] = m.pw[l][o * ni + c];
        }
    }
    // Readout: (28,28,n4) -> (28,28,C4p).
    readout_.assign(size_t(kL2) * kL2 * np_[4], 0.0f);
    for (int p = 0; p < kL2 * kL2; ++p)
        for (int c = 0; c < n_[4]; ++c) readout_[p * np_[4] + c] = m.readout[p * n_[4] + c];

    for (int t = 0; t < pool_.size(); ++t) ws_.emplace_back(new Workspace(np_, W));
}

Engine::~Engine() = default;

}  // namespace cc
