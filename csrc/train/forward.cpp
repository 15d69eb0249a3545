// The training forward pass: convolutions with batch statistics, batchnorm + ReLU, readout.
#include <cmath>
#include <stdexcept>

#include "workspace.hpp"

namespace cc {
namespace train {

std::unique_ptr<Tape> Trainer::forward(const float* x, int64_t N, const std::array<const float*, kParams>& params,
                                       const std::array<float*, 10>& running, const StepConfig& cfg,
                                       float* out) {
    Impl& im = *impl_;
    if (N < 1) throw std::invalid_argument("empty batch");
    auto st = std::make_unique<Tape::State>();
    Tape::State& s = *st;
    s.impl = impl_;
    s.cfg = cfg;
    s.N = N;
    for (int l = 0; l < 5; ++l) {
        s.c[l] = int(cfg.active[l].size());
        s.cp[l] = round_up(s.c[l], im.k->width);
    }
    s.K = im.outputs;
    s.Kp = round_up(s.K, im.k->width);
    pack(s, im.n, params);
    std::lock_guard<std::mutex> pass(im.mu);
    s.ws = im.take(N, s.cp);
    Laps laps(im);
    if (!s.ws) s.ws = make_workspace(N, s.cp, im.pool.size());
    Workspace& ws = *s.ws;
    const TrainKernels& K = *im.k;

    // Images -> channels-last with a zero border of 2 (the border is never written).
    im.for_images(N, [&](int, int64_t i) {
        float* dst = ws.xpad.data() + i * kPadded * kPadded * 3;
        const float* src = x + i * 3 * 112 * 112;
        for (int y = 0; y < 112; ++y)
            for (int xx = 0; xx < 112; ++xx)
                for (int ci = 0; ci < 3; ++ci)
                    dst[(int64_t(y + 2) * kPadded + xx + 2) * 3 + ci] = src[(int64_t(ci) * 112 + y) * 112 + xx];
    });
    laps.lap(kPhasePrepare);

    for (int l = 0; l < 5; ++l) {
        const int H = kSize[l], cpo = s.cp[l];
        zero_stats(ws.scratch);
        // Convolution, bias and batch statistics, one band of rows at a time.
        if (l == 0) {
            im.for_images(N, [&](int tid, int64_t i) {
                Scratch& sc = ws.scratch[tid];
                for (int y = 0; y < H; ++y) {
                    im2col(ws.xpad.data() + i * kPadded * kPadded * 3, y, sc.patches.data());
                    float* z = s.map(ws.z[0], 0, i) + int64_t(y) * H * cpo;
                    K.gemm(H, cpo, kK0, sc.patches.data(), kK0, 1, s.w0T.data(), cpo, z, cpo, false);
                    K.bias_stats(z, H, cpo, s.b0.data(), sc.fa.data(), sc.fb.data());
                    flush_stats(sc, cpo);
                }
            });
        } else {
            const int cpi = s.cp[l - 1], rows = std::max(1, kBandPixels / H);
            im.for_images(N, [&](int tid, int64_t i) {
                Scratch& sc = ws.scratch[tid];
                InputRows in = input_rows(s, ws, sc, l, i);
                for (int y0 = 0; y0 < H; y0 += rows) {
                    const int nr = std::min(rows, H - y0), P = nr * H;
                    for (int r = 0; r < nr; ++r) {
                        const float* ir[5];
                        in.rows_for(y0 + r, ir);
                        K.dw_row(ir, kSize[l - 1], kPad[l], kStride[l], H, s.dw[l].data(), cpi,
                                 sc.dband.data() + int64_t(r) * H * cpi);
                    }
                    float* z = s.map(ws.z[l], l, i) + int64_t(y0) * H * cpo;
                    K.gemm(P, cpo, s.c[l - 1], sc.dband.data(), cpi, 1, s.pwT[l].data(), cpo, z, cpo, false);
                    K.bias_stats(z, P, cpo, s.pb[l].data(), sc.fa.data(), sc.fb.data());
                    flush_stats(sc, cpo);
                }
            });
        }
        // Batchnorm statistics: the batch's (training) or the running ones.
        const double M = double(N) * H * H;
        s.mu[l].assign(cpo, 0.0f);
        s.rstd[l].assign(cpo, 0.0f);
        std::vector<float>& scale = s.scale[l];
        std::vector<float>& shift = s.shift[l];
        scale.assign(cpo, 0.0f);
        shift.assign(cpo, 0.0f);
        float* rm = running[2 * l];
        float* rv = running[2 * l + 1];
        for (int cj = 0; cj < s.c[l]; ++cj) {
            const int j = cfg.active[l][cj];
            double mean, var;
            if (cfg.training) {
                double sum = 0, sumsq = 0;
                for (auto& sc : ws.scratch) { sum += sc.sa[cj]; sumsq += sc.sb[cj]; }
                mean = sum / M;
                var = std::max(0.0, sumsq / M - mean * mean);
                const double m = cfg.momentum;
                rm[j] = float((1 - m) * rm[j] + m * mean);
                rv[j] = float((1 - m) * rv[j] + m * var * (M > 1 ? M / (M - 1) : 1.0));
            } else {
                mean = rm[j];
                var = rv[j];
            }
            const double r = 1.0 / std::sqrt(var + cfg.eps[l]);
            s.mu[l][cj] = float(mean);
            s.rstd[l][cj] = float(r);
            scale[cj] = float(s.gamma[l][cj] * r);
            shift[cj] = float(s.beta[l][cj] - mean * s.gamma[l][cj] * r);
        }
        if (l > 0)  // layer 0's activations are recomputed where needed (InputRows)
            im.for_images(N, [&](int, int64_t i) {
                K.bn_relu(s.map(ws.z[l], l, i), H * H, cpo, scale.data(), shift.data(), s.map(ws.a[l], l, i));
            });
        laps.lap(kPhaseForward0 + l);
    }
    // Readout over the (H, W, C) map: out (N, K) = A (N, rsize) RT, in blocks of images.
    const int64_t rsize = int64_t(28 * 28) * s.cp[4];
    std::vector<float> outp(size_t(N) * s.Kp);
    im.for_images(blocks(N, kReadoutBlock), [&](int, int64_t b) {
        const int64_t i0 = b * kReadoutBlock, m = std::min<int64_t>(kReadoutBlock, N - i0);
        K.gemm(int(m), s.Kp, int(rsize), s.map(ws.a[4], 4, i0), rsize, 1, s.RT.data(), s.Kp,
               outp.data() + i0 * s.Kp, s.Kp, false);
    });
    for (int64_t i = 0; i < N; ++i)
        for (int k = 0; k < s.K; ++k) out[i * s.K + k] = outp[i * s.Kp + k] + s.rb[k];
    laps.lap(kPhaseForwardReadout);
    auto tape = std::unique_ptr<Tape>(new Tape());
    tape->s_ = std::move(st);
    return tape;
}

}  // namespace train
}  // namespace cc
