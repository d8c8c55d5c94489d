"""FP-NAS: a learned distribution P(A|alpha) over architectures, sampled through ask/tell.

``ArchDistribution`` is a product of independent categorical factors parameterised by
logits alpha. Factorized (Eqn. 5): one factor per variable (gene); joint (Eqn. 6): one
factor per variable group over the product of its genes' choices. Both are products of
factors, so sampling, log P(A), the exact entropy and the mode are one piece of code.
``to_joint`` converts factorized into joint with the joint logits equal to the sum of
the factors' log-probabilities, so probabilities, entropy and log P(A) are unchanged at
the switch (the coarse-to-fine schedule, section 3.3).

``ProbabilisticSampler`` wraps it as a Sampler: ``ask()`` draws K = max(1, round(lambda
* H)) architectures (adaptive sampling) or a fixed K, ``importance`` gives Algorithm 1's
weights m^omega and m^alpha (with the hinge cost of Eqn. 6), ``update`` takes one Adam
step on sum_k m^alpha_k * -log P(A_k|alpha). The FP-NAS trainer and the benchmark
harness use the same object.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from samplenas.errors import UserError
from samplenas.samplers.base import Sampler
from samplenas.space import Arch, SearchSpace
from samplenas.space.base import GeneSpace

KINDS = ("factorized", "joint")
CostFn = Callable[[Arch], float]
Costs = Mapping[str, tuple[CostFn, float]]  # name -> (cost of an arch, its target)


def parse_sampling(text: str) -> tuple[str, float]:
    """``as:LAMBDA`` (K = max(1, round(LAMBDA * H))) or ``fs:K`` (a fixed K)."""
    mode, _, value = str(text).partition(":")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    ok = (mode == "as" and number > 0 and math.isfinite(number)) or (
        mode == "fs" and number >= 1 and number == int(number)
    )
    if not ok:
        raise UserError(
            f"sampling '{text}' is not as:LAMBDA (a positive number, e.g. as:0.25) "
            "or fs:K (a positive integer, e.g. fs:8)"
        )
    return mode, number


def parse_distribution(text: str) -> tuple[str, int | None]:
    """``factorized``, ``joint`` or ``mixed:THETA`` -> (initial kind, switch epoch or None)."""
    text = str(text)
    if text in KINDS:
        return text, None
    head, _, value = text.partition(":")
    if head == "mixed" and value.isdigit() and int(value) >= 1:
        return "factorized", int(value)
    raise UserError(
        f"distribution '{text}' is not factorized, joint or mixed:THETA (THETA: the epoch "
        "after which the factorized distribution becomes joint, e.g. mixed:10)"
    )


def adaptive_k(entropy: float, lam: float) -> int:
    """Eqn. 4 with at least one sample: K = max(1, round(lambda * H)), halves rounded up."""
    return max(1, int(math.floor(lam * entropy + 0.5)))


class ArchDistribution:
    """P(A|alpha) over a GeneSpace: a product of categorical factors (see module doc)."""

    def __init__(
        self,
        space: GeneSpace,
        kind: str = "factorized",
        groups: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.space = space
        self.groups = [list(g) for g in (groups if groups is not None else space.variable_groups())]
        covered = sorted(j for g in self.groups for j in g)
        if covered != list(range(len(space.genes))):
            raise ValueError(f"variable groups {self.groups} must partition the space's genes")
        self.kind = kind
        self.factors = (
            [[j] for g in self.groups for j in g] if kind == "factorized" else self.groups
        )
        self.shapes = [tuple(int(space.n_choices[j]) for j in f) for f in self.factors]
        # alpha = 0: the uniform distribution (Algorithm 1's initialisation)
        self.logits = [
            torch.zeros(math.prod(s), dtype=torch.float64, requires_grad=True) for s in self.shapes
        ]

    def num_parameters(self) -> int:
        return sum(int(t.numel()) for t in self.logits)

    def probs(self) -> list[np.ndarray]:
        """Each factor's probabilities (flattened over its genes' choices)."""
        return [torch.softmax(t.detach(), 0).numpy() for t in self.logits]

    def sample_indices(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n index rows [n, genes], each factor drawn by inverting its CDF with ``rng``."""
        out = np.empty((n, len(self.space.genes)), dtype=np.int64)
        for factor, shape, p in zip(self.factors, self.shapes, self.probs(), strict=True):
            flat = np.searchsorted(np.cumsum(p), rng.random(n) * p.sum(), side="right")
            flat = np.minimum(flat, len(p) - 1)
            out[:, factor] = np.stack(np.unravel_index(flat, shape), axis=1)
        return out

    def sample(self, rng: np.random.Generator, n: int) -> list[Arch]:
        return [self.space.arch_from_indices(row) for row in self.sample_indices(rng, n)]

    def log_prob_indices(self, idx: np.ndarray) -> torch.Tensor:
        """log P(A|alpha) of each index row: differentiable in the logits."""
        idx = np.atleast_2d(idx)
        total = torch.zeros(len(idx), dtype=torch.float64)
        for factor, shape, logit in zip(self.factors, self.shapes, self.logits, strict=True):
            flat = np.ravel_multi_index(tuple(idx[:, factor].T), shape)
            total = total + torch.log_softmax(logit, 0)[torch.as_tensor(flat)]
        return total

    def log_prob(self, archs: Sequence[Arch]) -> torch.Tensor:
        return self.log_prob_indices(np.stack([self.space.indices_of(a) for a in archs]))

    def entropy(self) -> float:
        """Exact entropy in nats: the factors are independent, so it is their sum."""
        total = 0.0
        for logit in self.logits:
            logp = torch.log_softmax(logit.detach(), 0)
            total += float(-(logp.exp() * logp).sum())
        return total

    def most_probable_indices(self) -> np.ndarray:
        """The mode: with independent factors, every factor's own mode."""
        out = np.empty(len(self.space.genes), dtype=np.int64)
        for factor, shape, logit in zip(self.factors, self.shapes, self.logits, strict=True):
            out[factor] = np.unravel_index(int(torch.argmax(logit.detach())), shape)
        return out

    def most_probable(self) -> Arch:
        return self.space.arch_from_indices(self.most_probable_indices())

    def to_joint(self) -> ArchDistribution:
        """The same distribution as one joint factor per group (a no-op when joint).

        A group's joint logits are the outer sum of its factors' log-probabilities, whose
        softmax is exactly their product: P(A), log P(A) and H do not change.
        """
        if self.kind == "joint":
            return self
        joint = ArchDistribution(self.space, "joint", self.groups)
        logp = {
            f[0]: torch.log_softmax(t.detach(), 0)
            for f, t in zip(self.factors, self.logits, strict=True)
        }
        with torch.no_grad():
            for group, target in zip(joint.groups, joint.logits, strict=True):
                total = torch.zeros((), dtype=torch.float64)
                for axis, j in enumerate(group):
                    shape = [1] * len(group)
                    shape[axis] = -1
                    total = total + logp[j].reshape(shape)
                target.copy_(total.reshape(-1))
        return joint

    def state_dict(self) -> dict[str, Any]:
        """JSON-able: float64 lists round-trip exactly through JSON."""
        return {
            "kind": self.kind,
            "groups": self.groups,
            "logits": [t.tolist() for t in self.logits],
        }

    @classmethod
    def from_state(cls, space: GeneSpace, state: Mapping[str, Any]) -> ArchDistribution:
        dist = cls(space, state["kind"], state["groups"])
        with torch.no_grad():
            for t, values in zip(dist.logits, state["logits"], strict=True):
                t.copy_(torch.tensor(values, dtype=torch.float64))
        return dist


