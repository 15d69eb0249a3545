"""Compact models with random weights at realistic scales: for benchmarks, tests and examples
that need a model of a given size without data."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..constants import PUBLISHED_FILTERS

if TYPE_CHECKING:
    from .compact import CompactModel

__all__ = ["random_published_like_model"]


def random_published_like_model(nums_filters: tuple[int, ...] = PUBLISHED_FILTERS, seed: int = 0) -> "CompactModel":
    """A CompactModel (eval mode) with random weights and batchnorm statistics that keep
    activations O(1) for pixel-scale inputs (recentred pixels, std ~60). Deterministic in
    ``seed``; the global torch RNG is left untouched. Default filters: published model 190923
    neuron 0 (~59M multiply-adds per image)."""
    import torch

    from .compact import CompactModel

    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CompactModel(nums_filters)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
        model.layer0_conv.weight.mul_(1 / 60)  # inputs are pixels (std ~60), not unit-scale
    return model.eval()
