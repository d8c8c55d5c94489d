"""Query-budgeted search strategies for tabular benchmarks, as ask/tell samplers.

All three see only what ``tell`` gives them (validation accuracy of what they asked for):
random search without replacement, regularized evolution (Real et al.; the NAS-Bench-101
paper's baseline) and the Neural Predictor (Wen et al.): N random queries, fit a
predictor, rank every unseen architecture, query the top K in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from samplenas.samplers.base import Sampler
from samplenas.search.pareto import pareto_front, pareto_ranks
from samplenas.search.soft_pareto import soft_pareto
from samplenas.space import Arch, SearchSpace


class RandomSearch(Sampler):
    """Uniform over the architectures not asked for yet."""

    name = "random"

    def __init__(
        self, space: SearchSpace, seed: int | None = 0, candidates: Sequence[Arch] | None = None
    ) -> None:
        super().__init__(space, seed)
        self.candidates = list(candidates) if candidates is not None else None
        self.seen: set[Arch] = set()
        if self.candidates is not None:
            self._order = self.rng.permutation(len(self.candidates))
            self._pos = 0

    def ask(self, n: int = 1) -> list[Arch]:
        """Up to n architectures; fewer (none) once every one has been asked for."""
        if self.candidates is None:
            left = self.space.size() - len(self.seen)
            return self.space.sample_distinct(self.rng, min(n, left), self.seen)
        out: list[Arch] = []
        while len(out) < n and self._pos < len(self._order):
            arch = self.candidates[self._order[self._pos]]
            self._pos += 1
            if arch not in self.seen:
                self.seen.add(arch)
                out.append(arch)
        return out


class RegularizedEvolution(Sampler):
    """Aging evolution: tournament of ``sample_size`` from a FIFO population, mutate the
    winner, add the child, drop the oldest member.

    With a ``cost`` (latency, params: known without a query), the tournament winner is
    drawn from the sample's Pareto front of (cost, score) instead of the top score, so the
    population spreads along the trade-off rather than collapsing onto the largest models.
    """

    name = "re"

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = 0,
        population: int = 50,
        sample_size: int = 10,
        mutate_prob: float | None = None,
        candidates: Sequence[Arch] | None = None,
        cost: Callable[[Arch], float] | None = None,
    ) -> None:
        super().__init__(space, seed)
        self.population_size, self.sample_size = population, sample_size
        self.mutate_prob, self.cost = mutate_prob, cost
        self.population: deque[tuple[Arch, float]] = deque()
        # a table covering part of a space: children must stay among its architectures
        self.allowed = set(candidates) if candidates is not None else None
        self.init = RandomSearch(space, seed=int(self.rng.integers(2**31)), candidates=candidates)

    def _mutate(self, parent: Arch) -> Arch:
        genes = max(len(self.space.encode(parent)), 1)
        prob = self.mutate_prob or 1.0 / genes
        for _ in range(100):
            child = self.space.mutate(parent, prob, self.rng)
            if child != parent and (self.allowed is None or child in self.allowed):
                return child
        fallback = self.init.ask(1)  # no allowed neighbour: a fresh random architecture
        return fallback[0] if fallback else parent

    def ask(self, n: int = 1) -> list[Arch]:
        out = []
        for _ in range(n):
            if len(self.population) + len(out) < self.population_size:
                out += self.init.ask(1)
                continue
            members = list(self.population)
            pick = self.rng.choice(
                len(members), size=min(self.sample_size, len(members)), replace=False
            )
            out.append(self._mutate(self._winner([members[i] for i in pick])))
        return out

    def _winner(self, sample: list[tuple[Arch, float]]) -> Arch:
        if self.cost is None:
            return max(sample, key=lambda m: m[1])[0]
        front = pareto_front([self.cost(a) for a, _ in sample], [s for _, s in sample])
        return sample[int(self.rng.choice(front))][0]

    def tell(self, archs: Sequence[Arch], scores: Sequence[float]) -> None:
        for a, s in zip(archs, scores, strict=True):
            self.population.append((a, float(s)))
            if len(self.population) > self.population_size:
                self.population.popleft()


class NeuralPredictorSearch(Sampler):
    """Wen et al.: train on N random queries, then query the top-K predicted, best first.

    With a ``cost`` (multi-objective search, section 4.2) the K queries are the
    soft-Pareto set of (cost, predicted accuracy) with window J, predicted front first
    (non-dominated sorting of the predictions); when the budget outlasts that set, the
    soft-Pareto set of the remaining candidates follows, and so on.
    """

    name = "npred"

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = 0,
        n_train: int = 50,
        predictor_factory: Callable[[int], Any] | None = None,
        candidates: Sequence[Arch] | None = None,
        pool: int = 100_000,
        cost: Callable[[Arch], float] | None = None,
        soft_pareto_j: int = 6,
    ) -> None:
        super().__init__(space, seed)
        self.n_train = n_train
        self.cost, self.soft_pareto_j = cost, soft_pareto_j
        self.predictor_factory = predictor_factory or _default_gcn(space)
        self.random = RandomSearch(space, seed=int(self.rng.integers(2**31)), candidates=candidates)
        self.candidates = list(candidates) if candidates is not None else None
        self.pool = pool
        self.train_archs: list[Arch] = []
        self.train_scores: list[float] = []
        self.ranked: list[Arch] | None = None
        self.asked: set[Arch] = set()

    def _rank(self) -> None:
        predictor = self.predictor_factory(int(self.rng.integers(2**31)))
        predictor.fit(self.train_archs, self.train_scores)
        cands = self.candidates
        if cands is None:  # a large sample of the space when it cannot be enumerated
            cands = list(dict.fromkeys(self.space.sample_many(self.rng, self.pool)))
        cands = [a for a in cands if a not in self.asked]
        pred = np.asarray(predictor.predict(cands), dtype=float)
        self.predictor = predictor
        if self.cost is None:
            order = np.argsort(-pred, kind="stable")
            self.ranked = [cands[i] for i in order]
            return
        self._cands, self._pred = cands, pred
        self._cost = np.array([self.cost(a) for a in cands], dtype=float)
        self._left = np.ones(len(cands), dtype=bool)
        self.ranked = []

    def _next_soft_pareto_layer(self) -> list[Arch]:
        """The soft-Pareto set of the candidates not queued yet, predicted front first."""
        left = np.flatnonzero(self._left)
        if not len(left):
            return []
        chosen = left[soft_pareto(self._cost[left], self._pred[left], self.soft_pareto_j)]
        ranks = pareto_ranks(self._cost[chosen], self._pred[chosen])
        chosen = chosen[np.lexsort((self._cost[chosen], ranks))]
        self._left[chosen] = False
        return [self._cands[i] for i in chosen]

    def ask(self, n: int = 1) -> list[Arch]:
        out: list[Arch] = []
        while len(out) < n:
            if len(self.asked) < self.n_train:
                take = min(n - len(out), self.n_train - len(self.asked))
                batch = self.random.ask(take)
            else:
                if len(self.train_scores) < self.n_train:
                    break  # waiting for the training queries' scores
                if self.ranked is None:
                    self._rank()
                if not self.ranked and self.cost is not None:
                    self.ranked = self._next_soft_pareto_layer()
                batch = self.ranked[: n - len(out)]
                self.ranked = self.ranked[len(batch) :]
            if not batch:
                break
            self.asked.update(batch)
            out += batch
        return out

    def tell(self, archs: Sequence[Arch], scores: Sequence[float]) -> None:
        for a, s in zip(archs, scores, strict=True):
            if len(self.train_archs) < self.n_train:
                self.train_archs.append(a)
                self.train_scores.append(float(s))


def _default_gcn(space: SearchSpace) -> Callable[[int], Any]:
    def make(seed: int):
        from samplenas.predictors.gcn import GCNPredictor

        return GCNPredictor(space, seed=seed)

    return make


class IterativePredictorSearch(Sampler):
    """BANANAS-style (White et al.) search by iterative refits: ``n_init`` random queries,
    then rounds of ``batch``: refit the predictor on every score seen so far, rank the
    unseen candidates by an acquisition, query the top ``batch``.

    The acquisition is the predicted mean (``"mean"``, greedy) or, with
    ``acquisition="its"`` and a predictor exposing ``predict_members`` (an ensemble),
    BANANAS's independent Thompson sampling: each candidate's score is one draw from a
    normal with the members' mean and spread. Greedy is the default: with the GCN's
    cross-validation members as the ensemble, ITS explores far too much on NAS-Bench-201
    (BENCHMARKS.md). The reference for the Neural Predictor's single fit: the same
    predictor refit ``(budget - n_init) / batch`` times.
    """

    name = "bananas"

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = 0,
        n_init: int = 10,
        batch: int = 10,
        predictor_factory: Callable[[int], Any] | None = None,
        candidates: Sequence[Arch] | None = None,
        pool: int = 100_000,
        acquisition: str = "mean",
    ) -> None:
        super().__init__(space, seed)
        if acquisition not in ("mean", "its"):
            raise ValueError(f"acquisition is 'mean' or 'its', not {acquisition!r}")
        self.n_init, self.batch, self.pool = n_init, batch, pool
        self.acquisition = acquisition
        self.predictor_factory = predictor_factory or _default_gcn(space)
        self.random = RandomSearch(space, seed=int(self.rng.integers(2**31)), candidates=candidates)
        self.candidates = list(candidates) if candidates is not None else None
        self.archs: list[Arch] = []
        self.scores: list[float] = []
        self.asked: set[Arch] = set()
        self.queue: list[Arch] = []

    def _refit(self) -> list[Arch]:
        predictor = self.predictor_factory(int(self.rng.integers(2**31)))
        predictor.fit(self.archs, self.scores)
        cands = self.candidates
        if cands is None:
            cands = list(dict.fromkeys(self.space.sample_many(self.rng, self.pool)))
        cands = [a for a in cands if a not in self.asked]
        if self.acquisition == "its" and hasattr(predictor, "predict_members"):
            members = np.asarray(predictor.predict_members(cands), dtype=float)
            mean, spread = members.mean(0), members.std(0)
            acquisition = mean + spread * self.rng.standard_normal(len(cands))
        else:
            acquisition = np.asarray(predictor.predict(cands), dtype=float)
        order = np.argsort(-acquisition, kind="stable")[: self.batch]
        return [cands[i] for i in order]

    def ask(self, n: int = 1) -> list[Arch]:
        out: list[Arch] = []
        while len(out) < n:
            if len(self.asked) < self.n_init:
                batch = self.random.ask(min(n - len(out), self.n_init - len(self.asked)))
            else:
                if len(self.scores) < len(self.asked):
                    break  # the last round's scores must arrive before a refit
                if not self.queue:
                    self.queue = self._refit()
                batch, self.queue = self.queue[: n - len(out)], self.queue[n - len(out) :]
            if not batch:
                break
            self.asked.update(batch)
            out += batch
        return out

    def tell(self, archs: Sequence[Arch], scores: Sequence[float]) -> None:
        self.archs += list(archs)
        self.scores += [float(s) for s in scores]
