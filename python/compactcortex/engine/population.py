"""PopulationPredictor: every model of a recorded population on the same images, in one call."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import _engine
from .plan import as_plan
from .predictor import _batch_size, _cuda_predictor, _detach, default_threads

__all__ = ["PopulationPredictor"]


class PopulationPredictor:
    """Predict many compact models (one per neuron) on the same images with the C++ engine.

    Args:
        models_or_plans: Plans, paths to saved Plans, or CompactModels (compiled here).
        threads: worker threads (default: all CPUs available). Work items are (model, chunk of
            images) pairs spread over the threads, so both many models and many images keep
            every thread busy.
        isa, layer0, device: as for :class:`~compactcortex.Predictor` (``device="cuda"`` runs all
            models in one launch per layer on the GPU).

    Results equal each model's single :class:`~compactcortex.Predictor` (the same kernels).
    All models must share the input recentring mean.
    """

    def __init__(self, models_or_plans: Sequence[Any], threads: int | None = None, isa: str = "auto",
                 layer0: str = "winograd", device: str = "cpu") -> None:
        plans = [as_plan(m) for m in models_or_plans]
        if not plans:
            raise ValueError("PopulationPredictor needs at least one model")
        means = {p.mean for p in plans}
        if len(means) > 1:
            raise ValueError(f"all models must share one input mean, got {sorted(means)}")
        if layer0 not in ("winograd", "direct"):
            raise ValueError(f"layer0 must be 'winograd' or 'direct', got {layer0!r}")
        threads = default_threads() if threads is None else int(threads)
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.plans = plans
        self._cuda = _cuda_predictor(plans, device)
        self._engine = None if self._cuda else _engine.Population(
            [(p.nums_filters, p.w0, p.b0, list(p.dw), list(p.pw), list(p.pb), p.readout, p.readout_bias)
             for p in plans], plans[0].mean, threads, isa, layer0 == "winograd")

    @property
    def num_models(self) -> int:
        return len(self.plans)

    @property
    def threads(self) -> int:
        return self._engine.threads if self._engine else 0

    @property
    def isa(self) -> str:
        return self._engine.isa if self._engine else "cuda"

    def macs_per_image(self) -> int:
        """Multiply-adds of all models for one image (direct-convolution count)."""
        return sum(p.macs_per_image() for p in self.plans)

    def predict(self, images: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Responses of every model, shape (N, models) float32.

        ``images`` as for :meth:`Predictor.predict`: (N,112,112,3) or (N,3,112,112), uint8 raw
        pixels or float recentred pixels, numpy or torch CPU. ``out``: optional (N, models)
        float32 C-contiguous array to fill (no allocation at all then).
        """
        if self._cuda:
            return self._cuda.predict(images, out=out)
        images = _detach(images)
        n = _batch_size(images)
        shape = (n, self.num_models)
        if out is None:
            out = np.empty(shape, np.float32)
        elif not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == shape
                  and out.flags.c_contiguous and out.flags.writeable):
            raise ValueError(f"out must be a writeable, contiguous float32 array of shape {shape}")
        self._engine.predict(images, out)
        return out

    __call__ = predict
