"""Accuracy predictors: scikit-learn-style estimators over architectures.

``fit(archs, y)`` / ``predict(archs)`` take Archs of one space and encode them with the
space's own encoding, so the same predictor works for every space.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from samplenas.io import atomic_write
from samplenas.space import Arch, SearchSpace

FORMAT = "samplenas-predictor-1"


def kendall_tau(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Kendall rank correlation (tau-b, ties handled) between truth and prediction."""
    tau = kendalltau(np.asarray(y_true), np.asarray(y_pred)).statistic
    return float(tau) if np.isfinite(tau) else 0.0


def tau_ceiling(
    half_a: Sequence[float], half_b: Sequence[float], halves_per_label: float = 2.0
) -> float:
    """The Kendall tau a perfect predictor would score against noisy measured accuracies.

    ``half_a`` / ``half_b`` measure the same networks on two disjoint, equal halves of the
    evaluation images; the label used for fitting is their mean (``halves_per_label`` = 2;
    a larger value projects to a label measured on that many halves' worth of images).
    Under additive Gaussian noise, the halves' Pearson r is the reliability of one half;
    Spearman-Brown gives the label's, k r / (1 + (k - 1) r); its square root is the label's
    correlation with the true accuracy, and Greiner's relation tau = (2 / pi) arcsin(rho)
    turns that into Kendall tau. A predictor's tau well below this is the predictor's
    fault; near it, only more evaluation images can raise tau.
    """
    a, b = np.asarray(half_a, dtype=float), np.asarray(half_b, dtype=float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return 0.0
    r = float(np.corrcoef(a, b)[0, 1])
    if not np.isfinite(r) or r <= 0:
        return 0.0
    k = halves_per_label
    reliability = k * r / (1 + (k - 1) * r)
    return float(2 / np.pi * np.arcsin(np.sqrt(reliability)))


class Predictor(ABC):
    """Predicts a score (e.g. top-1) for architectures of ``space``.

    One file protocol for every predictor: ``save`` writes a pickle-free ``.npz`` holding
    a JSON header (kind, space, constructor hyperparameters) and the fitted state as plain
    arrays; ``load_predictor`` rebuilds any kind from it and lets the predictor check the
    arrays before they are used, so a file from anywhere is safe to load.
    (``samplenas.predictors.registry.load_predictor`` reads them back.)
    """

    name: str

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

    # -- saving and loading -------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        """The JSON-able constructor arguments (besides the space) that rebuild this kind."""
        raise NotImplementedError(f"predictor '{self.name}' cannot be saved")

    def fitted_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as plain numeric arrays."""
        raise NotImplementedError(f"predictor '{self.name}' cannot be saved")

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Take the state from ``fitted_arrays``; ValueError when the arrays are malformed."""
        raise NotImplementedError(f"predictor '{self.name}' cannot be loaded")

    def save(self, path: str | Path) -> None:
        """Write the header and the fitted arrays (atomically, no pickle)."""
        header = {
            "format": FORMAT,
            "kind": self.name,
            "space": self.space.name,
            "hyperparameters": self.hyperparameters(),
        }
        arrays = self.fitted_arrays()
        atomic_write(
            path, lambda f: np.savez_compressed(f, header=np.array(json.dumps(header)), **arrays)
        )
