"""VAENAS on tabular benchmarks (section 5.3), budget-fair: every query counts.

``VAESearch``: ``n_init`` random queries, a VAE trained (Algorithm 1) on their top
``ranking_ratio``, then VAE samples never queried before, the VAE retrained on everything
seen every ``retrain_every`` queries. ``VAERegularizedEvolution``: regularized evolution
whose initial population after the same random warm-up is drawn from that VAE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from samplenas.samplers.base import Sampler
from samplenas.samplers.vae import VAESampler
from samplenas.search.strategies import RandomSearch, RegularizedEvolution
from samplenas.space import Arch, SearchSpace

# chosen on nas-bench-201:cifar10-valid, best expected accuracy at 100 queries of
# n_init 10/30 x retrain_every 20/50 (benchmarks/vae_study.py, part "tune")
N_INIT = 30
RETRAIN_EVERY = 20


class VAESearch(Sampler):
    """Random warm-up, then distinct VAE samples with periodic retraining on all seen."""

    name = "vae"

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = 0,
        candidates: Sequence[Arch] | None = None,
        n_init: int = N_INIT,
        retrain_every: int = RETRAIN_EVERY,
        **vae: Any,
    ) -> None:
        super().__init__(space, seed)
        if n_init < 1 or retrain_every < 1:
            raise ValueError("n_init and retrain_every must be at least 1")
        self.n_init, self.retrain_every = n_init, retrain_every
        self.random = RandomSearch(space, seed=int(self.rng.integers(2**31)), candidates=candidates)
        self.vae = VAESampler(space, seed=int(self.rng.integers(2**31)), **vae)
        self.allowed = set(candidates) if candidates is not None else None
        self.archs: list[Arch] = []
        self.scores: list[float] = []
        self.trained_at = 0  # how many scores the VAE was last trained on
        self.from_vae = 0
        self.fallbacks = 0

    def _fresh(self, arch: Arch) -> bool:
        return arch not in self.random.seen and (self.allowed is None or arch in self.allowed)

    def ask(self, n: int = 1) -> list[Arch]:
        if len(self.random.seen) < self.n_init:
            return self.random.ask(min(n, self.n_init - len(self.random.seen)))
        if len(self.scores) < len(self.random.seen):
            return []  # the warm-up's scores must arrive first
        if self.trained_at == 0 or len(self.scores) - self.trained_at >= self.retrain_every:
            self.vae.tell(self.archs, self.scores)
            self.trained_at = len(self.scores)
        out: list[Arch] = []
        for arch in self.vae.ask(n, accept=self._fresh):
            if self._fresh(arch):  # a batch may hold the same new arch twice
                self.random.seen.add(arch)
                out.append(arch)
        self.from_vae += len(out)
        if len(out) < n:  # the VAE keeps proposing what was seen: a random new one
            extra = self.random.ask(n - len(out))
            self.fallbacks += len(extra)
            out += extra
        return out

    def tell(self, archs: Sequence[Arch], scores: Sequence[float]) -> None:
        self.archs += list(archs)
        self.scores += [float(s) for s in scores]

    def stats(self) -> dict[str, float]:
        asked = self.from_vae + self.fallbacks
        if not asked:  # the budget ended within the random warm-up
            return self.vae.stats()
        return {**self.vae.stats(), "vae_fallback_rate": self.fallbacks / asked}


class VAERegularizedEvolution(RegularizedEvolution):
    """Regularized evolution whose initial population comes from ``VAESearch`` (random
    warm-up, then VAE samples); the same VAE supplies a child when no mutation is new."""

    name = "vae-re"

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = 0,
        candidates: Sequence[Arch] | None = None,
        n_init: int = N_INIT,
        population: int = 50,
        **vae: Any,
    ) -> None:
        super().__init__(space, seed, population=population, candidates=candidates)
        self.init = VAESearch(
            space,
            seed=int(self.rng.integers(2**31)),
            candidates=candidates,
            n_init=n_init,
            retrain_every=population,  # trained once, on the warm-up
            **vae,
        )

    def tell(self, archs: Sequence[Arch], scores: Sequence[float]) -> None:
        super().tell(archs, scores)
        self.init.tell(archs, scores)

    def stats(self) -> dict[str, float]:
        return self.init.stats()
