"""The supernet's SGD, fused into one kernel per step where this PyTorch supports it.

Every step updates the momentum and weights of nearly the whole supernet, so the update
is a fixed memory-bound cost; the fused kernel reads each tensor once instead of once per
foreach pass (3.3 vs 5.3 ms for 3 M parameters on one CPU thread). Older PyTorch builds
without a fused CPU SGD fall back to the foreach implementation, which computes the same
update.

A weight can miss steps: the 1x1 projection on a stage's first shortcut runs only when
the block's input and output widths differ, which need not hold for the largest
sub-network, so it gets a gradient only on steps that sampled such a sub-network.
PyTorch's fused SGD creates momentum buffers only on a step where *no* weight of the
group has one yet, so that weight would reach the kernel without a buffer and crash it.
``step`` gives it a zero buffer first, which (with no dampening) is exactly the
reference update: ``0 * momentum + grad`` is the ``grad`` the reference SGD starts from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class _SupernetSGD(torch.optim.SGD):
    """SGD whose every stepped weight has a momentum buffer before the kernel runs."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        for group in self.param_groups:
            if group["momentum"] == 0 or group["dampening"] != 0:
                continue
            for p in group["params"]:
                if p.grad is not None and self.state[p].get("momentum_buffer") is None:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return super().step(closure)


def sgd(params: Iterable[Any], lr: float, momentum: float, nesterov: bool) -> torch.optim.SGD:
    """SGD with ``fused=True`` when supported, else the default implementation."""
    groups = list(params)
    try:
        return _SupernetSGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return _SupernetSGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
