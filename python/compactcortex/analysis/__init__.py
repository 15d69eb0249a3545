"""Analyses of compact models: preferred stimuli, shared layer-0 filters and their consolidation."""
from .consolidation import (NULLS, FilterClusters, FilterSimilarity, cluster_filters, consolidation, filter_similarity,
                            layer0_filters, pointwise_input_rms, summarise, surrogate_filters, unit_filters)
from .preferred import DEFAULT_NORM, PreferredStimuli, preferred_stimuli

__all__ = ["PreferredStimuli", "preferred_stimuli", "DEFAULT_NORM",
           "layer0_filters", "unit_filters", "surrogate_filters", "NULLS", "FilterSimilarity", "filter_similarity",
           "FilterClusters", "cluster_filters", "pointwise_input_rms", "consolidation", "summarise"]

# The figures moved to compactcortex.plots.analysis: the old names still arrive here, with a warning.
_MOVED = ("save_gallery", "plot_filter_similarity", "plot_filter_clusters", "plot_consolidation")


def __getattr__(name: str):
    if name in _MOVED:
        import importlib
        import warnings

        warnings.warn(f"compactcortex.analysis.{name} is deprecated: import it from compactcortex.plots.analysis",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module("compactcortex.plots.analysis"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
