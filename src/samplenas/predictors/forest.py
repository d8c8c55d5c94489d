"""The AttentiveNAS accuracy predictor: a random forest on the architecture encoding.

Appendix: 100 trees, maximum depth 15, on the 31-integer vector
[resolution] + width + depth + kernel_size + expand_ratio. scikit-learn grows the trees;
they are then kept as plain node arrays (children, feature, threshold, value) and walked
by a vectorised NumPy traversal, so prediction needs neither scikit-learn's private
``Tree`` layout nor trust in a file: loaded arrays are checked (indices in range,
children after their parent, which rules out cycles, finite numbers) before any use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from samplenas.predictors.base import Predictor
from samplenas.space import Arch, GeneSpace, SearchSpace

LEAF = -1  # the child index of a leaf (scikit-learn's TREE_LEAF)
NODE_ARRAYS = ("children_left", "children_right", "feature", "threshold", "value")


@dataclass(frozen=True)
class Forest:
    """Trees as concatenated node arrays; tree t owns nodes offsets[t]:offsets[t + 1],
    its root first, and its child indices are local to it."""

    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    offsets: np.ndarray
    n_features: int

    @classmethod
    def from_sklearn(cls, model: Any) -> Forest:
        trees = [est.tree_ for est in model.estimators_]
        cat = lambda get: np.concatenate([get(t) for t in trees])  # noqa: E731
        return cls(
            cat(lambda t: t.children_left).astype(np.int64),
            cat(lambda t: t.children_right).astype(np.int64),
            cat(lambda t: t.feature).astype(np.int64),
            cat(lambda t: t.threshold).astype(np.float64),
            cat(lambda t: t.value.reshape(-1)).astype(np.float64),
            np.cumsum([0] + [t.node_count for t in trees]).astype(np.int64),
            int(model.n_features_in_),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            **{k: getattr(self, k) for k in NODE_ARRAYS},
            "offsets": self.offsets,
            "n_features": np.array(self.n_features),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], n_features: int) -> Forest:
        """Check arrays from a file; ValueError saying what is wrong."""
        missing = [k for k in (*NODE_ARRAYS, "offsets", "n_features") if k not in arrays]
        if missing:
            raise ValueError(f"missing arrays {missing}")
        if int(arrays["n_features"]) != n_features:
            raise ValueError(
                f"the trees read {int(arrays['n_features'])} features, not {n_features}"
            )
        kinds = {"children_left": "i", "children_right": "i", "feature": "i", "offsets": "i"}
        for k in (*NODE_ARRAYS, "offsets"):
            a = arrays[k]
            if a.ndim != 1 or a.dtype.kind not in kinds.get(k, "f"):
                raise ValueError(f"'{k}' must be a 1-D {kinds.get(k, 'f')} array")
        n = len(arrays["children_left"])
        if any(len(arrays[k]) != n for k in NODE_ARRAYS):
            raise ValueError("the node arrays differ in length")
        offsets = arrays["offsets"].astype(np.int64)
        if len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != n or (np.diff(offsets) < 1).any():
            raise ValueError("'offsets' must rise from 0 to the node count")
        forest = cls(
            *(arrays[k].astype(np.int64) for k in ("children_left", "children_right", "feature")),
            *(arrays[k].astype(np.float64) for k in ("threshold", "value")),
            offsets,
            n_features,
        )
        forest.check()
        return forest

    def check(self) -> None:
        """Every internal node splits on a real feature into two later nodes of its tree,
        and every node but a root has one parent: a tree, walked in at most its size."""
        size = np.diff(self.offsets)
        local = np.arange(len(self.value)) - np.repeat(self.offsets[:-1], size)
        tree_size = np.repeat(size, size)
        left, right = self.children_left, self.children_right
        leaf = left == LEAF
        if (leaf != (right == LEAF)).any():
            raise ValueError("a node has exactly one child")
        inner = ~leaf
        for child in (left[inner], right[inner]):
            if ((child <= local[inner]) | (child >= tree_size[inner])).any():
                raise ValueError("a child index is out of range or not after its parent")
        base = np.repeat(self.offsets[:-1], size)[inner]
        parents = np.bincount(
            np.concatenate([left[inner] + base, right[inner] + base]), minlength=len(left)
        )
        if (parents[self.offsets[:-1]] != 0).any() or (
            np.delete(parents, self.offsets[:-1]) != 1
        ).any():
            raise ValueError("a node is not reached from its root by exactly one path")
        if ((self.feature[inner] < 0) | (self.feature[inner] >= self.n_features)).any():
            raise ValueError("a split reads a feature that does not exist")
        if not (np.isfinite(self.threshold).all() and np.isfinite(self.value).all()):
            raise ValueError("a threshold or value is not finite")

    @cached_property
    def _walk(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(children [2 * node + go_left], split feature, rounds): global child indices,
        a leaf pointing at itself so finished walks stay put; rounds = the deepest leaf."""
        leaf = self.children_left == LEAF
        base = np.repeat(self.offsets[:-1], np.diff(self.offsets))
        here = np.arange(len(leaf))
        right = np.where(leaf, here, self.children_right + base)
        left = np.where(leaf, here, self.children_left + base)
        rounds, level = 0, self.offsets[:-1]
        while True:  # breadth-first; ends because children come after their parent
            level = level[~leaf[level]]
            if not level.size:
                break
            level, rounds = np.concatenate([left[level], right[level]]), rounds + 1
        return np.stack([right, left], 1).ravel(), np.where(leaf, 0, self.feature), rounds

    def predict(self, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Mean leaf value over the trees, walking every (row, tree) pair at once."""
        children, feature, rounds = self._walk
        x = np.asarray(x, dtype=np.float32).astype(np.float64)  # as scikit-learn compares
        out = np.empty(len(x))
        for i in range(0, len(x), chunk):
            flat = x[i : i + chunk].ravel()
            rows = len(flat) // x.shape[1]
            node = np.tile(self.offsets[:-1], (rows, 1))
            row_start = (np.arange(rows) * x.shape[1])[:, None]
            for _ in range(rounds):
                below = flat[row_start + feature[node]] <= self.threshold[node]
                node = children[2 * node + below]
            out[i : i + chunk] = self.value[node].mean(axis=1)
        return out


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
        self.n_estimators, self.max_depth, self.seed, self.n_jobs = (
            n_estimators,
            max_depth,
            seed,
            n_jobs,
        )
        self.forest: Forest | None = None

    def fit(self, archs: Sequence[Arch], y: Sequence[float]) -> RandomForestPredictor:
        from sklearn.ensemble import RandomForestRegressor

        model = RandomForestRegressor(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            random_state=self.seed,
            n_jobs=self.n_jobs,
        )
        model.fit(self.encode(archs), np.asarray(y, dtype=float))
        self.forest = Forest.from_sklearn(model)
        return self

    def _fitted(self) -> Forest:
        if self.forest is None:
            raise RuntimeError("the random forest is not fitted")
        return self.forest

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        return self._fitted().predict(self.encode(archs))

    def predict_indices(self, idx: np.ndarray) -> np.ndarray:
        """Predict a batch of index rows without building Archs (for million-arch pools)."""
        assert isinstance(self.space, GeneSpace)
        return self._fitted().predict(self.space.values_from_indices(idx))

    def hyperparameters(self) -> dict[str, Any]:
        return {"n_estimators": self.n_estimators, "max_depth": self.max_depth, "seed": self.seed}

    def fitted_arrays(self) -> dict[str, np.ndarray]:
        return self._fitted().arrays()

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        n_features = len(self.space.encode(self.space.sample(np.random.default_rng(0))))
        self.forest = Forest.from_arrays(arrays, n_features)
