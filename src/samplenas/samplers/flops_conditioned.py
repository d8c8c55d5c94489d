"""FLOPs-conditioned sampling (AttentiveNAS eq. 5): draw a FLOPs target τ, then α ~ π(α | τ).

``flops-prior`` draws τ ~ π(τ), the space's own FLOPs distribution: with α uniform within
the bucket that is the uniform distribution over architectures, and it exists so that
several candidates can share one bucket (BestUp / WorstUp). ``flops-uniform`` draws τ
uniformly over the reachable buckets (AttentiveNAS's ``flops_uniform``), which trains the
rare small and large sub-networks far more often than uniform sampling does.

Two ways to draw α | τ, both accepting only archs whose FLOPs round to τ:
``"exact"`` (default for MobileNet-style spaces) counts architectures per cost by dynamic
programming and is exactly uniform on the bucket at ~1.1 trials; ``"factorized"`` is the
paper's rejection from Π π̂(o_i | τ) tables (works for any GeneSpace with a cost model).

The cost conditioned on is a ``CostModel`` (``samplenas.space.cost``), FLOPs by default:
``latency_table: lat.json`` (a recipe's ``sampler.options``) conditions on the table's
predicted latency instead — targets in ms (``target_ms``), buckets over the table's range,
the exact sampler running on the table's per-block sums.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from samplenas.errors import UserError
from samplenas.samplers.base import Sampler
from samplenas.samplers.flops_exact import ExactBucketSampler
from samplenas.samplers.flops_prior import TARGETS, FlopsPrior
from samplenas.space import Arch, GeneSpace, MBConvSpace, SearchSpace
from samplenas.space.cost import CostModel, FlopsCost, make_cost

METHODS = ("exact", "factorized")


class FlopsConditionedSampler(Sampler):
    """Samples an architecture for a FLOPs target: drawn (``targets``: prior or uniform), or fixed.

    ``ask(n)`` returns n archs; ``last_targets`` and ``last_trials`` tell which bucket
    each came from and how many rejection trials it took (the attentive samplers reuse
    ``sample_targets`` and ``sample_in_buckets`` to draw k candidates in one bucket).
    """

    name = "flops-prior"

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = 0,
        target_mflops: float | None = None,
        prior: FlopsPrior | None = None,
        prior_samples: int = 1_000_000,
        step: float | None = None,
        method: str | None = None,
        targets: str = "prior",
        cost: CostModel | None = None,
        latency_table: Any = None,
        target_ms: float | None = None,
    ) -> None:
        super().__init__(space, seed)
        if targets not in TARGETS:
            raise UserError(f"FLOPs targets must be one of {TARGETS}, not '{targets}'")
        self.targets = targets
        self.name = f"flops-{targets}"
        if not isinstance(space, GeneSpace):
            raise UserError(f"space '{space.name}' does not support FLOPs-conditioned sampling")
        self.cost = _cost(space, cost, latency_table, target_mflops, target_ms)
        target = target_ms if latency_table is not None else target_mflops
        self.prior = prior or FlopsPrior.for_space(
            space, m=prior_samples, step=step, cost=self.cost
        )
        self.target_probs = self.prior.target_probs(targets)
        method = method or ("exact" if isinstance(space, MBConvSpace) else "factorized")
        if method not in METHODS:
            raise UserError(f"unknown conditional sampling method '{method}'; use one of {METHODS}")
        if method == "exact" and not isinstance(space, MBConvSpace):
            raise UserError(
                f"exact FLOPs-conditioned sampling needs a MobileNet-style space, "
                f"not '{space.name}'"
            )
        self.method = method
        self.exact = (
            ExactBucketSampler(
                space,
                self.prior.step,
                self.prior.first_bucket,
                self.prior.n_buckets,
                cost=self.cost,
            )
            if method == "exact"
            else None
        )
        self.target_bucket = None if target is None else self.prior.target_bucket(target)
        self.total_samples = 0
        self.total_trials = 0
        self.last_targets = np.zeros(0, dtype=np.int64)
        self.last_trials = np.zeros(0, dtype=np.int64)

    def sample_in_buckets(self, buckets: np.ndarray) -> list[Arch]:
        """One arch per requested bucket index (of ``self.prior``)."""
        buckets = np.asarray(buckets, dtype=np.int64)
        if self.exact is not None:
            idx, trials = self.exact.sample(self.rng, buckets)
        else:
            idx, trials = self.prior.sample(self.space, self.rng, buckets)
        self.last_targets, self.last_trials = np.asarray(buckets), trials
        self.total_samples += len(trials)
        self.total_trials += int(trials.sum())
        return [self.space.arch_from_indices(row) for row in idx]

    def sample_targets(self, n: int) -> np.ndarray:
        """n bucket indices: the fixed target's, or drawn as ``targets`` says."""
        if self.target_bucket is not None:
            return np.full(n, self.target_bucket)
        return self.prior.sample_buckets(self.rng, n, self.target_probs)

    def ask(self, n: int = 1) -> list[Arch]:
        return self.sample_in_buckets(self.sample_targets(n))

    def last_decision(self) -> dict[str, Any]:
        """The cost target (bucket centre, in the cost's unit) each arch was drawn for."""
        targets = self.prior.bucket_mflops(self.last_targets)
        return {f"target_{self.cost.name}": [round(float(t), 4) for t in targets]}

    def mean_trials(self) -> float | None:
        return self.total_trials / self.total_samples if self.total_samples else None

    def stats(self) -> dict[str, float]:
        return {"mean_trials": self.mean_trials() or 0.0, "samples": float(self.total_samples)}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            total_samples=self.total_samples,
            total_trials=self.total_trials,
            targets=self.targets,
            cost=self.cost.name,
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.load_counters(state)

    def load_counters(self, state: dict[str, Any]) -> None:
        """Counters of a checkpoint, refusing one that drew its FLOPs targets otherwise.

        Checkpoints from before ``targets`` was recorded all drew τ from the prior: the
        sampler then called ``flops-uniform`` is today's ``flops-prior``.
        """
        saved = state.get("targets", "prior")
        if saved != self.targets:
            raise UserError(
                f"the checkpoint's sampler drew FLOPs targets from the {saved} distribution, "
                f"this one from the {self.targets} one (runs made before 'flops-prior' "
                f"existed called it 'flops-uniform'); resume with the sampler the run was "
                f"trained with, or start a new run"
            )
        cost = state.get("cost", "mflops")
        if cost != self.cost.name:
            raise UserError(
                f"the checkpoint's sampler conditioned on {cost}, this one on {self.cost.name}; "
                "resume with the recipe's sampler options unchanged, or start a new run"
            )
        self.total_samples = int(state.get("total_samples", 0))
        self.total_trials = int(state.get("total_trials", 0))


def _cost(
    space: SearchSpace,
    cost: CostModel | None,
    latency_table: Any,
    target_mflops: float | None,
    target_ms: float | None,
) -> CostModel:
    """The cost to condition on: given, a latency table's, or FLOPs; targets in its unit."""
    if latency_table is None:
        if target_ms is not None:
            raise UserError(
                "a latency target (sampler option 'target_ms', --target-ms) needs a latency "
                "table (sampler option 'latency_table', --latency)"
            )
        return cost or FlopsCost(space)
    if target_mflops is not None or cost is not None:
        raise UserError(
            "sampler option 'latency_table' conditions on latency: give its target as "
            "'target_ms', not 'target_mflops' (and no other cost)"
        )
    return make_cost(space, "latency", latency_table)
