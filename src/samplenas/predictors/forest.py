"""The AttentiveNAS accuracy predictor: a random forest on the architecture encoding.

Appendix: 100 trees, maximum depth 15, on the 31-integer vector
[resolution] + width + depth + kernel_size + expand_ratio. Saved as plain arrays in an
``.npz`` (no pickle), so a predictor file from anywhere is safe to load.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.tree import DecisionTreeRegressor
from sklearn.tree._tree import Tree

from samplenas.errors import UserError
from samplenas.io import atomic_write
from samplenas.predictors.base import Predictor
from samplenas.space import Arch, GeneSpace, SearchSpace, load_space


class RandomForestPredictor(Predictor):
    name = "random-forest"

    def __init__(
        self,
        space: SearchSpace,
        n_estimators: int = 100,
        max_depth: int | None = 15,
        seed: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        super().__init__(space)
        self.model = RandomForestRegressor(
            n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=n_jobs
        )

    def fit(self, archs: Sequence[Arch], y: Sequence[float]) -> RandomForestPredictor:
        self.model.fit(self.encode(archs), np.asarray(y, dtype=float))
        return self

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        return self.model.predict(self.encode(archs))

    def predict_indices(self, idx: np.ndarray) -> np.ndarray:
        """Predict a batch of index rows without building Archs (for million-arch pools)."""
        assert isinstance(self.space, GeneSpace)
        return self.model.predict(self.space.values_from_indices(idx).astype(np.float64))

    def save(self, path: str | Path) -> None:
        """Write the fitted trees as arrays (atomically)."""
        arrays: dict[str, np.ndarray] = {}
        for i, est in enumerate(self.model.estimators_):
            state = est.tree_.__getstate__()
            arrays[f"nodes_{i}"] = state["nodes"]
            arrays[f"values_{i}"] = state["values"]
            arrays[f"size_{i}"] = np.array([state["max_depth"], state["node_count"]])
        meta = {
            "format": "samplenas-random-forest-1",
            "space": self.space.name,
            "trees": len(self.model.estimators_),
            "features": self.model.n_features_in_,
        }
        atomic_write(
            path, lambda f: np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
        )


def load_predictor(path: str | Path, space: SearchSpace | None = None) -> RandomForestPredictor:
    """Load a predictor written by ``RandomForestPredictor.save`` (no unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"predictor file '{path}' does not exist; fit one with 'samplenas predictor fit'"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != "samplenas-random-forest-1":
                raise ValueError("unknown format")
            predictor = RandomForestPredictor(space or load_space(meta["space"]))
            estimators = []
            for i in range(meta["trees"]):
                depth, count = (int(v) for v in z[f"size_{i}"])
                tree = Tree(meta["features"], np.array([1], dtype=np.intp), 1)
                tree.__setstate__(
                    {
                        "max_depth": depth,
                        "node_count": count,
                        "nodes": z[f"nodes_{i}"],
                        "values": z[f"values_{i}"],
                    }
                )
                est = DecisionTreeRegressor()
                est.tree_, est.n_features_in_, est.n_outputs_ = tree, meta["features"], 1
                estimators.append(est)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"'{path}' is not a predictor saved by samplenas ({exc})") from exc
    model = predictor.model
    model.estimators_, model.n_features_in_, model.n_outputs_ = estimators, meta["features"], 1
    model.estimator_ = DecisionTreeRegressor()
    return predictor
