"""Deprecated: the compression pipeline now lives in rooms of :mod:`compactcortex.compress`
(``recipe``, ``teachers``, ``neuron``, ``stage1``, ``job``, ``run``, ``backends``); import its
names from ``compactcortex.compress``. This alias goes in the next minor version."""
from __future__ import annotations

import warnings

from .job import NeuronJob, compress_neuron
from .neuron import prune_and_retrain
from .recipe import DEFAULT_MINUTES_PER_NEURON, Recipe
from .run import compress_session
from .stage1 import prepare_run
from .recipe import DEFAULT_BACKBONE_FILTERS
from .teachers import resolve_teacher_backbone

warnings.warn("compactcortex.compress.pipeline is deprecated: import from compactcortex.compress",
              DeprecationWarning, stacklevel=2)

__all__ = ["Recipe", "NeuronJob", "compress_session", "compress_neuron", "prepare_run", "prune_and_retrain",
           "resolve_teacher_backbone", "DEFAULT_BACKBONE_FILTERS", "DEFAULT_MINUTES_PER_NEURON"]
