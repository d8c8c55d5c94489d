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

from samplenas.errors import UserError
from samplenas.io import DAMAGED_FILE_ERRORS, atomic_write
from samplenas.space import Arch, SearchSpace, load_space

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


def predictor_kinds() -> dict[str, type[Predictor]]:
    """Every predictor class that can be saved, by the kind its files name."""
    from samplenas.predictors.forest import RandomForestPredictor
    from samplenas.predictors.gcn import GCNPredictor
    from samplenas.predictors.mlp import MLPPredictor

    return {cls.name: cls for cls in (RandomForestPredictor, GCNPredictor, MLPPredictor)}


def load_predictor(path: str | Path, space: SearchSpace | None = None) -> Predictor:
    """Any predictor written by ``Predictor.save``, checked before use (no unpickling).

    A missing, truncated, tampered or foreign file is a UserError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"predictor file '{path}' does not exist; fit one with 'samplenas predictor fit'"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            arrays = {k: z[k] for k in z.files if k != "header"}
        kinds = predictor_kinds()
        if header.get("format") != FORMAT or header.get("kind") not in kinds:
            raise ValueError(f"unknown format or kind {header.get('kind')!r}")
        for name, a in arrays.items():
            if a.dtype.kind not in "biuf" or (a.dtype.kind == "f" and not np.isfinite(a).all()):
                raise ValueError(f"array '{name}' is not finite numbers")
        cls = kinds[header["kind"]]
        if space is None:
            space = load_space(header["space"])
        elif space.name != header["space"]:
            raise UserError(
                f"predictor '{path}' is for space '{header['space']}', not '{space.name}'"
            )
        predictor = cls(space, **dict(header["hyperparameters"]))
        predictor.load_arrays(arrays)
    except (*DAMAGED_FILE_ERRORS, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"'{path}' is not a valid predictor file saved by samplenas ({exc}); "
            "fit it again with 'samplenas predictor fit'"
        ) from exc
    return predictor
