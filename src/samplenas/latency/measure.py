"""Timing one block or one whole network of a MobileNet-style space."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from samplenas.latency import timing
from samplenas.latency.blocks import Block, build_block, input_shape
from samplenas.latency.timing import TimingSettings
from samplenas.space import Arch, MBConvSpace


def time_block(space: MBConvSpace, block: Block, settings: TimingSettings) -> float:
    """Median ms of one block built with the static model's layers."""
    module = build_block(space, block)
    return timing.time_module(module, input_shape(block, settings.batch), settings)


def time_arch(space: MBConvSpace, arch: Arch, settings: TimingSettings) -> float:
    """Median ms of the whole static model of ``arch`` (what ``export`` writes), fed at the
    arch's own resolution so the model's input resize does nothing."""
    from samplenas.supernet.static import build_model

    r = int(arch["resolution"])
    shape = (settings.batch, space.config.in_channels, r, r)
    return timing.time_module(build_model(space, arch), shape, settings)


def sample_archs(
    space: MBConvSpace,
    n: int,
    resolutions: tuple[int, ...],
    seed: int,
    exclude: Collection[Arch] = (),
    balanced: bool = False,
) -> list[Arch]:
    """``n`` distinct random archs whose resolution is one of ``resolutions`` (seeded),
    none of ``exclude``; ``balanced``: the resolutions in turn, as many of each.

    Asking for more than those resolutions hold would never finish, so the count is
    capped at what exists.
    """
    rng = np.random.default_rng(seed)
    excluded = set(exclude)
    per_resolution = space.size() // len(space.config.resolution)
    n = min(n, per_resolution * len(resolutions) - len(excluded))
    found: dict[Arch, None] = {}
    while len(found) < n:
        arch = space.sample(rng)
        r = resolutions[len(found) % len(resolutions)] if balanced else rng.choice(resolutions)
        arch = space.validate(arch.replace(resolution=int(r)))
        if arch not in excluded:
            found[arch] = None
    return list(found)
