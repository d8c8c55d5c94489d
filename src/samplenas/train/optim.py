"""The supernet's SGD, fused into one kernel per step where this PyTorch supports it.

Every step updates the momentum and weights of the *whole* supernet (the largest
sub-network touches every weight), so the update is a fixed memory-bound cost; the fused
kernel reads each tensor once instead of once per foreach pass (3.3 vs 5.3 ms for 3 M
parameters on one CPU thread). Older PyTorch builds without a fused CPU SGD fall back to
the foreach implementation, which computes the same update.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def sgd(params: Iterable[Any], lr: float, momentum: float, nesterov: bool) -> torch.optim.SGD:
    """``torch.optim.SGD`` with ``fused=True`` when supported, else the default."""
    groups = list(params)
    try:
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
