"""The CPU backend of the predictors: the C++ engine (``compactcortex._engine``), no torch."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import _engine
from .frontend import host_out, leading_dim
from .plan import Plan

__all__ = ["CpuBackend", "available_isas", "channel_moments"]


def available_isas() -> list[str]:
    """Kernel variants this CPU can run, widest first ('emu512' is a test-only variant)."""
    return list(_engine.available_isas())


class CpuBackend:
    """One model (``_engine.Engine``) or a population (``_engine.Population``) on the CPU.

    Buffers are allocated here, once; :meth:`predict` allocates nothing but its result.
    """

    layer0: str

    def __init__(self, plans: Sequence[Plan], mean: tuple[float, float, float], single: bool, threads: int,
                 isa: str, winograd: bool) -> None:
        self._single = single
        if single:
            self._engine = _engine.Engine(*plans[0].weights_tuple(), mean, threads, isa, winograd)
        else:
            self._engine = _engine.Population([p.weights_tuple() for p in plans], mean, threads, isa, winograd)
        self._models = len(plans)
        self.layer0 = "winograd" if winograd else "direct"

    @property
    def isa(self) -> str:
        return self._engine.isa

    @property
    def threads(self) -> int:
        return self._engine.threads

    def predict(self, images: Any, out: np.ndarray | None = None) -> np.ndarray:
        if hasattr(images, "__dlpack__") and hasattr(images, "detach"):
            images = images.detach()  # DLPack refuses tensors that require grad
        n = leading_dim(images)
        out = host_out(out, (n,) if self._single else (n, self._models))
        try:
            self._engine.predict(images, out)
        except TypeError as e:
            if "incompatible function arguments" not in str(e):
                raise
            raise TypeError(f"images must be a numpy array or torch CPU tensor of dtype float32, float64 or "
                            f"uint8; got {type(images).__name__} of dtype {getattr(images, 'dtype', None)}") from None
        return out


def channel_moments(plan: Plan, images: Any, threads: int) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
    """Per-channel moments of every layer in one pass over ``images`` (nothing stored).

    Returns ``{"layer1".."layer4", "readout": (count, sum (C,), gram (C, C))}``, float64:
    the depthwise outputs of layers 1-4 over all positions, and the readout's per-channel
    contributions per image (pruning statistics, see :mod:`compactcortex.compress.stats`).
    """
    engine = _engine.Engine(*plan.weights_tuple(), plan.mean, threads, "auto", False)
    return engine.moments(images)
