"""Compression: channel statistics (C++), the paper's pruning, greedy refinement, surgery, and the
``compress`` pipeline in rooms read top-down: :mod:`.recipe` (the settings), :mod:`.teachers`
(published, fitted, file or trunk), :mod:`.neuron` (one neuron's pruning and re-training),
:mod:`.stage1` (the shared student of a run), :mod:`.job` (the unit of work), :mod:`.backends`
(local, Ray, SLURM) and :mod:`.run` (:func:`compress_session`).

Names are imported on first use, so that ``compactcortex.compress.recipe`` (the command line's
defaults) loads without torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

_LAZY = {
    "ChannelStats": "stats", "channel_stats": "stats", "channel_stats_torch": "stats",
    "contribution_gram": "prune", "select_filters": "prune", "prune_layer": "prune", "prune_paper": "prune",
    "prune_greedy": "prune", "PruneStep": "prune", "remove_filters": "surgery",
    "Recipe": "recipe", "DEFAULT_MINUTES_PER_NEURON": "recipe", "DEFAULT_BACKBONE_FILTERS": "recipe",
    "NeuronJob": "job", "compress_neuron": "job", "compress_session": "run", "prepare_run": "stage1",
    "prune_and_retrain": "neuron", "resolve_teacher_backbone": "teachers",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .job import NeuronJob, compress_neuron
    from .neuron import prune_and_retrain
    from .prune import PruneStep, contribution_gram, prune_greedy, prune_layer, prune_paper, select_filters
    from .recipe import DEFAULT_BACKBONE_FILTERS, DEFAULT_MINUTES_PER_NEURON, Recipe
    from .run import compress_session
    from .stage1 import prepare_run
    from .stats import ChannelStats, channel_stats, channel_stats_torch
    from .surgery import remove_filters
    from .teachers import resolve_teacher_backbone


__getattr__ = lazy_getattr(__name__, _LAZY)
