"""Accuracy predictors (scikit-learn style): fit(archs, y), predict(archs)."""

from samplenas.predictors.base import Predictor, kendall_tau, tau_ceiling
from samplenas.predictors.forest import RandomForestPredictor
from samplenas.predictors.registry import load_predictor

__all__ = ["Predictor", "RandomForestPredictor", "kendall_tau", "load_predictor", "tau_ceiling"]
