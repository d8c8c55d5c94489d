"""Accuracy of one sub-network: export it, calibrate its BN statistics, evaluate.

Working on the exported copy leaves the supernet's shared weights and statistics exactly
as other sub-networks see them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from samplenas.data import Loader, Splits, make_loader
from samplenas.space import Arch
from samplenas.train.config import RunConfig


@torch.no_grad()
def accuracy(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
    halves: bool = False,
) -> dict[str, float]:
    """Top-1 (%) and mean cross-entropy of ``model`` in eval mode.

    With ``halves``, also the top-1 of the even- and odd-numbered images alone
    (``top1_a``, ``top1_b``): two independent measurements of the same network, whose
    agreement tells how much of a ranking of networks is measurement noise.
    """
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    hits = [0, 0]
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        hit = logits.argmax(1) == y
        if halves:  # parity of the image's index in the whole stream
            first = total % 2
            hits[0] += int(hit[first::2].sum())
            hits[1] += int(hit[1 - first :: 2].sum())
        correct += int(hit.sum())
        total += len(y)
    out = {"top1": 100.0 * correct / max(total, 1), "loss": loss_sum / max(total, 1)}
    if halves:
        out["top1_a"] = 100.0 * hits[0] / max((total + 1) // 2, 1)
        out["top1_b"] = 100.0 * hits[1] / max(total // 2, 1)
    return out


def calibration_batches(loader: Loader, num_batches: int) -> list[torch.Tensor]:
    """The first ``num_batches`` images of a fixed (seeded) order, without augmentation."""
    out = []
    for x, _ in loader.epoch(0):
        out.append(x)
        if len(out) >= num_batches:
            break
    return out


def calibration_set(
    data: Splits, cfg: RunConfig, num_batches: int | None = None
) -> list[torch.Tensor]:
    """The recipe's BN-calibration images: a fixed, seeded, unaugmented sample."""
    c = cfg.calibration
    loader = make_loader(
        data,
        c.split,
        c.batch_size,
        shuffle=True,
        augment=False,
        seed=cfg.seed,
        drop_last=False,
        channels_last=cfg.train.channels_last,
    )
    return calibration_batches(loader, num_batches or c.batches)


def eval_loader(data: Splits, cfg: RunConfig, split: str, limit: int | None = None) -> Loader:
    """Batches of a split in a fixed order; ``limit`` keeps only its first images."""
    if limit:
        data = replace(data, **{split: data.split(split).head(limit)})
    return make_loader(
        data,
        split,
        batch_size=data.eval_batch_size,
        shuffle=False,
        augment=False,
        drop_last=False,
        channels_last=cfg.train.channels_last,
    )


def evaluate_subnet(
    supernet: nn.Module,
    arch: Arch,
    calib: list[torch.Tensor],
    eval_loader: Loader,
    channels_last: bool = False,
    device: torch.device | str = "cpu",
    halves: bool = False,
) -> dict[str, float]:
    """Export ``arch``, re-estimate its BN statistics on ``calib``, measure on ``eval_loader``.

    ``halves``: also the top-1 of each half of the images (see ``accuracy``).
    """
    from samplenas.supernet import calibrate_bn

    model = supernet.export(arch).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    calibrate_bn(model, (x.to(device) for x in calib), len(calib))
    return accuracy(model, eval_loader.epoch(0), device, halves=halves)