def hinge_cost(arch: Arch, costs: Costs) -> float:
    """Eqn. 6's C(A) = max(0, cost(A) / TAR - 1), summed over the given costs."""
    return sum(max(0.0, fn(arch) / target - 1.0) for fn, target in costs.values())


def importance_weights(
    logliks: Sequence[float], hinges: Sequence[float], beta: float, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1's (m^omega, m^alpha) from each sample's validation log-likelihood.

    m^omega_k = P_k / sum P_k' with P_k = exp(loglik_k / temperature), computed as a
    softmax in log space (the likelihoods of a whole batch underflow); temperature 1 is
    the paper's. m^alpha_k = m^omega_k - beta * C_k / sum C_k'; when no sample exceeds its
    target the cost term is 0 (the ratio is 0/0 there and the hinge has no gradient).
    """
    z = np.asarray(logliks, dtype=np.float64) / temperature
    m_omega = np.exp(z - z.max())
    m_omega /= m_omega.sum()
    c = np.asarray(hinges, dtype=np.float64)
    m_alpha = m_omega - beta * c / c.sum() if c.sum() > 0 else m_omega.copy()
    return m_omega, m_alpha


def _adam_state(opt: torch.optim.Adam) -> dict[str, Any]:
    """Adam's per-logit moments and step count as JSON-able lists."""
    return {
        str(i): {k: (v.tolist() if torch.is_tensor(v) else v) for k, v in s.items()}
        for i, s in opt.state_dict()["state"].items()
    }


def _load_adam_state(opt: torch.optim.Adam, state: Mapping[str, Any]) -> None:
    def tensor(key: str, value: Any) -> torch.Tensor:  # step: a float32 scalar, as Adam keeps
        return torch.tensor(value, dtype=torch.float32 if key == "step" else torch.float64)

    restored = {int(i): {k: tensor(k, v) for k, v in s.items()} for i, s in state.items()}
    opt.load_state_dict({"state": restored, "param_groups": opt.state_dict()["param_groups"]})


class ProbabilisticSampler(Sampler):
    """FP-NAS's sampler: draws from P(A|alpha) and learns alpha from the samples' scores.

    ``tell(archs, scores)`` treats scores as log-likelihoods (higher is better). Importance
    weights compare the samples of one step, so ``tell`` collects results until it holds
    the step's K (``sample_size`` when the first arrived), then forms the weights and
    takes one Adam step on alpha: a loop of ``ask(1)``/``tell`` (the benchmark harness)
    learns as a loop of ``ask()``/``tell`` does. The trainer calls the two halves itself
    (``importance``, then ``update`` after warm-up).
    """

    name = "probabilistic"

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = 0,
        distribution: str = "factorized",
        sampling: str = "as:0.25",
        lr: float = 0.016,
        beta: float = 0.3,
        temperature: float = 1.0,
        target_mflops: float | None = None,
        costs: Costs | None = None,
    ) -> None:
        super().__init__(space, seed)
        if not isinstance(space, GeneSpace):
            raise UserError(f"space '{space.name}' is not a product of choices; FP-NAS needs one")
        kind, self.switch_epoch = parse_distribution(distribution)
        self.sampling = parse_sampling(sampling)
        if not (lr > 0 and beta >= 0 and temperature > 0):
            raise UserError(
                f"FP-NAS needs lr > 0, beta >= 0 and temperature > 0 (got lr={lr}, "
                f"beta={beta}, temperature={temperature})"
            )
        self.lr, self.beta, self.temperature = float(lr), float(beta), float(temperature)
        self.costs: dict[str, tuple[CostFn, float]] = dict(costs or {})
        if target_mflops is not None:
            self.costs["mflops"] = (space.mflops, float(target_mflops))
        self._set_distribution(ArchDistribution(space, kind))
        self._last: dict[str, Any] = {}
        self._pending: list[tuple[Arch, float]] = []  # told results of the step under way
        self._pending_k = 0  # that step's K

    def _set_distribution(self, dist: ArchDistribution) -> None:
        self.dist = dist
        self.optimizer = torch.optim.Adam(dist.logits, lr=self.lr)  # constant learning rate

    @property
    def kind(self) -> str:
        return self.dist.kind

    def entropy(self) -> float:
        return self.dist.entropy()

    def sample_size(self) -> int:
        """K of the next step: lambda * H (adaptive) or the fixed K."""
        mode, value = self.sampling
        return adaptive_k(self.entropy(), value) if mode == "as" else int(value)

    def ask(self, n: int | None = None) -> list[Arch]:
        n = self.sample_size() if n is None else n
        self._last = {"k": n, "entropy": round(self.entropy(), 6), "kind": self.kind}
        return self.dist.sample(self.rng, n)

    def most_probable(self) -> Arch:
        return self.dist.most_probable()

    def hinge(self, arch: Arch) -> float:
        return hinge_cost(arch, self.costs)

    def importance(
        self, archs: Sequence[Arch], logliks: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        hinges = [self.hinge(a) for a in archs]
        return importance_weights(logliks, hinges, self.beta, self.temperature)

    def update(self, archs: Sequence[Arch], m_alpha: Sequence[float]) -> None:
        """One Adam step on sum_k m^alpha_k * -log P(A_k|alpha)."""
        self.optimizer.zero_grad(set_to_none=True)
        weights = torch.as_tensor(np.asarray(m_alpha, dtype=np.float64))
        loss = -(weights * self.dist.log_prob(archs)).sum()
        loss.backward()
        self.optimizer.step()

    def tell(self, archs: Sequence[Arch], scores: Sequence[float]) -> None:
        if not self._pending:
            self._pending_k = self.sample_size()
        self._pending += [(a, float(s)) for a, s in zip(archs, scores, strict=True)]
        if len(self._pending) >= self._pending_k:
            told, logliks = [a for a, _ in self._pending], [s for _, s in self._pending]
            self._pending = []
            self.update(told, self.importance(told, logliks)[1])

    def to_joint(self) -> None:
        """Switch to the joint distribution (a fresh Adam for the new logits)."""
        if self.kind != "joint":
            self._set_distribution(self.dist.to_joint())

    def end_epoch(self, epoch: int) -> bool:
        """After epoch ``epoch`` (1-based): switch when the schedule says; True if it did."""
        if self.switch_epoch is not None and epoch == self.switch_epoch and self.kind != "joint":
            self.to_joint()
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "distribution": self.dist.state_dict(),
            "adam": _adam_state(self.optimizer),
            "pending": [[a.to_json(), s] for a, s in self._pending],
            "pending_k": self._pending_k,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._set_distribution(ArchDistribution.from_state(self.dist.space, state["distribution"]))
        _load_adam_state(self.optimizer, state["adam"])
        self._pending = [(self.space.validate(a), float(s)) for a, s in state["pending"]]
        self._pending_k = int(state["pending_k"])

    def stats(self) -> dict[str, float]:
        return {"entropy": self.entropy(), "k": float(self._last.get("k", 0))}

    def last_decision(self) -> dict[str, Any]:
        return dict(self._last)
