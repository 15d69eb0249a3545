"""The CPU backend of the predictors: the C++ engine (``compactcortex._engine``), no torch."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import _engine
from .inputs import DEFAULT_SPIN_MS, host_out, leading_dim
from .plan import Plan

__all__ = ["CpuBackend", "available_isas", "channel_moments", "executed_macs"]


def available_isas() -> list[str]:
    """Kernel variants this CPU can run, widest first ('emu512' is a test-only variant)."""
    return list(_engine.available_isas())


class CpuBackend:
    """One model (``_engine.Engine``) or a population (``_engine.Population``) on the CPU.

    Buffers are allocated here, once; :meth:`predict` allocates nothing but its result.
    """

    layer0: str

    def __init__(self, plans: Sequence[Plan], mean: tuple[float, float, float], single: bool, threads: int,
                 isa: str, winograd: bool, spin_ms: float = DEFAULT_SPIN_MS) -> None:
        self._single = single
        if single:
            self._engine = _engine.Engine(*plans[0].weights_tuple(), mean, threads, isa, winograd)
        else:
            self._engine = _engine.Population([p.weights_tuple() for p in plans], mean, threads, isa, winograd)
        self._engine.spin_ms = spin_ms
        self._plans = list(plans)
        self.layer0 = "winograd" if winograd else "direct"

    @property
    def isa(self) -> str:
        return self._engine.isa

    @property
    def threads(self) -> int:
        return self._engine.threads

    def executed_macs_per_image(self) -> int:
        """Multiply-adds these kernels execute per image, summed over the models (see
        :func:`executed_macs`)."""
        return sum(executed_macs(p, self._engine.vector_width, self.layer0 == "winograd") for p in self._plans)

    def predict(self, images: Any, out: np.ndarray | None = None) -> np.ndarray:
        if hasattr(images, "__dlpack__") and hasattr(images, "detach"):
            images = images.detach()  # DLPack refuses tensors that require grad
        n = leading_dim(images)
        out = host_out(out, (n,) if self._single else (n, len(self._plans)), images)
        try:
            self._engine.predict(images, out)
        except TypeError as e:
            if "incompatible function arguments" not in str(e):
                raise
            raise TypeError(f"images must be a numpy array or torch CPU tensor of dtype float32, float64 or "
                            f"uint8; got {type(images).__name__} of dtype {getattr(images, 'dtype', None)}") from None
        return out


def executed_macs(plan: Plan, width: int, winograd: bool) -> int:
    """Multiply-adds the CPU kernels execute for one image of ``plan``.

    Channels are padded to the vector ``width`` (the kernels compute whole vectors); layer 0 by
    Winograd F(4x4, 5x5) costs 12 multiply-adds in the transformed domain plus ~11 transform
    operations per output pixel and channel (csrc/engine/kernels_simd.cpp), against 75 direct.
    Compare with :meth:`Plan.macs_per_image`, the direct-convolution count of the model itself.
    """
    n = plan.nums_filters
    p = [-(-c // width) * width for c in n]
    layer0 = 112 * 112 * p[0] * (12 + 11 if winograd else 75)
    layer1 = 56 * 56 * (25 * p[0] + n[0] * p[1])
    rest = 28 * 28 * sum(25 * p[l] + n[l] * p[l + 1] for l in (1, 2, 3)) + 28 * 28 * p[4]
    return layer0 + layer1 + rest


def channel_moments(plan: Plan, images: Any, threads: int) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
    """Per-channel moments of every layer in one pass over ``images`` (nothing stored).

    Returns ``{"layer1".."layer4", "readout": (count, sum (C,), gram (C, C))}``, float64:
    the depthwise outputs of layers 1-4 over all positions, and the readout's per-channel
    contributions per image (pruning statistics, see :mod:`compactcortex.compress.stats`).
    """
    engine = _engine.Engine(*plan.weights_tuple(), plan.mean, threads, "auto", False)
    return engine.moments(images)
