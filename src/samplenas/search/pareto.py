"""Pareto fronts: the best accuracy for the cost, overall and per FLOPs bucket."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pareto_front(cost: Sequence[float], score: Sequence[float]) -> np.ndarray:
    """Indices of points no other point beats (lower or equal cost and higher score),
    sorted by cost. Ties in cost keep only the best score."""
    cost, score = np.asarray(cost, dtype=float), np.asarray(score, dtype=float)
    order = np.lexsort((-score, cost))
    keep, best = [], -np.inf
    for i in order:
        if score[i] > best:
            keep.append(i)
            best = score[i]
    return np.array(keep, dtype=np.int64)


def best_per_bucket(buckets: Sequence[int], score: Sequence[float]) -> dict[int, int]:
    """For each bucket, the index of its highest-scoring member."""
    best: dict[int, int] = {}
    for i, (b, s) in enumerate(zip(buckets, score, strict=True)):
        b = int(b)
        if b not in best or s > score[best[b]]:
            best[b] = i
    return best


def front_accuracy_at(
    front_cost: np.ndarray, front_score: np.ndarray, budgets: Sequence[float]
) -> np.ndarray:
    """Best score reachable at or under each budget (NaN where nothing fits)."""
    out = np.full(len(budgets), np.nan)
    for j, b in enumerate(budgets):
        ok = front_cost <= b
        if ok.any():
            out[j] = front_score[ok].max()
    return out
