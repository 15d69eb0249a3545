"""Accuracy of published compact models on the held-out half of their session's images."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["evaluate_published"]


def evaluate_published(root: str | Path, session: str | int, threads: int | None = None,
                       progress: bool = True) -> dict:
    """Run every published compact model of ``session`` through the engine on the test half.

    The test half is the second half of the session's images (the paper's split for held-out
    sessions). ``r`` is the Pearson correlation between a neuron's predictions and its
    repeat-averaged responses; ``r2er`` the noise-corrected R2 (Pospisil & Bair 2021) where
    single-trial responses exist, else None.

    Returns:
        ``{"session", "neurons": [{"neuron", "r", "r2er"}], "median_r", "median_r2er"}``.
    """
    from tqdm import tqdm

    from .data.session import load_session
    from .engine.compile import compile
    from .engine.predictor import Predictor
    from .metrics import noise_corrected_r2, pearson_r
    from .models.published import load_published_session

    data = load_session(root, session)
    models = load_published_session(root, session)
    if len(models) != data.num_neurons:
        raise ValueError(f"session {session}: {len(models)} published models but {data.num_neurons} recorded neurons")
    test = data.test_indices
    images = data.images[test]
    preds = np.stack([Predictor(compile(m), threads=threads).predict(images)
                      for m in tqdm(models, desc=f"session {session}", unit="model", disable=not progress)])
    r = pearson_r(data.responses[:, test], preds)
    r2er = noise_corrected_r2(data.raw[:, test], preds) if data.raw is not None else None
    neurons = [{"neuron": k, "r": float(r[k]), "r2er": None if r2er is None else float(r2er[k])}
               for k in range(len(models))]
    return {
        "session": str(session),
        "num_test_images": int(len(test)),
        "neurons": neurons,
        "median_r": float(np.nanmedian(r)),
        "median_r2er": None if r2er is None else float(np.nanmedian(r2er)),
    }
