"""VAENAS one-shot (Algorithm 2): supernet training samples from a uniform/VAE mixture.

Each training step draws its middle sub-networks from
Γ(α) = (1 − ε)·U(α) + ε·p_θ(α|z); step i (1-based) uses ε_i = min((i − 1)·ε_inc, ε_max)
(ε = 0 at the start, ε += ε_inc after every step, capped). After every ``n_vae``-th step
the trainer scores ``n_s`` architectures drawn from Γ (``wants_scores``: BN-calibrated
top-1 on the search-validation split) and tells them; ``tell`` is Algorithm 1 on the VAE
(``VAESampler.tell``). ``samplenas search --seed-from vae`` later seeds the evolution with
samples of the trained VAE (``vae_seeds``).

Gradient-based (Algorithm 3, ``samplenas fpnas --sampling vae``): the VAE draws FP-NAS's
K architectures of each step, Γ(α) = p_θ(α|z); the N_s scored every ``n_vae`` steps are
uniform (``VAEProbabilisticSampler``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samplenas.errors import UserError
from samplenas.samplers.base import Sampler
from samplenas.samplers.probabilistic import ProbabilisticSampler
from samplenas.samplers.vae import VAESampler
from samplenas.space import Arch, SearchSpace

# ε reaches 1 after 1,000 steps; the VAE retrains every 100 steps on 20 scored archs
EPS_INC, EPS_MAX, N_VAE, N_S = 1e-3, 1.0, 100, 20
ADAPTIVE = "as:0.25"  # FP-NAS's default K rule, also under ``sampling: vae``
SEED_ROUNDS = 20  # batches of VAE samples ``vae_seeds`` draws looking for distinct ones


class VAEFeedback:
    """Algorithms 2 and 3 alike: after every ``n_vae``-th training step the trainer scores
    ``n_s`` architectures (``feedback_draw``: from Γ in one-shot, uniform in FP-NAS) and
    ``tell`` trains the VAE on them (Algorithm 1). A mixin of a ``Sampler``."""

    space: SearchSpace
    rng: np.random.Generator

    def setup_feedback(
        self,
        n_vae: int,
        n_s: int,
        score_calib_batches: int,
        score_val_images: int | None,
        vae: dict[str, Any],
    ) -> None:
        if n_vae < 1 or n_s < 1 or score_calib_batches < 1:
            raise ValueError("n_vae, n_s and score_calib_batches must be at least 1")
        self.n_vae, self.n_s = n_vae, n_s
        self.score_budget = (score_calib_batches, score_val_images)
        self.vae = VAESampler(self.space, seed=int(self.rng.integers(2**31)), **vae)
        self.told: list[list[Any]] = []  # [step, [[arch json, score] ...]] per VAE training
        self._wanted_at = 0

    def feedback_draw(self, n: int) -> list[Arch]:
        raise NotImplementedError

    def wants_scores(self, step: int) -> list[Arch]:
        """After every ``n_vae``-th training step: N_s archs to score and tell."""
        if step % self.n_vae:
            return []
        self._wanted_at = step
        return self.feedback_draw(self.n_s)

    def tell(self, archs: Sequence[Arch], scores: Sequence[float]) -> None:
        """Algorithm 1 on the VAE (rank, keep the top K %, train warm-started)."""
        self.vae.tell(archs, scores)
        pairs = [[a.to_json(), float(s)] for a, s in zip(archs, scores, strict=True)]
        self.told.append([self._wanted_at, pairs])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "told": self.told, "vae": self.vae.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.told = list(state["told"])
        self.vae.load_state_dict(state["vae"])


class VAEOneShotSampler(VAEFeedback, Sampler):
    """Γ(α) for supernet training; learns from the scores the trainer measures."""

    name = "vae"

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = 0,
        eps_inc: float = EPS_INC,
        eps_max: float = EPS_MAX,
        n_vae: int = N_VAE,
        n_s: int = N_S,
        score_calib_batches: int = 2,
        score_val_images: int | None = 500,
        **vae: Any,
    ) -> None:
        super().__init__(space, seed)
        if eps_inc < 0 or not 0 <= eps_max <= 1:
            raise ValueError("eps_inc must be >= 0 and eps_max in [0, 1]")
        self.eps_inc, self.eps_max = eps_inc, eps_max
        self.setup_feedback(n_vae, n_s, score_calib_batches, score_val_images, vae)
        self.steps = 0  # training steps drawn so far (``ask`` calls)
        self.from_vae = 0  # training slots the VAE filled, of ``drawn``
        self.drawn = 0
        self.last_from_vae: list[bool] = []
        self.last_eps = 0.0

    @property
    def eps(self) -> float:
        """ε of the next step: min(steps so far × ε_inc, ε_max)."""
        return min(self.steps * self.eps_inc, self.eps_max)

    def feedback_draw(self, n: int) -> list[Arch]:
        """n archs from Γ at the current ε (the uniform ones fill what the VAE cannot)."""
        use_vae = self.rng.random(n) < self.eps
        vae = self.vae.ask(int(use_vae.sum())) if use_vae.any() else []
        use_vae[np.flatnonzero(use_vae)[len(vae) :]] = False  # a VAE that lost the space
        it = iter(vae)
        self.last_from_vae, self.last_eps = [bool(v) for v in use_vae], self.eps
        return [next(it) if v else self.space.sample(self.rng) for v in use_vae]

    def ask(self, n: int = 1) -> list[Arch]:
        """One training step's n sub-networks from Γ; ε then grows by ε_inc."""
        out = self.feedback_draw(n)
        self.from_vae += sum(self.last_from_vae)
        self.drawn += n
        self.steps += 1
        return out

    # -- protocol ---------------------------------------------------------------------------
    def last_decision(self) -> dict[str, Any]:
        return {"eps": self.last_eps, "from_vae": self.last_from_vae}

    def stats(self) -> dict[str, float]:
        return {
            "eps": self.eps,
            "vae_fraction": self.from_vae / max(self.drawn, 1),
            **self.vae.stats(),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "steps": self.steps,
            "from_vae": self.from_vae,
            "drawn": self.drawn,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.steps, self.drawn = int(state["steps"]), int(state["drawn"])
        self.from_vae = int(state["from_vae"])


def trained_vae(path: Path, space: SearchSpace, sampler: Any, state: str | None) -> VAESampler:
    """The VAE of the run at ``path`` (its recipe's ``sampler`` section, with ``name`` and
    ``options``, and the checkpoint's sampler ``state``); UserError when the run did not
    train with ``vae``."""
    if sampler.name != VAEOneShotSampler.name or state is None:
        raise UserError(
            f"run '{path}' trained with sampler '{sampler.name}', not 'vae', so it has no "
            "VAE to seed from; train with --sampler vae or drop --seed-from vae"
        )
    built = VAEOneShotSampler(space, seed=0, **dict(sampler.options or {}))
    built.load_state_dict(json.loads(state))
    return built.vae


def vae_seeds(
    vae: VAESampler, n: int, seed: int, accept: Callable[[Arch], bool] | None = None
) -> list[Arch]:
    """Up to n distinct VAE samples passing ``accept``, drawn with the search's ``seed``
    (the same on every rank, whatever the checkpoint's generator state was)."""
    vae.generator.manual_seed(seed)
    out: list[Arch] = []
    for _ in range(SEED_ROUNDS):  # a VAE that learned a narrow region repeats itself
        fresh = [a for a in vae.ask(n - len(out), accept=accept) if a not in out]
        out += list(dict.fromkeys(fresh))[: n - len(out)]
        if len(out) >= n:
            break
    return out


class VAEProbabilisticSampler(VAEFeedback, ProbabilisticSampler):
    """VAENAS gradient-based (Algorithm 3) on FP-NAS: the step's K architectures come from
    the VAE, p_θ(α|z), instead of P(A|alpha); alpha still learns from their importance
    weights and gives the result (its most probable architecture). After every
    ``n_vae``-th step N_s uniform architectures are scored and told to the VAE."""

    name = "vae-fpnas"

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = 0,
        n_vae: int = N_VAE,
        n_s: int = N_S,
        score_calib_batches: int = 2,
        score_val_images: int | None = 500,
        vae: dict[str, Any] | None = None,
        **fpnas: Any,
    ) -> None:
        super().__init__(space, seed, **fpnas)
        self.setup_feedback(n_vae, n_s, score_calib_batches, score_val_images, dict(vae or {}))
        self.fallbacks = 0  # archs P(A|alpha) drew because the VAE found no valid one

    def ask(self, n: int | None = None) -> list[Arch]:
        n = self.sample_size() if n is None else n
        out = self.vae.ask(n)
        self.fallbacks += n - len(out)
        out += self.dist.sample(self.rng, n - len(out))
        self._last = {"k": n, "entropy": round(self.entropy(), 6), "kind": self.kind, "vae": True}
        return out

    def feedback_draw(self, n: int) -> list[Arch]:
        return self.space.sample_many(self.rng, n)  # U(α), Algorithm 3 line 6

    def stats(self) -> dict[str, float]:
        return {**super().stats(), **self.vae.stats(), "vae_fallbacks": float(self.fallbacks)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "fallbacks": self.fallbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.fallbacks = int(state["fallbacks"])


def split_vae_sampling(text: str) -> tuple[bool, str]:
    """FP-NAS's ``sampling``: ``vae`` (K by the adaptive rule as:0.25) or ``vae:K`` (a
    fixed K) -> (True, that K rule); anything else -> (False, the text as given)."""
    head, _, rest = str(text).partition(":")
    if head != "vae":
        return False, str(text)
    if rest and not (rest.isdigit() and int(rest) >= 1):
        raise UserError(f"sampling '{text}' is not vae or vae:K (a positive integer, e.g. vae:4)")
    return True, f"fs:{rest}" if rest else ADAPTIVE
