"""Samplers by name, as the CLI and YAML recipes spell them (timm-style registry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from samplenas.errors import UserError
from samplenas.samplers.base import Sampler, UniformSampler
from samplenas.space import SearchSpace

_FACTORIES: dict[str, Callable[..., Sampler]] = {}


def register_sampler(name: str, factory: Callable[..., Sampler]) -> None:
    """Add a sampler: ``factory(space, seed=..., **options) -> Sampler``."""
    _FACTORIES[name] = factory


def sampler_names() -> list[str]:
    return sorted(_FACTORIES)


def make_sampler(name: str, space: SearchSpace, seed: int | None = 0, **options: Any) -> Sampler:
    if name not in _FACTORIES:
        raise UserError(f"unknown sampler '{name}'; choose one of {sampler_names()}")
    return _FACTORIES[name](space, seed=seed, **options)


def _flops_uniform(space: SearchSpace, seed: int | None = 0, **options: Any) -> Sampler:
    from samplenas.samplers.flops_conditioned import FlopsConditionedSampler

    return FlopsConditionedSampler(space, seed=seed, **options)


register_sampler("uniform", UniformSampler)
register_sampler("flops-uniform", _flops_uniform)
