"""PopulationPredictor: every model of a recorded population on the same images, in one call."""
from __future__ import annotations

from typing import Any, Sequence

from .frontend import PredictorBase

__all__ = ["PopulationPredictor"]


class PopulationPredictor(PredictorBase):
    """Predict many compact models (one per neuron) on the same images.

    Args:
        models_or_plans: Plans, paths to saved Plans, or CompactModels (compiled here).
        threads: worker threads (default: the CPUs this process may use, at most
            ``OMP_NUM_THREADS``). Images go in groups of two per thread: each image is read and
            its Winograd layer-0 input transform computed once for all models, then (model, image)
            pairs are spread over the threads, so both many models and many images keep every
            thread busy.
        isa, layer0, device, spin_ms, workspace_mb: as for :class:`~compactcortex.Predictor`
            (``device="cuda"`` runs all models in one launch per layer on the GPU).

    Results equal each model's single :class:`~compactcortex.Predictor` (the same kernels).
    All models must share the input recentring mean.
    """

    def __init__(self, models_or_plans: Sequence[Any], threads: int | None = None, isa: str = "auto",
                 layer0: str | None = None, device: str = "cpu", spin_ms: float | None = None,
                 workspace_mb: float | None = None) -> None:
        super().__init__(list(models_or_plans), False, threads, isa, layer0, device, spin_ms, workspace_mb)

    def predict(self, images: Any, out: Any = None, check_finite: bool = True) -> Any:
        """Responses of every model, shape (N, models) float32.

        ``images``, ``check_finite`` as for :meth:`Predictor.predict`: (N,112,112,3) or
        (N,3,112,112), uint8 raw pixels or float recentred pixels. ``out``: optional (N, models)
        float32 C-contiguous array to fill (no allocation at all then).
        """
        return super().predict(images, out, check_finite)

    __call__ = predict
