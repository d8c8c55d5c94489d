"""FLOPs prior π(τ) and conditional tables π̂(o_i | τ) (AttentiveNAS, section 4.2).

Built once per space from m uniform samples, cached on disk as a plain ``.npz`` (no
pickles) and reused. Two refinements over the paper, both still exact in what they
accept:

* Extreme buckets that uniform sampling never reaches (the smallest sub-network lives
  in one) get covered by extra samples from exponentially tilted proposals, combined
  with the uniform ones by multiple importance sampling (balance heuristic) so every
  estimate stays unbiased for the uniform distribution.
* The tables can additionally be conditioned on one dominant gene (by default the input
  resolution, which scales every layer's cost): π̂(r | τ) · Π π̂(o_i | τ, r). This halves
  the rejection trials compared with the fully factorised proposal.

Rejection sampling then draws candidates from the proposal and keeps the first whose
FLOPs round to the requested bucket, so every accepted sample is in its bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samplenas.errors import UserError
from samplenas.io import DAMAGED_FILE_ERRORS, atomic_write
from samplenas.space.base import GeneSpace
from samplenas.space.cost import CostModel, FlopsCost

FORMAT_VERSION = 2
TILTS = (-8.0, -4.0, -2.0, 2.0, 4.0, 8.0)
TARGETS = ("prior", "uniform")  # how FLOPs targets τ are drawn (see target_probs)


def cache_dir() -> Path:
    root = os.environ.get("SAMPLENAS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "samplenas"
    )
    return Path(root) / "flops_prior"


def default_step(space: GeneSpace, cost: CostModel | None = None) -> float:
    """The space's declared FLOPs step, else one giving about 70 buckets over the cost's
    range (a latency cost always takes the latter: the declared step is in MFLOPs)."""
    cost = cost or FlopsCost(space)
    declared = getattr(getattr(space, "config", None), "flops_step", None)
    if declared and isinstance(cost, FlopsCost) and cost.name == "mflops":
        return float(declared)
    lo, hi = cost.bounds()
    raw = (hi - lo) / 70.0
    return float(f"{raw:.2g}")


def _tilted_logits(n_choices: np.ndarray, beta: float) -> list[np.ndarray]:
    """Per-gene log-probabilities that favour low (beta < 0) or high (beta > 0) indices."""
    out = []
    for n in n_choices:
        pos = np.arange(n) / max(n - 1, 1) - 0.5
        logit = beta * pos
        out.append(logit - np.logaddexp.reduce(logit))
    return out


def _space_key(
    space: GeneSpace, m: int, step: float, seed: int, cond: str | None, cost: CostModel
) -> str:
    probe = space.sample_indices(np.random.default_rng(12345), 256)
    mflops, params = space.cost_indices(probe)
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT_VERSION, space.name, m, step, seed, cond]).encode())
    h.update(json.dumps([(g.label, list(g.choices)) for g in space.genes]).encode())
    h.update(np.round(mflops, 6).tobytes() + np.round(params, 6).tobytes())
    if not _is_flops(cost):  # FLOPs priors keep the key they always had
        h.update(cost.key().encode() + np.round(cost.values(probe), 9).tobytes())
    return h.hexdigest()[:20]


def _is_flops(cost: CostModel) -> bool:
    return type(cost) is FlopsCost


@dataclass
class FlopsPrior:
    """π(τ) over FLOPs buckets and the proposal tables for sampling α | τ."""

    step: float
    first_bucket: int  # bucket number of index 0: bucket b holds FLOPs in [(b-.5)t, (b+.5)t)
    prior: np.ndarray  # [B] π(τ), sums to 1
    cond_probs: np.ndarray  # [B, R] π̂(o_cond | τ); R = 1 when unconditioned
    tables: np.ndarray  # [B, R, G, C] π̂(o_i | τ, o_cond), zero-padded to C choices
    cond_gene: int  # gene index conditioned on, -1 for none
    n_samples: int
    min_mflops: float  # the cost's range, in its unit (MFLOPs unless ``cost`` says)
    max_mflops: float
    cost: CostModel | None = None  # what the buckets are of (None: FLOPs); not saved

    @property
    def unit(self) -> str:
        return self.cost.unit if self.cost is not None else "MFLOPs"

    def values(self, space: GeneSpace, idx: np.ndarray) -> np.ndarray:
        """The bucketed cost of each index row."""
        return space.cost_indices(idx)[0] if self.cost is None else self.cost.values(idx)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def build(
        cls,
        space: GeneSpace,
        m: int = 1_000_000,
        step: float | None = None,
        seed: int = 0,
        condition_on: str | None = "resolution",
        chunk: int = 250_000,
        cost: CostModel | None = None,
    ) -> FlopsPrior:
        cost = cost or FlopsCost(space)
        step = float(step or default_step(space, cost))
        rng = np.random.default_rng(seed)
        G = len(space.genes)
        n_choices = space.n_choices
        C = int(n_choices.max())
        cond_gene = -1
        if condition_on:
            labels = [g.label for g in space.genes]
            if condition_on in labels and n_choices[labels.index(condition_on)] > 1:
                cond_gene = labels.index(condition_on)
        R = int(n_choices[cond_gene]) if cond_gene >= 0 else 1
        lo, hi = cost.bounds()
        first = int(np.round(lo / step))
        B = int(np.round(hi / step)) - first + 1

        # Proposals: uniform (m samples) plus tilted ones (m/2 in all), mixed by MIS.
        log_uniform = -np.log(n_choices.astype(float))
        tilts = [_tilted_logits(n_choices, b) for b in TILTS]
        n_tilt = max(m // (2 * len(TILTS)), 1000)
        counts = [m] + [n_tilt] * len(TILTS)
        total = float(sum(counts))

        def log_q(idx: np.ndarray, logits: list[np.ndarray]) -> np.ndarray:
            return sum(logits[j][idx[:, j]] for j in range(G))

        log_p_const = float(log_uniform.sum())
        w_prior = np.zeros(B)
        w_tab = np.zeros(B * R * G * C)
        gene_offsets = (np.arange(G) * C)[None, :]

        for source, n in enumerate(counts):
            done = 0
            while done < n:
                k = min(chunk, n - done)
                if source == 0:
                    idx = space.sample_indices(rng, k)
                else:
                    logits = tilts[source - 1]
                    idx = np.stack(
                        [rng.choice(len(lg), size=k, p=np.exp(lg)) for lg in logits], axis=1
                    )
                # balance-heuristic weight p(α) / Σ_k (n_k/N) q_k(α)
                mix = np.log(counts[0] / total) + np.full(k, log_p_const)
                mix = np.stack(
                    [mix]
                    + [
                        np.log(counts[t + 1] / total) + log_q(idx, tilts[t])
                        for t in range(len(TILTS))
                    ]
                )
                w = np.exp(log_p_const - np.logaddexp.reduce(mix, axis=0))
                mflops = cost.values(idx)
                b = np.clip(np.round(mflops / step).astype(np.int64) - first, 0, B - 1)
                w_prior += np.bincount(b, weights=w, minlength=B)
                r = idx[:, cond_gene] if cond_gene >= 0 else np.zeros(k, dtype=np.int64)
                flat = ((b * R + r) * G * C)[:, None] + gene_offsets + idx
                w_tab += np.bincount(flat.ravel(), weights=np.repeat(w, G), minlength=w_tab.size)
                done += k

        w_tab = w_tab.reshape(B, R, G, C)
        prior = w_prior / w_prior.sum()
        w_cond = w_tab[:, :, 0, :].sum(axis=2)  # [B, R]: weight per (bucket, cond value)
        cond_probs = w_cond / np.maximum(w_cond.sum(axis=1, keepdims=True), 1e-300)
        tables = w_tab / np.maximum(w_cond[:, :, None, None], 1e-300)
        kept = None if _is_flops(cost) else cost
        return cls(step, first, prior, cond_probs, tables, cond_gene, int(total), lo, hi, kept)

    # -- persistence ------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write atomically as a pickle-free .npz."""
        meta = np.array(
            [
                self.step,
                self.first_bucket,
                self.cond_gene,
                self.n_samples,
                self.min_mflops,
                self.max_mflops,
            ]
        )
        atomic_write(
            path,
            lambda f: np.savez_compressed(
                f, meta=meta, prior=self.prior, cond_probs=self.cond_probs, tables=self.tables
            ),
        )

    @classmethod
    def load(cls, path: Path) -> FlopsPrior:
        with np.load(path, allow_pickle=False) as z:
            step, first, cond, n, lo, hi = z["meta"].tolist()
            return cls(
                step,
                int(first),
                z["prior"],
                z["cond_probs"],
                z["tables"],
                int(cond),
                int(n),
                lo,
                hi,
            )

    @classmethod
    def for_space(
        cls,
        space: GeneSpace,
        m: int = 1_000_000,
        step: float | None = None,
        seed: int = 0,
        condition_on: str | None = "resolution",
        cache: Path | None = None,
        cost: CostModel | None = None,
    ) -> FlopsPrior:
        """Load the cached tables for this space, cost and settings, building them once."""
        cost = cost or FlopsCost(space)
        step = float(step or default_step(space, cost))
        key = _space_key(space, m, step, seed, condition_on, cost)
        name = space.name if _is_flops(cost) else f"{space.name}-{cost.name}"
        path = (cache or cache_dir()) / f"{name}-{key}.npz"
        if path.is_file():
            try:
                prior = cls.load(path)
                prior.cost = None if _is_flops(cost) else cost
                return prior
            except DAMAGED_FILE_ERRORS:
                pass  # a damaged cache file is rebuilt below
        prior = cls.build(space, m=m, step=step, seed=seed, condition_on=condition_on, cost=cost)
        prior.save(path)
        return prior

    # -- buckets ------------------------------------------------------------------------
    @property
    def n_buckets(self) -> int:
        return len(self.prior)

    def bucket_of(self, mflops: np.ndarray | float) -> np.ndarray:
        return np.round(np.asarray(mflops) / self.step).astype(np.int64) - self.first_bucket

    def bucket_mflops(self, bucket: int | np.ndarray) -> np.ndarray:
        return (np.asarray(bucket) + self.first_bucket) * self.step

    def target_bucket(self, mflops: float) -> int:
        """The bucket of a requested FLOPs target, or UserError when outside the space."""
        b = int(self.bucket_of(mflops))
        lo_t, hi_t = (
            self.bucket_mflops(0) - self.step / 2,
            self.bucket_mflops(self.n_buckets - 1) + self.step / 2,
        )
        if not (
            self.min_mflops - self.step / 2 <= mflops <= self.max_mflops + self.step / 2
        ) or not (0 <= b < self.n_buckets):
            u = self.unit
            raise UserError(
                f"target {mflops:g} {u} is outside this space's range "
                f"{self.min_mflops:.1f}-{self.max_mflops:.1f} {u} (buckets {lo_t:g}-{hi_t:g})"
            )
        if self.prior[b] <= 0 and self.tables[b].sum() == 0:
            raise UserError(f"no architecture of this space has about {mflops:g} {self.unit}")
        return b

    def target_probs(self, targets: str = "prior") -> np.ndarray:
        """How FLOPs targets τ are drawn: ``prior`` is π(τ); ``uniform`` weighs every
        reachable bucket alike (AttentiveNAS's ``flops_uniform``), so the rare smallest
        and largest sub-networks are drawn as often as the common middle ones.
        """
        if targets == "prior":
            return self.prior
        if targets == "uniform":
            reachable = (self.prior > 0).astype(float)
            return reachable / reachable.sum()
        raise ValueError(f"targets must be one of {TARGETS}, not {targets!r}")  # callers check

    def sample_buckets(
        self, rng: np.random.Generator, n: int, probs: np.ndarray | None = None
    ) -> np.ndarray:
        """n targets τ ~ π(τ), or ~ ``probs`` (one of ``target_probs``)."""
        return rng.choice(self.n_buckets, size=n, p=self.prior if probs is None else probs)

    # -- conditional sampling -----------------------------------------------------------
    def propose(self, rng: np.random.Generator, buckets: np.ndarray, k: int) -> np.ndarray:
        """k candidates per bucket from π̂(α | τ): index rows of shape [len(buckets), k, G]."""
        n = len(buckets)
        G = self.tables.shape[2]
        if self.cond_gene >= 0:
            ccdf = np.cumsum(self.cond_probs[buckets], axis=1)  # [n, R]
            r = (rng.random((n, k, 1)) > ccdf[:, None, :-1]).sum(axis=2)  # [n, k]
        else:
            r = np.zeros((n, k), dtype=np.int64)
        cdf = np.cumsum(self.tables[buckets[:, None], r], axis=3)  # [n, k, G, C]
        u = rng.random((n, k, G, 1)) * cdf[..., -1:]
        idx = (u > cdf[..., :-1]).sum(axis=3)
        if self.cond_gene >= 0:
            idx[..., self.cond_gene] = r
        return idx

    def sample(
        self,
        space: GeneSpace,
        rng: np.random.Generator,
        buckets: np.ndarray,
        chunk: int = 8,
        max_trials: int = 1_000_000,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One index row per requested bucket by rejection from π̂(α | τ), and its trial count."""
        buckets = np.asarray(buckets, dtype=np.int64)
        n, G = len(buckets), len(space.genes)
        out = np.zeros((n, G), dtype=np.int64)
        trials = np.zeros(n, dtype=np.int64)
        todo = np.arange(n)
        while todo.size:
            cand = self.propose(rng, buckets[todo], chunk)  # [t, chunk, G]
            mflops = self.values(space, cand.reshape(-1, G))
            hit = self.bucket_of(mflops).reshape(len(todo), chunk) == buckets[todo, None]
            found = hit.any(axis=1)
            first = hit.argmax(axis=1)
            trials[todo] += np.where(found, first + 1, chunk)
            out[todo[found]] = cand[found, first[found]]
            todo = todo[~found]
            if todo.size and trials[todo].max() > max_trials:
                b = int(buckets[todo[0]])
                raise UserError(
                    f"no architecture found near {float(self.bucket_mflops(b)):g} {self.unit} "
                    f"after {max_trials} trials; choose another target"
                )
        return out, trials
