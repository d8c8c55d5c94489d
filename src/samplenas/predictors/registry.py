"""Predictors by name, for the CLI and the benchmarks."""

from __future__ import annotations

from samplenas.errors import UserError
from samplenas.predictors.base import Predictor
from samplenas.space import SearchSpace

NAMES = ("gcn", "gcn-two-stage", "rf", "mlp")


def make_predictor(name: str, space: SearchSpace, seed: int = 0) -> Predictor:
    from samplenas.predictors.forest import RandomForestPredictor
    from samplenas.predictors.gcn import GCNPredictor, TwoStagePredictor
    from samplenas.predictors.mlp import MLPPredictor

    factories = {
        "gcn": GCNPredictor,
        "gcn-two-stage": TwoStagePredictor,
        "rf": RandomForestPredictor,
        "mlp": MLPPredictor,
    }
    if name not in factories:
        raise UserError(f"unknown predictor '{name}'; choose from {list(NAMES)}")
    return factories[name](space, seed=seed)
