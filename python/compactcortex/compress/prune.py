"""The paper's structured filter pruning, and a greedy refinement.

Filter j of layer l-1 feeds layer l's pre-activation output through ``pw[:, j] * d_j`` (d_j its
depthwise output; for layer 4 the readout contribution). With the channel statistics (mean and
covariance of d over images and positions) the variance of any subset's contribution is exact:
for the dropped set D, ``err(D) = sum_{j,k in D} (pw^T pw)_{jk} cov_{jk}`` (the dropped channels'
means are absorbed into the bias). The paper ranks filters by the variance of their contribution
and keeps the smallest set that reconstructs the output to a fraction of variance (0.9).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..engine.compile import compile
from ..models.compact import CompactModel
from .stats import ChannelStats, channel_stats
from .surgery import remove_filters

__all__ = ["contribution_gram", "select_filters", "prune_layer", "PruneStep", "prune_paper", "prune_greedy"]


def contribution_gram(stats: ChannelStats, pw: np.ndarray | None) -> np.ndarray:
    """G with G[j,k] = covariance of filter j's and k's contributions, summed over outputs.

    ``pw`` (outputs, n) is the folded pointwise weight that reads the filters; None for the
    readout, whose statistics already are contributions.
    """
    return stats.cov if pw is None else (pw.T @ pw) * stats.cov


def select_filters(gram: np.ndarray, threshold: float = 0.9) -> tuple[np.ndarray, float]:
    """The smallest prefix of filters, by decreasing contribution variance, explaining ``threshold``.

    Returns (kept indices, sorted; fraction of the output variance they reconstruct).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    total = float(gram.sum())
    order = np.argsort(-np.diag(gram), kind="stable")
    if total <= 0:
        return np.sort(order[:1]), 1.0
    for k in range(1, len(order) + 1):
        dropped = order[k:]
        explained = 1.0 - float(gram[np.ix_(dropped, dropped)].sum()) / total
        if explained >= threshold:
            return np.sort(order[:k]), explained
    return np.sort(order), 1.0


def _reader_weights(plan, layer: int) -> np.ndarray | None:
    """Folded weights of the pointwise conv that reads layer ``layer``'s filters (None: readout)."""
    return None if layer == 4 else np.asarray(plan.pw[layer], np.float64)


def _stat_name(layer: int) -> str:
    return "readout" if layer == 4 else f"layer{layer + 1}"


def prune_layer(model: CompactModel, layer: int, images: np.ndarray, threshold: float = 0.9,
                threads: int | None = None) -> tuple[CompactModel, float]:
    """Prune the filters of ``layer`` (0-4) by the paper's rule; returns (smaller model, explained)."""
    plan = compile(model, drop_dead_channels=False)  # once: the statistics and the reader's weights
    stats = channel_stats(plan, images, threads=threads)[_stat_name(layer)]
    keep, explained = select_filters(contribution_gram(stats, _reader_weights(plan, layer)), threshold)
    return remove_filters(model, layer, keep), explained


@dataclass
class PruneStep:
    """One step of a pruning run: which layer, the filters after it, parameters, accuracy."""

    layer: int
    nums_filters: tuple[int, ...]
    num_parameters: int
    explained: float | None = None
    accuracy: float | None = None
    extra: dict = field(default_factory=dict)


def prune_paper(model: CompactModel, images: np.ndarray, threshold: float = 0.9, retrain=None,
                evaluate=None, threads: int | None = None, rounds: int = 1) -> tuple[CompactModel, list[PruneStep]]:
    """The paper's procedure: layers 4, 3, 2, 1, 0 in turn, each pruned then re-trained.

    ``images`` (N,112,112,3) are the statistics' images (e.g. the teacher's training images);
    ``retrain(model) -> model`` re-trains after each layer (e.g. a few hundred distillation
    steps); ``evaluate(model) -> float`` records accuracy (e.g. correlation with the teacher on
    held-out images). ``rounds`` > 1 repeats the pass over the layers (the paper: one), stopping
    after a pass that removes no filter: re-training concentrates the variance in fewer filters,
    so a wide student shrinks further each round. Returns the compact model and the history
    (``PruneStep.extra["round"]``).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    model = model.eval()
    history = [PruneStep(-1, model.nums_filters, model.num_parameters(),
                         accuracy=evaluate(model) if evaluate else None)]
    for r in range(rounds):
        before = model.nums_filters
        for layer in (4, 3, 2, 1, 0):
            model, explained = prune_layer(model, layer, images, threshold, threads)
            if retrain is not None:
                model = retrain(model).eval()
            history.append(PruneStep(layer, model.nums_filters, model.num_parameters(), explained,
                                     evaluate(model) if evaluate else None, {"round": r}))
        if model.nums_filters == before:
            break
    return model, history


def prune_greedy(model: CompactModel, images: np.ndarray, evaluate, tolerance: float = 0.01,
                 threads: int | None = None, max_steps: int = 1000) -> tuple[CompactModel, list[PruneStep]]:
    """Greedy refinement: keep removing the least useful filter while accuracy drops < ``tolerance``.

    Every remaining filter of every layer is scored at once from the channel statistics (the
    fraction of its reader's output variance it carries alone); the lowest-scoring one is
    removed, and the removal is kept while ``evaluate(model)`` stays within ``tolerance`` of the
    starting accuracy. Stops at the first removal that costs more.
    """
    model = model.eval()
    base = evaluate(model)
    history = [PruneStep(-1, model.nums_filters, model.num_parameters(), accuracy=base)]
    for _ in range(max_steps):
        plan = compile(model, drop_dead_channels=False)
        stats = channel_stats(plan, images, threads=threads)
        candidates = []
        for layer in range(5):
            if model.nums_filters[layer] <= 1:
                continue
            g = contribution_gram(stats[_stat_name(layer)], _reader_weights(plan, layer))
            share = np.diag(g) / max(float(g.sum()), 1e-30)
            j = int(np.argmin(share))
            candidates.append((float(share[j]), layer, j))
        if not candidates:
            break
        candidates.sort()
        accepted = False
        for share, layer, j in candidates[:3]:  # try the three cheapest single removals
            keep = [k for k in range(model.nums_filters[layer]) if k != j]
            trial = remove_filters(model, layer, keep).eval()
            acc = evaluate(trial)
            if base - acc < tolerance:
                model, accepted = trial, True
                history.append(PruneStep(layer, model.nums_filters, model.num_parameters(), 1 - share, acc))
                break
        if not accepted:
            break
    return model, history
