"""FLOPs-conditioned sampling (AttentiveNAS eq. 5): draw τ ~ π(τ), then α ~ π̂(α | τ)."""

from __future__ import annotations

from typing import Any

import numpy as np

from samplenas.errors import UserError
from samplenas.samplers.base import Sampler
from samplenas.samplers.flops_prior import FlopsPrior
from samplenas.space import Arch, GeneSpace, SearchSpace


class FlopsConditionedSampler(Sampler):
    """Samples an architecture for a FLOPs target: drawn from the prior, or fixed.

    ``ask(n)`` returns n archs; ``last_targets`` and ``last_trials`` tell which bucket
    each came from and how many rejection trials it took (the attentive samplers reuse
    ``sample_in_buckets`` to draw k candidates in one bucket).
    """

    name = "flops-uniform"

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = 0,
        target_mflops: float | None = None,
        prior: FlopsPrior | None = None,
        prior_samples: int = 1_000_000,
        step: float | None = None,
    ) -> None:
        super().__init__(space, seed)
        if not isinstance(space, GeneSpace):
            raise UserError(f"space '{space.name}' does not support FLOPs-conditioned sampling")
        self.prior = prior or FlopsPrior.for_space(space, m=prior_samples, step=step)
        self.target_bucket = None if target_mflops is None else self.prior.target_bucket(target_mflops)
        self.total_samples = 0
        self.total_trials = 0
        self.last_targets = np.zeros(0, dtype=np.int64)
        self.last_trials = np.zeros(0, dtype=np.int64)

    def sample_in_buckets(self, buckets: np.ndarray) -> list[Arch]:
        """One arch per requested bucket index (of ``self.prior``)."""
        idx, trials = self.prior.sample(self.space, self.rng, np.asarray(buckets))
        self.last_targets, self.last_trials = np.asarray(buckets), trials
        self.total_samples += len(trials)
        self.total_trials += int(trials.sum())
        return [self.space.arch_from_indices(row) for row in idx]

    def ask(self, n: int = 1) -> list[Arch]:
        if self.target_bucket is None:
            buckets = self.prior.sample_buckets(self.rng, n)
        else:
            buckets = np.full(n, self.target_bucket)
        return self.sample_in_buckets(buckets)

    def mean_trials(self) -> float | None:
        return self.total_trials / self.total_samples if self.total_samples else None

    def stats(self) -> dict[str, float]:
        return {"mean_trials": self.mean_trials() or 0.0, "samples": float(self.total_samples)}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(total_samples=self.total_samples, total_trials=self.total_trials)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.total_samples = int(state.get("total_samples", 0))
        self.total_trials = int(state.get("total_trials", 0))
