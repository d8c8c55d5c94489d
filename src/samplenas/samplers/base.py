"""The Sampler protocol: every strategy that decides which architectures to look at.

Modelled on Optuna's ask/tell: the training loop and the search loop only call
``ask(n)`` and ``tell(archs, scores)``, so uniform, FLOPs-conditioned, attentive,
probabilistic, VAE and evolutionary samplers are interchangeable. Samplers are seeded
and checkpointable through ``state_dict`` (plain JSON-able data, never pickles).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from samplenas.space import Arch, SearchSpace


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The generator's state as JSON-able data."""
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


class Sampler(ABC):
    """Proposes architectures (``ask``) and learns from their scores (``tell``)."""

    #: registry name, set by subclasses
    name: str = "sampler"

    def __init__(self, space: SearchSpace, seed: int | None = 0) -> None:
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    @abstractmethod
    def ask(self, n: int = 1) -> list[Arch]:
        """Propose ``n`` architectures."""

    def tell(self, archs: Sequence[Arch], scores: Sequence[float]) -> None:  # noqa: B027
        """Feedback: higher score is better. Samplers that do not learn ignore it."""

    #: (BN-calibration batches, validation images or None for all) a trainer scores
    #: ``wants_scores``' architectures with
    score_budget: tuple[int, int | None] = (2, None)

    def wants_scores(self, step: int) -> list[Arch]:
        """Architectures to score on the current supernet after training step ``step``
        (1-based); the trainer measures them and ``tell``s their scores. Samplers that
        learn from the supernet as it trains (VAENAS, Algorithm 2) ask; others never do."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state for checkpoints; subclasses extend it."""
        return {"name": self.name, "rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])

    def stats(self) -> dict[str, float]:
        """Counters worth logging (e.g. trials per sample, extra forward passes)."""
        return {}

    def last_decision(self) -> dict[str, Any]:
        """How the last ``ask`` chose, as JSON-able data for the run's per-step log."""
        return {}


class UniformSampler(Sampler):
    """Every architecture equally likely: the baseline of every paper."""

    name = "uniform"

    def ask(self, n: int = 1) -> list[Arch]:
        return self.space.sample_many(self.rng, n)
