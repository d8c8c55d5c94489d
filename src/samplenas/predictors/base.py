"""Accuracy predictors: scikit-learn-style estimators over architectures.

``fit(archs, y)`` / ``predict(archs)`` take Archs of one space and encode them with the
space's own encoding, so the same predictor works for every space.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from scipy.stats import kendalltau

from samplenas.space import Arch, SearchSpace


def kendall_tau(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Kendall rank correlation (tau-b, ties handled) between truth and prediction."""
    tau = kendalltau(np.asarray(y_true), np.asarray(y_pred)).statistic
    return float(tau) if np.isfinite(tau) else 0.0


class Predictor(ABC):
    """Predicts a score (e.g. top-1) for architectures of ``space``."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def encode(self, archs: Sequence[Arch]) -> np.ndarray:
        return np.stack([self.space.encode(a) for a in archs]).astype(np.float64)

    @abstractmethod
    def fit(self, archs: Sequence[Arch], y: Sequence[float]) -> Predictor: ...

    @abstractmethod
    def predict(self, archs: Sequence[Arch]) -> np.ndarray: ...

    def score(self, archs: Sequence[Arch], y: Sequence[float]) -> float:
        """Kendall tau on held-out data (the papers' figure of merit for predictors)."""
        return kendall_tau(y, self.predict(archs))
