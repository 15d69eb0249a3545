// Engine workspaces: allocation, and the zero borders that a model's padded channel counts lay out.
#include "workspace.hpp"

namespace cc {
using namespace detail;

Engine::Workspace::Workspace(const std::array<int, 5>& np, int width)
    : in(size_t(kInPadW) * kInStride),
      wino_u(size_t(kBandTiles)),
      wino(size_t(wino0_scratch_floats(kImg, width))),
      ring(size_t(kRingRows) * kL0PadW * np[0]),
      zero_row(size_t(kL0PadW) * np[0]),
      l1(size_t(kL1PadW) * kL1PadW * np[1]),
      l2(size_t(kL2PadW) * kL2PadW * np[2]),
      l3(size_t(kL2PadW) * kL2PadW * np[3]),
      l4(size_t(kL2) * kL2 * np[4]),
      tmp(size_t(kL1) * std::max(std::max(np[0], np[1]), std::max(np[2], np[3]))) {}

std::unique_ptr<Engine::Workspace> Engine::make_workspace(const std::array<int, 5>& np_max, int width) {
    return std::unique_ptr<Workspace>(new Workspace(np_max, width));
}

namespace {
// Zeroes the border of an H x W x C channels-last map outside rows [top, H-bottom) and
// columns [left, W-right).
void zero_frame(float* map, int H, int W, int C, int top, int left, int bottom, int right) {
    for (int y = 0; y < H; ++y) {
        float* row = map + size_t(y) * W * C;
        if (y < top || y >= H - bottom) {
            std::fill(row, row + size_t(W) * C, 0.0f);
        } else {
            std::fill(row, row + size_t(left) * C, 0.0f);
            std::fill(row + size_t(W - right) * C, row + size_t(W) * C, 0.0f);
        }
    }
}
}  // namespace

void Engine::prepare(Workspace& ws) const {
    // The layer-0 input border and zero_row never change; the rest depends on this model's
    // padded channel counts, which set the layout of the buffers.
    for (int slot = 0; slot < kRingRows; ++slot)
        zero_frame(ws.ring.p + size_t(slot) * kL0PadW * np_[0], 1, kL0PadW, np_[0], 0, 1, 0, 2);
    zero_frame(ws.l1.p, kL1PadW, kL1PadW, np_[1], 1, 1, 2, 2);
    zero_frame(ws.l2.p, kL2PadW, kL2PadW, np_[2], 2, 2, 2, 2);
    zero_frame(ws.l3.p, kL2PadW, kL2PadW, np_[3], 2, 2, 2, 2);
}

}  // namespace cc
