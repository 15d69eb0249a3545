"""Active learning (the paper's closed loop): show the images the teacher is least sure about."""
from __future__ import annotations

import numpy as np

__all__ = ["select_images", "disagreement"]


def disagreement(member_predictions: np.ndarray) -> np.ndarray:
    """Per image: the variance across ensemble members, in units of each neuron's response
    variance across images, averaged over neurons. (K, N, neurons) -> (N,)."""
    p = np.asarray(member_predictions, np.float64)
    if p.ndim != 3 or p.shape[0] < 2:
        raise ValueError(f"member predictions must be (members >= 2, images, neurons), got {p.shape}")
    scale = p.mean(0).var(0).clip(min=1e-12)  # (neurons,)
    return (p.var(0) / scale).mean(1)


def select_images(teacher, candidates: np.ndarray, k: int, batch: int = 64) -> np.ndarray:
    """Indices of the ``k`` candidate images on which the ensemble's members disagree most.

    ``teacher`` must have ``predict_members(images) -> (K, N, neurons)`` (an
    :class:`~compactcortex.models.teacher.Ensemble`); ``candidates`` is (N,112,112,3). Returns
    indices sorted by decreasing disagreement.
    """
    if not hasattr(teacher, "predict_members"):
        raise ValueError("select_images needs an ensemble teacher (with predict_members)")
    if not 1 <= k <= len(candidates):
        raise ValueError(f"k must be between 1 and the {len(candidates)} candidates, got {k}")
    d = disagreement(teacher.predict_members(candidates, batch=batch))
    return np.argsort(-d, kind="stable")[:k]
