"""BN calibration (BigNAS / slimmable networks): re-estimate BN statistics of a sub-network.

The running statistics a supernet accumulates during training mix every sub-network, so
before a sub-network is evaluated its statistics are reset and re-estimated as an exact
cumulative average over N batches (momentum=None), without gradients. Only the BN layers
are put in train mode: dropout and stochastic depth stay off, so the statistics are those
of the network that will be evaluated, whatever modes the caller's other layers were in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def calibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor], num_batches: int) -> None:
    """Reset every BN's running statistics and re-estimate them over ``num_batches``."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    modes = {m: m.training for m in model.modules()}
    saved = [(m, m.momentum) for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for x in islice(batches, num_batches):
            model(x)
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        for m, training in modes.items():
            m.training = training


@contextmanager
def calibrated_subnet(
    supernet: nn.Module, arch, batches: Iterable[torch.Tensor], num_batches: int
) -> Iterator[nn.Module]:
    """The supernet with ``arch`` active and calibrated BN; shared statistics restored after."""
    buffers = {name: b.clone() for name, b in supernet.named_buffers()}
    previous = getattr(supernet, "active_arch", None)
    supernet.set_arch(arch)
    try:
        calibrate_bn(supernet, batches, num_batches)
        yield supernet
    finally:
        with torch.no_grad():
            for name, b in supernet.named_buffers():
                b.copy_(buffers[name])
        if previous is not None:
            supernet.set_arch(previous)
