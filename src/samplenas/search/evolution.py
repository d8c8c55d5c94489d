"""Evolutionary search (AttentiveNAS stage 2, after OFA) as an ask/tell sampler.

Generation 0 is P random architectures inside the FLOPs bounds; each later generation is
M mutations (each gene moves to a different value with probability ``mutate_prob``) and C
uniform crossovers of parents, where the parents are the best architecture found so far
in each FLOPs bucket — a per-bucket Pareto set, so the whole accuracy/FLOPs front keeps
evolving rather than only its best point. Paper: P = 512, M = C = 128, 20 iterations.

The cost bounded and bucketed is a ``CostModel``: FLOPs by default, or a latency table's
prediction (``samplenas search --latency T --max-latency-ms X``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from samplenas.errors import UserError
from samplenas.samplers.base import Sampler
from samplenas.samplers.flops_conditioned import FlopsConditionedSampler
from samplenas.search.pareto import best_per_bucket
from samplenas.space import Arch, GeneSpace, MBConvSpace
from samplenas.space.cost import CostModel, FlopsCost


class EvolutionSampler(Sampler):
    """``ask()`` returns the next generation to evaluate; ``tell`` records fitness."""

    name = "evolution"

    def __init__(
        self,
        space: GeneSpace,
        seed: int | None = 0,
        population: int = 512,
        mutations: int = 128,
        crossovers: int = 128,
        iterations: int = 20,
        mutate_prob: float = 0.2,
        mflops_range: tuple[float, float] | None = None,
        bucket_step: float | None = None,
        max_tries: int = 1000,
        cost: CostModel | None = None,
        cost_range: tuple[float, float] | None = None,
        seeds: Sequence[Arch] = (),
    ) -> None:
        super().__init__(space, seed)
        self.cost = cost or FlopsCost(space)
        lo, hi = self.cost.bounds()
        self.lo, self.hi = cost_range or mflops_range or (lo, hi)
        flag = "--mflops-range" if self.cost.name == "mflops" else f"the {self.cost.label} range"
        if self.lo > self.hi:
            raise UserError(f"{flag} {self.lo:g} {self.hi:g}: the lower bound comes first")
        if self.hi < lo or self.lo > hi:
            raise UserError(
                f"{flag} {self.lo:g} {self.hi:g} does not meet the space's range "
                f"{lo:.2f}-{hi:.2f} {self.cost.unit}"
            )
        self.population, self.mutations, self.crossovers = population, mutations, crossovers
        self.iterations, self.mutate_prob, self.max_tries = iterations, mutate_prob, max_tries
        self.step = bucket_step or max((self.hi - self.lo) / 25.0, 1e-9)
        self.generation = 0
        self.seen: set[Arch] = set()
        self.fitness: dict[Arch, float] = {}
        self.costs: dict[Arch, float] = {}
        self.seeds = list(seeds)
        self.seeded = 0  # of ``seeds``, how many generation 0 holds

    @property
    def mflops(self) -> dict[Arch, float]:
        """The told archs' costs (MFLOPs unless ``cost`` says otherwise); the old name."""
        return self.costs

    # -- helpers ------------------------------------------------------------------------
    def _in_bounds(self, arch: Arch) -> bool:
        return self.lo <= self.cost(arch) <= self.hi

    def _fresh(self, make) -> Arch | None:
        for _ in range(self.max_tries):
            arch = make()
            if arch not in self.seen and self._in_bounds(arch):
                self.seen.add(arch)
                return arch
        return None

    def _initial_population(self) -> list[Arch]:
        """P archs: the space's smallest and largest (when within the bounds), the given
        ``seeds`` (VAENAS: samples of the trained VAE) within the bounds, then archs from
        FLOPs buckets drawn evenly over the bounds, so that the first front covers the
        whole range (FLOPs-conditioned sampling where the space has it). The sandwich rule
        trains both extremes at every step, so a front without them can sit below what
        the supernet holds at either end."""
        out: list[Arch] = []
        extremes = [self.space.smallest(), self.space.largest()]
        for i, arch in enumerate([*extremes, *self.seeds]):
            if len(out) < self.population and arch not in self.seen and self._in_bounds(arch):
                self.seen.add(arch)
                out.append(arch)
                self.seeded += i >= len(extremes)
        conditional, buckets = None, np.zeros(0, dtype=np.int64)
        if isinstance(self.space, MBConvSpace):
            conditional = FlopsConditionedSampler(
                self.space, seed=int(self.rng.integers(2**31)), cost=self.cost
            )
            prior = conditional.prior
            mids = prior.bucket_mflops(np.arange(prior.n_buckets))
            buckets = np.flatnonzero(
                (prior.prior > 0)
                & (mids >= self.lo - prior.step / 2)
                & (mids <= self.hi + prior.step / 2)
            )
        misses = 0  # a bucket whose every arch is taken (an extreme's, say): draw another
        while len(out) < self.population and misses < self.population:
            if conditional is not None and len(buckets):
                bucket = int(buckets[self.rng.integers(len(buckets))])

                def make(bucket: int = bucket) -> Arch:
                    return conditional.sample_in_buckets(np.array([bucket]))[0]
            else:

                def make() -> Arch:
                    return self.space.sample(self.rng)

            a = self._fresh(make)
            if a is None:
                misses += 1
            else:
                out.append(a)
        return out

    def parents(self) -> list[Arch]:
        """The best architecture of every FLOPs bucket evaluated so far."""
        archs = list(self.fitness)
        if not archs:
            return []
        buckets = [int(self.costs[a] // self.step) for a in archs]
        best = best_per_bucket(buckets, [self.fitness[a] for a in archs])
        return [archs[i] for i in sorted(best.values(), key=lambda i: self.costs[archs[i]])]

    def done(self) -> bool:
        return self.generation > self.iterations

    # -- Sampler ------------------------------------------------------------------------
    def ask(self, n: int | None = None) -> list[Arch]:
        """The next generation (``n`` caps its size); [] once all iterations are done."""
        if self.done():
            return []
        out: list[Arch] = []
        if self.generation == 0:
            out = self._initial_population()
        else:
            parents = self.parents()
            if not parents:
                raise RuntimeError("evolution needs fitness for the previous generation (tell)")
            for _ in range(self.mutations):
                a = self._fresh(
                    lambda: self.space.mutate(
                        parents[self.rng.integers(len(parents))], self.mutate_prob, self.rng
                    )
                )
                if a is not None:
                    out.append(a)
            for _ in range(self.crossovers):

                def cross() -> Arch:
                    i, j = self.rng.integers(len(parents), size=2)
                    return self.space.crossover(parents[i], parents[j], self.rng)

                a = self._fresh(cross)
                if a is not None:
                    out.append(a)
        self.generation += 1
        return out[:n] if n else out

    def tell(self, archs: Sequence[Arch], scores: Sequence[float]) -> None:
        for a, s in zip(archs, scores, strict=True):
            self.seen.add(a)
            self.fitness[a] = float(s)
            self.costs[a] = self.cost(a)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            generation=self.generation,
            seen=[a.to_json() for a in self.seen],
            fitness=[[a.to_json(), s] for a, s in self.fitness.items()],
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.generation = int(state["generation"])
        self.seen = {Arch(a) for a in state["seen"]}
        self.fitness, self.costs = {}, {}
        for a, s in state["fitness"]:
            self.tell([Arch(a)], [s])
