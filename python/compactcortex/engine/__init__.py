"""The compiled inference engine: Plans (folded weights) and the predictor front ends."""
from .cpu import available_isas
from .errors import BadImageError
from .plan import Plan
from .population import PopulationPredictor
from .predictor import Predictor

__all__ = ["Plan", "Predictor", "PopulationPredictor", "available_isas", "BadImageError"]
