"""Channel statistics for pruning: means and covariances of what each layer's filters feed forward.

For layer l = 1..4 the statistics are of the depthwise outputs (one channel per filter of layer
l-1) over images and positions; the filters' contributions to layer l's pre-activation output are
``pw[:, j] * d_j``, so their variances and every ablation's error follow from these moments. For
the readout they are of the per-image contributions ``sum_{h,w} readout[h,w,j] * a4[h,w,j]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ChannelStats", "channel_stats", "channel_stats_torch", "STAT_NAMES"]

STAT_NAMES = ("layer1", "layer2", "layer3", "layer4", "readout")


@dataclass
class ChannelStats:
    """Mean (n,) and covariance (n, n) of n channels over ``count`` samples (float64)."""

    mean: np.ndarray
    cov: np.ndarray
    count: int

    @classmethod
    def from_moments(cls, count: int, total: np.ndarray, gram: np.ndarray) -> "ChannelStats":
        if count < 2:
            raise ValueError("channel statistics need at least 2 samples")
        mean = total / count
        return cls(mean, (gram - count * np.outer(mean, mean)) / (count - 1), int(count))


def channel_stats(model_or_plan, images: np.ndarray, threads: int | None = None) -> dict[str, ChannelStats]:
    """Statistics of every layer in one pass of the C++ engine over ``images`` (no maps stored).

    ``images``: (N,112,112,3) uint8 or recentred float32. Dead channels are kept (the indices
    match the model's filters). Returns ``{"layer1".."layer4", "readout": ChannelStats}``.
    """
    from ..engine.cpu import channel_moments
    from ..engine.inputs import default_threads
    from ..engine.plan import Plan

    if not isinstance(model_or_plan, Plan):
        from ..engine.compile import compile

        model_or_plan = compile(model_or_plan, drop_dead_channels=False)
    moments = channel_moments(model_or_plan, images, default_threads() if threads is None else threads)
    return {k: ChannelStats.from_moments(*moments[k]) for k in STAT_NAMES}


def channel_stats_torch(model, images: np.ndarray, batch: int = 32) -> dict[str, ChannelStats]:
    """The same statistics computed plainly in PyTorch (float64 accumulation): the reference."""
    import torch

    from ..models.image_tensor import to_tensor

    model = model.eval()
    acc = {k: [0, 0.0, 0.0] for k in STAT_NAMES}
    captured: dict[str, torch.Tensor] = {}
    hooks = [getattr(model, f"layer{l}_conv_depth").register_forward_hook(
        lambda m, i, o, l=l: captured.__setitem__(f"layer{l}", o)) for l in range(1, 5)]
    hooks.append(model.layer4_bn.register_forward_hook(lambda m, i, o: captured.__setitem__("a4", torch.relu(o))))
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch):
                model(to_tensor(images[i:i + batch]).to(next(model.parameters()).dtype))
                for l in range(1, 5):
                    d = captured[f"layer{l}"].double()
                    x = d.permute(0, 2, 3, 1).reshape(-1, d.shape[1])
                    _add(acc[f"layer{l}"], x)
                a4 = captured["a4"].double().permute(0, 2, 3, 1)          # (B, 28, 28, n4)
                w = model.readout.weight.double().reshape(28, 28, -1)
                _add(acc["readout"], (a4 * w).sum((1, 2)))
    finally:
        for h in hooks:
            h.remove()
    return {k: ChannelStats.from_moments(c, s.numpy(), g.numpy()) for k, (c, s, g) in acc.items()}


def _add(acc: list, x) -> None:
    acc[0] += x.shape[0]
    acc[1] = acc[1] + x.sum(0)
    acc[2] = acc[2] + x.T @ x
