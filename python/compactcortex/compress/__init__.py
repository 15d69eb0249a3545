"""Compression: channel statistics (C++), the paper's pruning, greedy refinement, surgery, and the
``compress`` pipeline in rooms read top-down: :mod:`.recipe` (the settings), :mod:`.teachers`
(published, fitted, file or trunk), :mod:`.neuron` (one neuron's pruning and re-training),
:mod:`.stage1` (the shared student of a run), :mod:`.job` (the unit of work), :mod:`.backends`
(local, Ray, SLURM) and :mod:`.run` (:func:`compress_session`)."""
from .job import NeuronJob, compress_neuron
from .neuron import prune_and_retrain
from .prune import PruneStep, contribution_gram, prune_greedy, prune_layer, prune_paper, select_filters
from .recipe import DEFAULT_MINUTES_PER_NEURON, Recipe
from .run import compress_session
from .stage1 import prepare_run
from .stats import ChannelStats, channel_stats, channel_stats_torch
from .surgery import remove_filters
from .teachers import DEFAULT_BACKBONE_FILTERS, resolve_teacher_backbone

__all__ = ["ChannelStats", "channel_stats", "channel_stats_torch", "contribution_gram", "select_filters",
           "prune_layer", "prune_paper", "prune_greedy", "PruneStep", "remove_filters", "Recipe",
           "DEFAULT_MINUTES_PER_NEURON", "NeuronJob", "compress_neuron", "compress_session", "prepare_run",
           "prune_and_retrain", "resolve_teacher_backbone", "DEFAULT_BACKBONE_FILTERS"]
