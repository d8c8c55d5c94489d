"""Baseline: a multi-layer perceptron on the one-hot architecture encoding.

scikit-learn trains it; prediction is a plain NumPy forward pass over the learnt layers
(ReLU hidden units, linear output, as scikit-learn's regressor), so a saved MLP is just
its weight arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

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
        self.hidden, self.seed, self.max_iter = tuple(int(h) for h in hidden), seed, max_iter
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []

    def encode(self, archs: Sequence[Arch]) -> np.ndarray:
        return np.stack([self.space.encode_onehot(a) for a in archs])

    def fit(self, archs: Sequence[Arch], y: Sequence[float]) -> MLPPredictor:
        from sklearn.neural_network import MLPRegressor

        model = MLPRegressor(
            hidden_layer_sizes=self.hidden,
            random_state=self.seed,
            max_iter=self.max_iter,
            early_stopping=False,
            alpha=1e-3,
        )
        y = np.asarray(y, dtype=float)
        self.mean, self.std = float(y.mean()), float(y.std()) or 1.0  # fit standardised targets
        model.fit(self.encode(archs), (y - self.mean) / self.std)
        self.weights, self.biases = list(model.coefs_), list(model.intercepts_)
        return self

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        h = self.encode(archs).astype(np.float64)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0] * self.std + self.mean

    def hyperparameters(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "seed": self.seed, "max_iter": self.max_iter}

    def fitted_arrays(self) -> dict[str, np.ndarray]:
        layers = {f"weight_{i}": w for i, w in enumerate(self.weights)}
        layers.update({f"bias_{i}": b for i, b in enumerate(self.biases)})
        return {**layers, "target": np.array([self.mean, self.std])}

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Take the layers, checking they chain from the one-hot input to one output."""
        sizes = [len(self.space.encode_onehot(self.space.sample(np.random.default_rng(0))))]
        sizes += [*self.hidden, 1]
        weights = [arrays[f"weight_{i}"] for i in range(len(sizes) - 1)]
        biases = [arrays[f"bias_{i}"] for i in range(len(sizes) - 1)]
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            if w.shape != (sizes[i], sizes[i + 1]) or b.shape != (sizes[i + 1],):
                raise ValueError(f"layer {i} is not {sizes[i]} x {sizes[i + 1]}")
        self.weights = [w.astype(np.float64) for w in weights]
        self.biases = [b.astype(np.float64) for b in biases]
        self.mean, self.std = (float(v) for v in arrays["target"])
