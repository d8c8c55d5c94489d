"""Samplers by name, as the CLI and YAML recipes spell them (timm-style registry).

Exact names (``uniform``) and patterns (``bestup-3-loss``) both resolve here.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from samplenas.errors import UserError
from samplenas.samplers.base import Sampler, UniformSampler
from samplenas.space import SearchSpace

Options = frozenset[str] | None  # the options a factory accepts; None: any
_FACTORIES: dict[str, tuple[Callable[..., Sampler], Options]] = {}
_PATTERNS: list[tuple[re.Pattern[str], str, Callable[..., Sampler], Options]] = []
_POSITIONAL = {"match", "space", "seed"}  # what make_sampler passes itself


def _known_options(factory: Callable[..., Sampler], options: Iterable[str] | None) -> Options:
    """The declared options, else the factory's keyword parameters (None if it takes **kw)."""
    if options is not None:
        return frozenset(options)
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.name not in _POSITIONAL)


def register_sampler(
    name: str, factory: Callable[..., Sampler], options: Iterable[str] | None = None
) -> None:
    """Add a sampler: ``factory(space, seed=..., **options) -> Sampler``.

    ``options`` names the keyword options it accepts (default: read from its signature),
    so a misspelt ``sampler.options`` key is an error instead of a traceback or a no-op.
    """
    _FACTORIES[name] = (factory, _known_options(factory, options))


def register_sampler_pattern(
    pattern: str,
    example: str,
    factory: Callable[..., Sampler],
    options: Iterable[str] | None = None,
) -> None:
    """Add a family: ``factory(match, space, seed=..., **options)`` for names matching."""
    _PATTERNS.append((re.compile(pattern), example, factory, _known_options(factory, options)))


def sampler_names() -> list[str]:
    """Registered names, then each family's forms (for messages and ``--help``)."""
    return sorted(_FACTORIES) + [example for _, example, _, _ in _PATTERNS]


def check_options(name: str, options: dict[str, Any], known: Options) -> None:
    """UserError naming every unknown option of sampler ``name`` and the known ones."""
    unknown = sorted(set(options) - known) if known is not None else []
    if unknown:
        listed = ", ".join(sorted(known)) if known else "none"
        raise UserError(
            f"unknown option {', '.join(map(repr, unknown))} for sampler '{name}' "
            f"(sampler.options); its options: {listed}"
        )


def _construct(name: str, build: Callable[[], Sampler], options: dict[str, Any]) -> Sampler:
    """``build()``, with a value of ``options`` it cannot use named as the user's mistake."""
    try:
        return build()
    except (TypeError, ValueError, AttributeError) as exc:
        if not options:  # nothing the user chose: a fault to show in full
            raise
        raise UserError(
            f"sampler '{name}' cannot use sampler.options {options} ({exc}); "
            "check each option's value"
        ) from exc


def make_sampler(name: str, space: SearchSpace, seed: int | None = 0, **options: Any) -> Sampler:
    if name in _FACTORIES:
        factory, known = _FACTORIES[name]
        check_options(name, options, known)
        return _construct(name, partial(factory, space, seed=seed, **options), options)
    for pattern, _, factory, known in _PATTERNS:
        match = pattern.fullmatch(name)
        if match:
            check_options(name, options, known)
            return _construct(name, partial(factory, match, space, seed=seed, **options), options)
    raise UserError(f"unknown sampler '{name}'; choose one of: {'; '.join(sampler_names())}")


def _load_predictor(options: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """``predictor`` may be a fitted object or the path of any saved predictor of ``space``."""
    predictor = options.get("predictor")
    if isinstance(predictor, str):
        from samplenas.predictors import load_predictor

        options = {**options, "predictor": load_predictor(predictor, space)}
    return options


def _flops(targets: str) -> Callable[..., Sampler]:
    def factory(space: SearchSpace, seed: int | None = 0, **options: Any) -> Sampler:
        from samplenas.samplers.flops_conditioned import FlopsConditionedSampler

        return FlopsConditionedSampler(space, seed=seed, targets=targets, **options)

    return factory


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


# options of every cost-conditioned draw (prior: a FlopsPrior object, Python API only;
# latency_table: condition on a latency table's prediction instead of FLOPs)
FLOPS_OPTIONS = ("prior", "prior_samples", "step", "method", "latency_table")
ATTENTIVE_OPTIONS = (*FLOPS_OPTIONS, "targets")

register_sampler("uniform", UniformSampler)
TARGET_OPTIONS = ("target_mflops", "target_ms")
register_sampler("flops-prior", _flops("prior"), (*FLOPS_OPTIONS, *TARGET_OPTIONS))
register_sampler("flops-uniform", _flops("uniform"), (*FLOPS_OPTIONS, *TARGET_OPTIONS))
register_sampler_pattern(
    r"(?P<mode>best|worst)up-1M-acc",
    "bestup-1M-acc, worstup-1M-acc",
    _pareto_pool,
    (*ATTENTIVE_OPTIONS, "predictor", "pool_size", "per_bucket", "chunk"),
)
register_sampler_pattern(
    r"(?P<mode>best|worst)up-(?P<k>[0-9]+)-(?P<est>loss)",
    "bestup-K-loss, worstup-K-loss (K candidates scored by their minibatch loss, e.g. 3)",
    _attentive,
    (*ATTENTIVE_OPTIONS, "loss"),
)
register_sampler_pattern(
    r"(?P<mode>best|worst)up-(?P<k>[0-9]+)-(?P<est>acc)",
    "bestup-K-acc, worstup-K-acc (K candidates scored by a predictor, e.g. 50)",
    _attentive,
    (*ATTENTIVE_OPTIONS, "predictor"),
)


def _probabilistic(space: SearchSpace, seed: int | None = 0, **options: Any) -> Sampler:
    from samplenas.samplers.probabilistic import ProbabilisticSampler

    return ProbabilisticSampler(space, seed=seed, **options)


register_sampler(
    "probabilistic",
    _probabilistic,
    ("distribution", "sampling", "lr", "beta", "temperature", "target_mflops"),
)


def _vae(space: SearchSpace, seed: int | None = 0, **options: Any) -> Sampler:
    from samplenas.samplers.vae_oneshot import VAEOneShotSampler

    return VAEOneShotSampler(space, seed=seed, **options)


# Algorithm 2's own options, then the VAE's (``VAEConfig``), spelt out here so that
# listing samplers does not import torch
VAE_OPTIONS = (
    *("eps_inc", "eps_max", "n_vae", "n_s", "score_calib_batches", "score_val_images"),
    *("max_rounds", "latent", "hidden", "embed", "kl_weight", "lr", "batch_size"),
    *("n_iters", "ranking_ratio", "temperature"),
)
register_sampler("vae", _vae, VAE_OPTIONS)
