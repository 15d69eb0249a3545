"""The compiled inference engine: Plans (folded weights) and Predictors."""
from .plan import Plan
from .population import PopulationPredictor
from .predictor import Predictor, available_isas

__all__ = ["Plan", "Predictor", "PopulationPredictor", "available_isas"]
