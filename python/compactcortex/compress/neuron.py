"""Stage 2 of a run, one neuron: the paper's pruning in passes, re-trained on the neuron's teacher
after each pruned layer, then fine-tuned (``compress`` and the demo both call it)."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import numpy as np

from ..models.compact import CompactModel
from .recipe import Recipe

__all__ = ["prune_and_retrain"]


def prune_and_retrain(model: CompactModel, teacher: Callable, images: np.ndarray, recipe: Recipe,
                      work: Path | None = None, name: str = "model", seed: int = 0,
                      threads: int | None = None, pool=None, pool_column: int = 0,
                      evaluate: Callable[[CompactModel], float] | None = None,
                      train_images: np.ndarray | None = None, device: str = "cpu") -> tuple[CompactModel, list]:
    """One neuron's stage 2: ``prune_paper`` in ``recipe.rounds`` passes, then a final fine-tuning.

    ``teacher`` maps recentred images to this neuron's responses (N,); ``images`` (N,112,112,3)
    uint8 are the fit-half images (statistics, and mixed with procedural images for re-training;
    ``train_images``, if given, replace them in re-training).
    With ``pool`` (the stage-1 :class:`~compactcortex.fit.TargetPool`), re-training draws its
    batches and targets (column ``pool_column``) from it instead of running the teacher: for a
    teacher slower than the engine (a fitted one runs in PyTorch) that is most of the cost.
    With ``work``, every re-training checkpoints to ``work/<name>_train<i>.ckpt``, so a killed
    run resumes (pruning itself is deterministic given the weights). ``evaluate(model) -> float``,
    if given, records an accuracy in every :class:`~compactcortex.compress.prune.PruneStep` of the
    history (before pruning, after each pruned and re-trained layer); it decides nothing.
    ``device``: where re-training runs (:mod:`compactcortex.devices`).
    Returns (compact, history).
    """
    from ..fit.distill import ImageStream, fine_tune
    from .prune import prune_paper

    calls = itertools.count()  # the re-trainings in order, each with its own image stream

    def retrain(m: CompactModel, steps: int = recipe.retrain_steps) -> CompactModel:
        c = next(calls)
        if pool is None:
            stream = ImageStream(images if train_images is None else train_images, recipe.batch,
                                 recipe.procedural_fraction, seed + c)
        else:
            def stream(step: int, offset: int = (seed + c) * 1_000_003):
                x, y = pool(offset + step)
                return x, (y if y.dim() == 1 else y[:, pool_column])
        fine_tune(m, teacher, None, stream, steps, lr=recipe.retrain_lr, desc=name, progress=False, device=device,
                  checkpoint=None if work is None else Path(work) / f"{name}_train{c}.ckpt")
        return m

    compact, history = prune_paper(model.eval(), images, recipe.threshold, retrain=retrain, evaluate=evaluate,
                                   threads=threads, rounds=recipe.rounds)
    return retrain(compact, recipe.final_steps).eval(), history
