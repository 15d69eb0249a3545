"""A trunk's layer-4 maps from the C++ engine: what transfer teachers' readouts read.

Torch-free: takes a :class:`~compactcortex.engine.plan.Plan` compiled from a trunk (layers 0-4,
``compile(trunk, drop_dead_channels=False)``) and returns its (N, 28, 28, C) maps, computed with
the same row pipeline (Winograd layer 0, fused depthwise + pointwise rows) as predictions.
"""
from __future__ import annotations

from operator import index
from typing import Any

import numpy as np

from .inputs import default_threads, host_out, leading_dim
from .plan import Plan

__all__ = ["TrunkFeatures"]


class TrunkFeatures:
    """``TrunkFeatures(plan, threads)(images) -> (N, 28, 28, C) float32`` layer-4 maps.

    Args:
        plan: a trunk compiled without dropping channels (channel c of the maps is the trunk's c).
        threads: engine threads (each works on whole images); default as for predictors.
        isa: kernel variant, ``"auto"`` for the widest this CPU runs.

    Images as for :class:`~compactcortex.engine.predictor.Predictor`: (N, 112, 112, 3) or
    (N, 3, 112, 112), uint8 raw pixels or float recentred pixels (numpy or torch CPU tensors).
    Not thread-safe across calls from several threads (calls are serialised by the engine).

    Pickling keeps the plan and settings; the engine is rebuilt on first use in the new process.
    """

    def __init__(self, plan: Plan, threads: int | None = None, isa: str = "auto") -> None:
        self.plan, self.isa = plan, isa
        self.threads = default_threads() if threads is None else index(threads)
        self._engine = self._build()  # the bindings check threads and isa here, not at the first call

    def _build(self) -> Any:
        from .. import _engine

        return _engine.Engine(*self.plan.weights_tuple(), self.plan.mean, self.threads, self.isa, True)

    @property
    def channels(self) -> int:
        return self.plan.nums_filters[4]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_engine": None}

    def __call__(self, images: Any, out: np.ndarray | None = None) -> np.ndarray:
        if self._engine is None:  # unpickled
            self._engine = self._build()
        if hasattr(images, "__dlpack__") and hasattr(images, "detach"):
            images = images.detach()
        out = host_out(out, (leading_dim(images), 28, 28, self.channels), images)
        self._engine.features(images, out)
        return out
