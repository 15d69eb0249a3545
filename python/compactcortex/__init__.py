"""compactcortex: compact deep-network models of visual-cortex neurons and a fast C++ engine.

Importing the package loads neither torch nor the compiled engine: every public name is
imported on first use. Loading a :class:`Plan` and predicting never import torch; the torch
parts (:class:`CompactModel`, :func:`compile`, the published-model loaders) are imported when
first used.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr
from ._version import __version__
from .constants import DATASET_MEAN, IMAGE_SIZE

# name -> module that defines it, imported on first use: ``import compactcortex.metrics`` or
# ``compactcortex.data`` loads neither the compiled engine nor torch (the models' modules and
# compile import torch; the engine's load the compiled module).
_LAZY = {
    "Plan": "compactcortex.engine.plan",
    "BadImageError": "compactcortex.engine.errors",
    "Predictor": "compactcortex.engine.predictor",
    "PopulationPredictor": "compactcortex.engine.population",
    "available_isas": "compactcortex.engine.cpu",
    "cuda_available": "compactcortex.engine.cuda",
    "cuda_status": "compactcortex.engine.cuda",
    "CompactModel": "compactcortex.models.compact",
    "load_published": "compactcortex.models.published",
    "load_published_session": "compactcortex.models.published",
    "compile": "compactcortex.engine.compile",
    "load_keras": "compactcortex.models.keras_files",
}

__all__ = ["__version__", "DATASET_MEAN", "IMAGE_SIZE", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from .engine.cpu import available_isas
    from .engine.cuda import cuda_available, cuda_status
    from .engine.errors import BadImageError
    from .engine.plan import Plan
    from .engine.population import PopulationPredictor
    from .engine.predictor import Predictor
    from .engine.compile import compile
    from .models.compact import CompactModel
    from .models.keras_files import load_keras
    from .models.published import load_published, load_published_session


__getattr__ = lazy_getattr(__name__, _LAZY)
