// The training backward pass: readout, then per layer batchnorm and convolution gradients.
#include <stdexcept>

#include "workspace.hpp"

namespace cc {
namespace train {

void Tape::backward(const float* gout, const std::array<float*, kParams>* grads, float* dx) {
    if (!s_->ws || s_->used) throw std::runtime_error("backward was already run on this forward pass");
    s_->used = true;
    State& s = *s_;
    Impl& im = *s.impl;
    std::lock_guard<std::mutex> pass(im.mu);
    Laps laps(im);
    Workspace& ws = *s.ws;
    const TrainKernels& K = *im.k;
    const int64_t N = s.N;
    const auto& n = im.n;
    const bool want = grads != nullptr;  // else only dx: skip the weight-gradient products

    for (int l = 0; l < 5; ++l)
        if (ws.da[l].size() != ws.z[l].size()) ws.da[l].assign(ws.z[l].size(), 0.0f);
    const int64_t rsize = int64_t(28 * 28) * s.cp[4];
    for (auto& sc : ws.scratch) {
        sc.img_acc.assign(s.acc_size, 0.0f);
        sc.acc.assign(s.acc_size, 0.0);
        if (dx) {
            sc.dpatch.assign(size_t(kBandPixels) * kK0p, 0.0f);
            sc.dxpad.assign(size_t(kPadded) * kPadded * 3, 0.0f);
        }
    }
    auto flush_image = [&](Scratch& sc) {
        for (int64_t k = 0; k < s.acc_size; ++k) {
            sc.acc[k] += sc.img_acc[k];
            sc.img_acc[k] = 0.0f;
        }
    };

    // Readout: the gradient of layer 4's map, da (N, rsize) = G (N, K) R, in blocks of images;
    // its own weights' gradient dR (K, rsize) = G^T A, in blocks of columns.
    const int KK = s.K;
    im.for_images(blocks(N, kReadoutBlock), [&](int, int64_t b) {
        const int64_t i0 = b * kReadoutBlock, m = std::min<int64_t>(kReadoutBlock, N - i0);
        K.gemm(int(m), int(rsize), KK, gout + i0 * KK, KK, 1, s.R.data(), rsize, s.map(ws.da[4], 4, i0), rsize,
               false);
    });
    std::vector<float> dR;
    if (want) {
        dR.assign(size_t(KK) * rsize, 0.0f);
        const int64_t cols = round_up(int(std::min<int64_t>(rsize, 1024)), K.width);
        im.for_images(blocks(rsize, cols), [&](int, int64_t b) {
            const int64_t c0 = b * cols, w = std::min(cols, rsize - c0);
            K.gemm(KK, int(w), int(N), gout, 1, KK, s.map(ws.a[4], 4, 0) + c0, rsize, dR.data() + c0, rsize, false);
        });
    }

    laps.lap(kPhaseBackwardReadout);

    std::array<std::vector<float>, 5> dgamma, dbeta;
    std::vector<float> k1, k2, k3;
    for (int l = 4; l >= 0; --l) {
        const int H = kSize[l], cpo = s.cp[l], rows = std::max(1, kBandPixels / H);
        // Pass A: the batch sums the batchnorm backward needs (and its own gradients). Layer
        // 0's are summed by layer 1's pass B as its gradient rows complete.
        if (l > 0) {
            zero_stats(ws.scratch);
            im.for_images(N, [&](int tid, int64_t i) {
                Scratch& sc = ws.scratch[tid];
                for (int y0 = 0; y0 < H; y0 += rows) {
                    const int64_t off = int64_t(y0) * H * cpo;
                    const int P = std::min(rows, H - y0) * H;
                    K.bn_back_stats(s.map(ws.da[l], l, i) + off, s.map(ws.z[l], l, i) + off, P, cpo,
                                    s.scale[l].data(), s.shift[l].data(), s.mu[l].data(), s.rstd[l].data(),
                                    sc.fa.data(), sc.fb.data());
                    flush_stats(sc, cpo);
                }
            });
        }
        const double M = double(N) * H * H;
        dgamma[l].assign(cpo, 0.0f);
        dbeta[l].assign(cpo, 0.0f);
        k1.assign(cpo, 0.0f);
        k2.assign(cpo, 0.0f);
        k3.assign(cpo, 0.0f);
        for (int cj = 0; cj < s.c[l]; ++cj) {
            double sg = 0, sgx = 0;
            for (auto& sc : ws.scratch) { sg += sc.sa[cj]; sgx += sc.sb[cj]; }
            dbeta[l][cj] = float(sg);
            dgamma[l][cj] = float(sgx);
            const double a1 = double(s.gamma[l][cj]) * s.rstd[l][cj];
            k1[cj] = float(a1);
            if (s.cfg.training) {  // dz = a1 * (g - mean(g) - xhat * mean(g * xhat))
                const double mg = sg / M, mgx = sgx / M, r = s.rstd[l][cj];
                k2[cj] = float(-a1 * r * mgx);
                k3[cj] = float(-a1 * mg + a1 * r * mgx * s.mu[l][cj]);
            }
        }
        // Pass B: the convolution's gradients, band by band; dz is never stored.
        if (l >= 1) {
            const int cpi = s.cp[l - 1], Hin = kSize[l - 1];
            const int64_t rs = int64_t(Hin) * cpi;
            if (l == 1) zero_stats(ws.scratch);  // layer 0's pass A happens here
            im.for_images(N, [&](int tid, int64_t i) {
                Scratch& sc = ws.scratch[tid];
                InputRows in = input_rows(s, ws, sc, l, i);
                float* din = s.map(ws.da[l - 1], l - 1, i);
                // Layer 1 gathers layer 0's gradient rows in a ring and writes each row out once,
                // with its batchnorm sums, when no later output row reads it.
                const bool ring = l == 1;
                int zeroed = 0, done = 0;
                auto grad_row = [&](int yi) -> float* {
                    if (!ring) return din + yi * rs;
                    for (; zeroed <= yi; ++zeroed)
                        std::fill_n(sc.ring_da.data() + (zeroed % kRing) * rs, rs, 0.0f);
                    return sc.ring_da.data() + (yi % kRing) * rs;
                };
                auto finish_rows = [&](int upto) {
                    for (; done <= upto; ++done) {
                        const float* src = sc.ring_da.data() + (done % kRing) * rs;
                        const float* z0 = s.map(ws.z[0], 0, i) + done * rs;
                        K.bn_back_stats(src, z0, Hin, cpi, s.scale[0].data(), s.shift[0].data(), s.mu[0].data(),
                                        s.rstd[0].data(), sc.fa.data(), sc.fb.data());
                        flush_stats(sc, cpi);
                        std::copy_n(src, rs, din + done * rs);
                    }
                };
                if (!ring) std::fill(din, din + int64_t(Hin) * rs, 0.0f);
                for (int y0 = 0; y0 < H; y0 += rows) {
                    const int nr = std::min(rows, H - y0), P = nr * H;
                    const int64_t off = int64_t(y0) * H * cpo;
                    K.bn_back(s.map(ws.da[l], l, i) + off, s.map(ws.z[l], l, i) + off, P, cpo, s.scale[l].data(),
                              s.shift[l].data(), k1.data(), k2.data(), k3.data(), sc.dzband.data(),
                              sc.img_acc.data() + s.off_pb[l]);
                    for (int r = 0; r < nr; ++r) {  // recompute the depthwise output
                        const float* ir[5];
                        in.rows_for(y0 + r, ir);
                        K.dw_row(ir, Hin, kPad[l], kStride[l], H, s.dw[l].data(), cpi,
                                 sc.dband.data() + int64_t(r) * H * cpi);
                    }
                    if (want)
                        K.gemm(s.c[l - 1], cpo, P, sc.dband.data(), 1, cpi, sc.dzband.data(), cpo,
                               sc.img_acc.data() + s.off_pwT[l], cpo, true);
                    K.gemm(P, cpi, s.c[l], sc.dzband.data(), cpo, 1, s.pwB[l].data(), cpi, sc.ddband.data(),
                           cpi, false);
                    for (int r = 0; r < nr; ++r) {
                        const float* ir[5];
                        float* dr[5];
                        in.rows_for(y0 + r, ir);
                        for (int ky = 0; ky < 5; ++ky) {
                            const int yi = kStride[l] * (y0 + r) + ky - kPad[l];
                            dr[ky] = ir[ky] ? grad_row(yi) : nullptr;
                        }
                        K.dw_row_backward(ir, dr, Hin, kPad[l], kStride[l], H, s.dw[l].data(),
                                          sc.ddband.data() + int64_t(r) * H * cpi, cpi,
                                          sc.img_acc.data() + s.off_dw[l]);
                    }
                    // Rows no later output row reads: r + pad < stride * (last output row + 1).
                    if (ring) finish_rows(y0 + nr >= H ? Hin - 1 : kStride[l] * (y0 + nr) - kPad[l] - 1);
                }
                flush_image(sc);
            });
        } else {
            im.for_images(N, [&](int tid, int64_t i) {
                Scratch& sc = ws.scratch[tid];
                const float* xpad = ws.xpad.data() + i * kPadded * kPadded * 3;
                if (dx) std::fill(sc.dxpad.begin(), sc.dxpad.end(), 0.0f);
                for (int y = 0; y < H; ++y) {
                    const int64_t off = int64_t(y) * H * cpo;
                    K.bn_back(s.map(ws.da[0], 0, i) + off, s.map(ws.z[0], 0, i) + off, H, cpo, s.scale[0].data(),
                              s.shift[0].data(), k1.data(), k2.data(), k3.data(), sc.dzband.data(),
                              sc.img_acc.data() + s.off_b0);
                    if (want) {
                        im2col(xpad, y, sc.patches.data());
                        K.gemm(kK0, cpo, H, sc.patches.data(), 1, kK0, sc.dzband.data(), cpo,
                               sc.img_acc.data() + s.off_w0T, cpo, true);
                    }
                    if (dx) {
                        K.gemm(H, kK0p, s.c[0], sc.dzband.data(), cpo, 1, s.w0p.data(), kK0p, sc.dpatch.data(),
                               kK0p, false);
                        for (int xx = 0; xx < H; ++xx)
                            for (int ky = 0; ky < 5; ++ky) {
                                float* d = sc.dxpad.data() + (int64_t(y + ky) * kPadded + xx) * 3;
                                const float* g = sc.dpatch.data() + xx * kK0p + ky * 15;
                                for (int j = 0; j < 15; ++j) d[j] += g[j];
                            }
                    }
                }
                if (dx) {
                    float* dst = dx + i * 3 * 112 * 112;
                    for (int ci = 0; ci < 3; ++ci)
                        for (int y = 0; y < 112; ++y)
                            for (int xx = 0; xx < 112; ++xx)
                                dst[(int64_t(ci) * 112 + y) * 112 + xx] =
                                    sc.dxpad[(int64_t(y + 2) * kPadded + xx + 2) * 3 + ci];
                }
                flush_image(sc);
            });
        }
        laps.lap(kPhaseBackward4 + (4 - l));
    }

    if (!want) {
        im.give_back(std::move(s.ws));
        return;
    }
    // Sum the threads' accumulators and scatter into PyTorch's layouts (zeros where masked).
    std::vector<double> acc(s.acc_size, 0.0);
    for (auto& sc : ws.scratch)
        for (size_t k = 0; k < acc.size(); ++k) acc[k] += sc.acc[k];
    unpack_grads(s, n, acc, dgamma, dbeta, dR, gout, *grads);
    laps.lap(kPhaseFinish);
    // The feature maps are no longer needed: hand the workspace back for the next step.
    im.give_back(std::move(s.ws));
}

}  // namespace train
}  // namespace cc
