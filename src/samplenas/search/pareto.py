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


def pareto_ranks(cost: Sequence[float], score: Sequence[float]) -> np.ndarray:
    """Non-dominated sorting: 0 for the front, 1 for the front of the rest, and so on."""
    cost, score = np.asarray(cost, dtype=float), np.asarray(score, dtype=float)
    ranks = np.full(len(cost), -1, dtype=np.int64)
    left = np.arange(len(cost))
    rank = 0
    while len(left):
        front = left[pareto_front(cost[left], score[left])]
        ranks[front] = rank
        left = left[ranks[left] < 0]
        rank += 1
    return ranks


def hypervolume_2d(
    cost: Sequence[float],
    score: Sequence[float],
    cost_range: tuple[float, float],
    score_range: tuple[float, float],
) -> float:
    """Area (in [0, 1]) that the points dominate once both axes are scaled to [0, 1] by
    the given ranges; the reference point is (highest cost, lowest score). Points outside
    the ranges are clipped to them."""
    if len(cost) == 0:
        return 0.0
    c_lo, c_hi = cost_range
    s_lo, s_hi = score_range
    c = np.clip((np.asarray(cost, dtype=float) - c_lo) / max(c_hi - c_lo, 1e-12), 0.0, 1.0)
    s = np.clip((np.asarray(score, dtype=float) - s_lo) / max(s_hi - s_lo, 1e-12), 0.0, 1.0)
    front = pareto_front(c, s)  # increasing cost and increasing score
    edges = np.append(c[front], 1.0)
    return float(np.sum(np.diff(edges) * s[front]))
