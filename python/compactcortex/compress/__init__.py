"""Compression: channel statistics (C++), the paper's pruning, greedy refinement, surgery."""
from .prune import PruneStep, contribution_gram, prune_greedy, prune_layer, prune_paper, select_filters
from .stats import ChannelStats, channel_stats, channel_stats_torch
from .surgery import remove_filters

__all__ = ["ChannelStats", "channel_stats", "channel_stats_torch", "contribution_gram", "select_filters",
           "prune_layer", "prune_paper", "prune_greedy", "PruneStep", "remove_filters"]
