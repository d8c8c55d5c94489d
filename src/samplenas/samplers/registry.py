"""Samplers by name, as the CLI and YAML recipes spell them (timm-style registry).

Exact names (``uniform``) and patterns (``bestup-3-loss``) both resolve here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from samplenas.errors import UserError
from samplenas.samplers.base import Sampler, UniformSampler
from samplenas.space import SearchSpace

_FACTORIES: dict[str, Callable[..., Sampler]] = {}
_PATTERNS: list[tuple[re.Pattern[str], str, Callable[..., Sampler]]] = []


def register_sampler(name: str, factory: Callable[..., Sampler]) -> None:
    """Add a sampler: ``factory(space, seed=..., **options) -> Sampler``."""
    _FACTORIES[name] = factory


def register_sampler_pattern(pattern: str, example: str, factory: Callable[..., Sampler]) -> None:
    """Add a family: ``factory(match, space, seed=..., **options)`` for names matching."""
    _PATTERNS.append((re.compile(pattern), example, factory))


def sampler_names() -> list[str]:
    """Registered names, then each family's forms (for messages and ``--help``)."""
    return sorted(_FACTORIES) + [example for _, example, _ in _PATTERNS]


def make_sampler(name: str, space: SearchSpace, seed: int | None = 0, **options: Any) -> Sampler:
    if name in _FACTORIES:
        return _FACTORIES[name](space, seed=seed, **options)
    for pattern, _, factory in _PATTERNS:
        match = pattern.fullmatch(name)
        if match:
            return factory(match, space, seed=seed, **options)
    raise UserError(f"unknown sampler '{name}'; choose one of: {'; '.join(sampler_names())}")


def _load_predictor(options: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """``predictor`` may be a fitted object or the path of any saved predictor of ``space``."""
    predictor = options.get("predictor")
    if isinstance(predictor, str):
        from samplenas.predictors import load_predictor

        options = {**options, "predictor": load_predictor(predictor, space)}
    return options


def _flops_uniform(space: SearchSpace, seed: int | None = 0, **options: Any) -> Sampler:
    from samplenas.samplers.flops_conditioned import FlopsConditionedSampler

    return FlopsConditionedSampler(space, seed=seed, **options)


def _attentive(
    match: re.Match[str], space: SearchSpace, seed: int | None = 0, **options: Any
) -> Sampler:
    from samplenas.samplers.attentive import AttentiveSampler

    options = _load_predictor(options, space)
    return AttentiveSampler(
        space, seed=seed, k=int(match["k"]), mode=match["mode"], estimator=match["est"], **options
    )


def _pareto_pool(
    match: re.Match[str], space: SearchSpace, seed: int | None = 0, **options: Any
) -> Sampler:
    from samplenas.samplers.attentive import ParetoPoolSampler

    options = _load_predictor(options, space)
    return ParetoPoolSampler(space, seed=seed, mode=match["mode"], **options)


register_sampler("uniform", UniformSampler)
register_sampler("flops-uniform", _flops_uniform)
register_sampler_pattern(
    r"(?P<mode>best|worst)up-1M-acc", "bestup-1M-acc, worstup-1M-acc", _pareto_pool
)
register_sampler_pattern(
    r"(?P<mode>best|worst)up-(?P<k>[0-9]+)-(?P<est>loss|acc)",
    "bestup-K-loss, worstup-K-loss, bestup-K-acc, worstup-K-acc (K candidates, e.g. 3 or 50)",
    _attentive,
)
