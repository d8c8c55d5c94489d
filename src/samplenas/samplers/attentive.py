"""Attentive sampling (AttentiveNAS, Algorithm 1): BestUp-k / WorstUp-k.

For every attentive slot: draw a cost target τ ~ π(τ) (FLOPs, or a latency table's
prediction with the option ``latency_table``; ``targets: uniform``: uniform over the
buckets instead), draw k candidates from π(α | τ), score them, and keep the best
(BestUp) or the worst (WorstUp). Scores come from an estimator the caller binds:

* ``loss``: the negative loss of each candidate on the current minibatch, without
  gradients — the trainer binds a closure over its batch with ``set_scorer``; under
  torchrun the losses are averaged across ranks first, so every rank picks the same
  sub-network. Option ``loss``: ``train`` (default, the paper's) is the loss the step
  trains a sampled sub-network with — distillation from the largest's detached
  predictions under in-place distillation; ``ce`` is plain cross-entropy on the labels;
* ``acc``: a fitted accuracy predictor's prediction (no extra forward passes).

``bestup-1M-acc`` / ``worstup-1M-acc`` predict 10^6 random architectures once and then
sample only from the predicted best (worst) Pareto set of each FLOPs bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from samplenas.errors import UserError
from samplenas.samplers.base import Sampler
from samplenas.samplers.flops_conditioned import FlopsConditionedSampler
from samplenas.space import Arch, GeneSpace

Scorer = Callable[[Sequence[Arch]], np.ndarray]  # higher is better
LOSSES = ("train", "ce")  # the loss estimator's choices (see the module docstring)


class AttentiveSampler(Sampler):
    """BestUp-k / WorstUp-k over FLOPs-conditioned candidates."""

    def __init__(
        self,
        space: GeneSpace,
        seed: int | None = 0,
        k: int = 3,
        mode: str = "best",
        estimator: str = "loss",
        predictor: Any = None,
        loss: str = "train",
        **flops_options: Any,
    ) -> None:
        super().__init__(space, seed)
        if loss not in LOSSES:
            raise UserError(f"sampler option 'loss' must be one of {LOSSES}, not {loss!r}")
        if mode not in ("best", "worst"):
            raise UserError(f"attentive mode must be best or worst, not '{mode}'")
        if estimator not in ("loss", "acc"):
            raise UserError(f"attentive estimator must be loss or acc, not '{estimator}'")
        if k < 1:
            raise UserError("attentive sampling needs k >= 1 candidates")
        if estimator == "acc" and predictor is None:
            raise UserError(
                f"{mode}up-{k}-acc needs an accuracy predictor: fit one with "
                f"'samplenas predictor fit' and pass sampler.options.predictor=PATH"
            )
        self.k, self.mode, self.estimator, self.loss = k, mode, estimator, loss
        self.name = f"{mode}up-{k}-{estimator}"
        self.predictor = predictor
        self.conditional = FlopsConditionedSampler(space, seed=None, **flops_options)
        self.conditional.rng = self.rng  # one seeded stream for the whole sampler
        self.scorer: Scorer | None = None
        self.candidates_scored = 0
        self.last_candidates: list[list[Arch]] = []
        self.last_scores: list[np.ndarray] = []

    def set_scorer(self, scorer: Scorer | None) -> None:
        """Bind the estimator for the next ``ask`` (the trainer's minibatch loss closure)."""
        self.scorer = scorer

    @property
    def needs_scorer(self) -> bool:
        return self.estimator == "loss"

    def score(self, archs: Sequence[Arch]) -> np.ndarray:
        if self.estimator == "acc":
            return np.asarray(self.predictor.predict(list(archs)), dtype=float)
        if self.scorer is None:
            raise RuntimeError(f"{self.name} needs a scorer bound with set_scorer before ask")
        return np.asarray(self.scorer(archs), dtype=float)

    def choose(self, scores: np.ndarray) -> int:
        return int(np.argmax(scores) if self.mode == "best" else np.argmin(scores))

    def ask(self, n: int = 1) -> list[Arch]:
        out: list[Arch] = []
        self.last_candidates, self.last_scores = [], []
        for tau in self.conditional.sample_targets(n):
            cands = self.conditional.sample_in_buckets(np.full(self.k, tau))
            scores = self.score(cands)
            out.append(cands[self.choose(scores)])
            self.last_candidates.append(cands)
            self.last_scores.append(scores)
            self.candidates_scored += len(cands)
        return out

    def last_decision(self) -> dict[str, Any]:
        """Per slot: every candidate's cost (MFLOPs, or the conditioning cost's) and score
        (higher = kept by BestUp)."""
        cost = self.conditional.cost
        return {
            f"candidate_{cost.name}": [
                [round(cost(a), 3) for a in cands] for cands in self.last_candidates
            ],
            "candidate_scores": [[round(float(v), 5) for v in sc] for sc in self.last_scores],
            "picked": [self.choose(sc) for sc in self.last_scores],
        }

    def stats(self) -> dict[str, float]:
        extra = self.candidates_scored if self.estimator == "loss" else 0
        return {
            "candidates_scored": float(self.candidates_scored),
            "extra_forward_passes": float(extra),
            "mean_trials": self.conditional.mean_trials() or 0.0,
        }

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["candidates_scored"] = self.candidates_scored
        state["conditional"] = self.conditional.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.candidates_scored = int(state.get("candidates_scored", 0))
        self.conditional.load_counters(dict(state.get("conditional", {})))


class ParetoPoolSampler(Sampler):
    """``bestup-1M-acc`` / ``worstup-1M-acc``: sample from a predicted Pareto pool.

    Predicts ``pool_size`` random architectures once, keeps the predicted best (or worst)
    ``per_bucket`` of each FLOPs bucket, then draws τ ~ π(τ) (or uniformly, ``targets:
    uniform``) and an arch of that bucket's pool.
    """

    def __init__(
        self,
        space: GeneSpace,
        seed: int | None = 0,
        mode: str = "best",
        predictor: Any = None,
        pool_size: int = 1_000_000,
        per_bucket: int = 8,
        chunk: int = 100_000,
        **flops_options: Any,
    ) -> None:
        super().__init__(space, seed)
        if predictor is None:
            raise UserError(
                f"{mode}up-1M-acc needs an accuracy predictor: fit one with "
                f"'samplenas predictor fit' and pass sampler.options.predictor=PATH"
            )
        self.mode = mode
        self.name = f"{mode}up-1M-acc"
        self.conditional = FlopsConditionedSampler(space, seed=None, **flops_options)
        prior = self.conditional.prior
        best: dict[int, list[tuple[float, np.ndarray]]] = {}
        sign = 1.0 if mode == "best" else -1.0
        pool_rng = np.random.default_rng(seed)
        for start in range(0, pool_size, chunk):
            idx = space.sample_indices(pool_rng, min(chunk, pool_size - start))
            if hasattr(predictor, "predict_indices"):  # no Arch objects for a million rows
                raw = predictor.predict_indices(idx)
            else:
                raw = predictor.predict([space.arch_from_indices(r) for r in idx])
            pred = sign * np.asarray(raw, dtype=float)
            buckets = prior.bucket_of(self.conditional.cost.values(idx))
            for b in np.unique(buckets):
                rows = np.flatnonzero(buckets == b)
                top = rows[np.argsort(-pred[rows])[:per_bucket]]
                merged = best.get(int(b), []) + [(pred[i], idx[i]) for i in top]
                merged.sort(key=lambda t: -t[0])
                best[int(b)] = merged[:per_bucket]
        self.pool = {b: [space.arch_from_indices(r) for _, r in rows] for b, rows in best.items()}
        buckets = np.array(sorted(self.pool))
        weights = self.conditional.target_probs[buckets]
        self.buckets = buckets
        self.weights = weights / weights.sum() if weights.sum() > 0 else None

    def ask(self, n: int = 1) -> list[Arch]:
        out = []
        for b in self.rng.choice(self.buckets, size=n, p=self.weights):
            members = self.pool[int(b)]
            out.append(members[self.rng.integers(len(members))])
        return out
