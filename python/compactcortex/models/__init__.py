"""torch modules: the compact model (and, later, teachers and shared models)."""
from .compact import DATASET_MEAN, CompactModel

__all__ = ["CompactModel", "DATASET_MEAN"]
