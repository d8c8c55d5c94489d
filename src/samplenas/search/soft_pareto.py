"""Soft-Pareto selection (Neural Predictor, section 4.2).

Sort candidates by cost (latency, params, FLOPs); keep one when its predicted accuracy is
higher than the minimum over the previous J kept ones. With J = 1 this is the ordinary
Pareto front of the predictions; a larger J keeps near-frontier models too, which absorbs
the predictor's mistakes. The paper uses J = 6.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def soft_pareto(cost: Sequence[float], predicted: Sequence[float], j: int = 6) -> np.ndarray:
    """Indices of the soft-Pareto-optimal candidates, in increasing cost."""
    if j < 1:
        raise ValueError("J must be at least 1")
    cost, predicted = np.asarray(cost, dtype=float), np.asarray(predicted, dtype=float)
    order = np.lexsort((-predicted, cost))
    kept: list[int] = []
    for i in order:
        window = kept[-j:]
        if not window or predicted[i] > min(predicted[k] for k in window):
            kept.append(int(i))
    return np.array(kept, dtype=np.int64)
