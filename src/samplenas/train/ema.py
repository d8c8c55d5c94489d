"""An exponential moving average of the supernet's weights (``train.ema_decay``).

Why: a short SGD run ends with weights that still jitter around the minimum; their
average usually scores a little higher (FP-NAS's recipe uses EMA; its appendix reports
+0.2-1.4 points, more for larger models). The average is kept with PyTorch's
``AveragedModel``. BN statistics are not averaged: every sub-network is BN-calibrated
before it is scored, so only the averaged parameters matter.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

PREFIX = "module."


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    """Parameters only; ``update_parameters(model)`` after every optimizer step."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)


def averaged_parameters(
    ema_state: dict[str, torch.Tensor], model: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """The averaged parameters from an ``AveragedModel`` state dict, keyed like ``model``."""
    names = {name for name, _ in model.named_parameters()}
    out = {k[len(PREFIX) :]: v for k, v in ema_state.items() if k.startswith(PREFIX)}
    return {k: v for k, v in out.items() if k in names}
