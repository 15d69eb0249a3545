"""Analyses of compact models: preferred stimuli, shared layer-0 filters and their consolidation."""
from .consolidation import (NULLS, FilterClusters, FilterSimilarity, cluster_filters, consolidation, filter_similarity,
                            layer0_filters, pointwise_input_rms, summarise, surrogate_filters, unit_filters)
from .plots import plot_consolidation, plot_filter_clusters, plot_filter_similarity, save_gallery
from .preferred import DEFAULT_NORM, PreferredStimuli, preferred_stimuli

__all__ = ["PreferredStimuli", "preferred_stimuli", "DEFAULT_NORM", "save_gallery",
           "layer0_filters", "unit_filters", "surrogate_filters", "NULLS", "FilterSimilarity", "filter_similarity",
           "FilterClusters", "cluster_filters", "pointwise_input_rms", "consolidation", "summarise",
           "plot_filter_similarity", "plot_filter_clusters", "plot_consolidation"]
