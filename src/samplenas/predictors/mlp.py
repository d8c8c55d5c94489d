"""Baseline: a multi-layer perceptron on the one-hot architecture encoding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.neural_network import MLPRegressor

from samplenas.predictors.base import Predictor
from samplenas.space import Arch, SearchSpace


class MLPPredictor(Predictor):
    name = "mlp"

    def __init__(
        self,
        space: SearchSpace,
        hidden: Sequence[int] = (128, 128),
        seed: int = 0,
        max_iter: int = 1000,
    ) -> None:
        super().__init__(space)
        self.model = MLPRegressor(
            hidden_layer_sizes=tuple(hidden),
            random_state=seed,
            max_iter=max_iter,
            early_stopping=False,
            alpha=1e-3,
        )

    def encode(self, archs: Sequence[Arch]) -> np.ndarray:
        return np.stack([self.space.encode_onehot(a) for a in archs])

    def fit(self, archs: Sequence[Arch], y: Sequence[float]) -> MLPPredictor:
        y = np.asarray(y, dtype=float)
        self.mean, self.std = float(y.mean()), float(y.std()) or 1.0  # fit standardised targets
        self.model.fit(self.encode(archs), (y - self.mean) / self.std)
        return self

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        return self.model.predict(self.encode(archs)) * self.std + self.mean
