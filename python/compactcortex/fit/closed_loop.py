"""The paper's adaptive closed loop, run in silico on ground-truth model neurons.

A :class:`Rig` "records" model neurons (Poisson trials around their true rates, within a budget
of images); :func:`closed_loop` alternates recording and fitting a teacher: each round it fits
the teacher to everything recorded so far, scores it against the ground truth on fresh images,
and picks the next images from a candidate pool, either where the ensemble's members disagree
most (``select="active"``, the paper's choice) or at random (the control).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from ..files import atomic_path
from ..data.session import Session
from .active import select_images

__all__ = ["Rig", "closed_loop", "SELECTIONS"]

SELECTIONS = ("active", "random")


class Rig:
    """A recording rig for model neurons with a budget of images.

    Args:
        rates: ``rates(images (N,112,112,3) uint8) -> (neurons, N)`` true mean spike counts per
            100 ms bin (e.g. :meth:`~compactcortex.data.digital.ModelNeurons.rates`).
        budget: the most images :meth:`record` will show in all.
        seed: seed of the trials (each call draws from its own stream: reproducible).
    """

    def __init__(self, rates: Callable[[np.ndarray], np.ndarray], budget: int, seed: int = 0) -> None:
        if budget < 1:
            raise ValueError(f"budget must be >= 1 image, got {budget}")
        self._rates, self.budget, self.seed = rates, int(budget), int(seed)
        self.recorded, self._calls = 0, 0

    @property
    def remaining(self) -> int:
        return self.budget - self.recorded

    def truth(self, images: np.ndarray) -> np.ndarray:
        """(neurons, N) true rates: what a perfect model predicts (for scoring only)."""
        return np.asarray(self._rates(images), np.float64)

    def record(self, images: np.ndarray, repeats: int) -> np.ndarray:
        """Show each image ``repeats`` times: (neurons, N, repeats) float64 Poisson counts.

        Raises ValueError when the images would exceed the budget (nothing is recorded then)."""
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        if len(images) > self.remaining:
            raise ValueError(f"recording {len(images)} images exceeds the rig's budget: {self.remaining} of "
                             f"{self.budget} left")
        rates = self.truth(images)
        rng = np.random.default_rng([self.seed, self._calls, 0x5EED])
        self.recorded += len(images)
        self._calls += 1
        return rng.poisson(np.repeat(rates[:, :, None], repeats, axis=2)).astype(np.float64)


def _r2_truth(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per neuron: squared Pearson r of predictions and true rates, (neurons, N) -> (neurons,)."""
    from ..metrics import pearson_r

    return pearson_r(truth, pred) ** 2


def closed_loop(
    rig: Rig,
    rounds: int,
    images_per_round: int,
    candidates: np.ndarray,
    fit: Callable[[Session], object],
    fresh: np.ndarray,
    initial: int | None = None,
    repeats: int = 10,
    select: str = "active",
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[object, Session, list[dict]]:
    """Alternate recording and model fitting, choosing images by ``select``.

    Args:
        rig: records the neurons (its budget must cover ``initial + rounds * images_per_round``).
        rounds: selection rounds after the initial recording.
        images_per_round: images recorded per round.
        candidates: (M,112,112,3) uint8 pool the images are chosen from (each at most once).
        fit: ``fit(session) -> teacher`` with ``predict`` and, for ``"active"``,
            ``predict_members``, fitted on all of the session's images, e.g.
            ``lambda s: fit_teacher(s, 4, np.arange(s.num_images))``.
        fresh: (F,112,112,3) images never recorded, on which each round's teacher meets the truth.
        initial: images recorded at random before the first fit (default ``images_per_round``).
        select: ``"active"`` (ensemble disagreement, :func:`select_images`) or ``"random"``.
        checkpoint_dir: the state after every round is saved there; a rerun resumes from it.

    Returns:
        The last teacher, the recorded session (images, repeat means, raw trials), and per fit
        (``rounds + 1`` of them): ``{"round", "images", "r2_truth_median", "r2_truth_mean",
        "fit_s"}`` with r2 = squared correlation with the true rates on ``fresh``.
    """
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
    initial = images_per_round if initial is None else int(initial)
    need = initial + rounds * images_per_round
    if rounds < 0 or images_per_round < 1 or initial < 2:
        raise ValueError(f"need rounds >= 0, images_per_round >= 1, initial >= 2; got {rounds}, "
                         f"{images_per_round}, {initial}")
    if need > len(candidates):
        raise ValueError(f"the loop records {need} images but there are only {len(candidates)} candidates")
    if need > rig.remaining:
        raise ValueError(f"the loop records {need} images but the rig's budget has {rig.remaining} left")
    truth = rig.truth(fresh)
    rng = np.random.default_rng([seed, 0x100B])
    state_file = Path(checkpoint_dir) / "loop.npz" if checkpoint_dir else None
    if state_file and state_file.is_file():
        with np.load(state_file, allow_pickle=False) as z:
            chosen, raw = list(z["chosen"]), z["raw"]
            history = json.loads(str(z["history"]))
            rng.bit_generator.state = json.loads(str(z["rng"]))
            rig.recorded, rig._calls = int(z["rig_recorded"]), int(z["rig_calls"])
    else:
        chosen = [int(i) for i in rng.choice(len(candidates), initial, replace=False)]
        raw = rig.record(candidates[chosen], repeats)
        history = []
    bar = tqdm(total=rounds + 1, initial=len(history), desc=f"closed loop ({select})", unit="round",
               disable=not progress)
    for r in range(len(history), rounds + 1):
        session = Session("closed_loop", candidates[chosen], np.nanmean(raw, axis=2), raw)
        t0 = time.perf_counter()
        teacher = fit(session)
        fit_s = time.perf_counter() - t0
        r2 = _r2_truth(teacher.predict(fresh).T, truth)
        history.append({"round": r, "images": len(chosen), "r2_truth_median": float(np.nanmedian(r2)),
                        "r2_truth_mean": float(np.nanmean(r2)), "fit_s": round(fit_s, 2)})
        bar.update(1)
        bar.set_postfix(images=len(chosen), r2=f"{history[-1]['r2_truth_median']:.3f}")
        if r == rounds:
            break
        left = np.setdiff1d(np.arange(len(candidates)), chosen)
        if select == "active":
            new = left[select_images(teacher, candidates[left], images_per_round)]
        else:
            new = rng.choice(left, images_per_round, replace=False)
        chosen += [int(i) for i in new]
        raw = np.concatenate([raw, rig.record(candidates[new], repeats)], axis=1)
        if state_file:
            state_file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(state_file) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, chosen=np.asarray(chosen), raw=raw, history=json.dumps(history),
                         rng=json.dumps(rng.bit_generator.state), rig_recorded=rig.recorded, rig_calls=rig._calls)
    bar.close()
    return teacher, session, history
