"""Exact uniform sampling of an architecture with FLOPs in a bucket, by dynamic programming.

AttentiveNAS samples α | τ by rejection from a factorised proposal (about 12 trials per
sample, and the accepted archs are biased towards the table's typical genes). For a
MobileNet-style space the cost is a sum along a chain — stem(r, w0) + Σ stage_s(r, w_{s-1},
w_s, d_s, k_s, e_s) + head(r, w_S, w_head) — so the number of architectures at every cost
can be counted exactly with a forward pass over the stages, on a fine grid of cost bins.
Sampling backwards through those counts draws every architecture of the (slightly
widened) bucket with equal probability; a final check on the exact cost rejects the few
near the bucket's edges. The result is exactly uniform on the bucket, at ~1 trial.

Any cost with such a chain decomposition works the same (``CostModel.chain``): FLOPs,
params, or a latency table (a sum of measured blocks). A component that can be negative
(a latency correction's offset) is shifted to start at zero bins, and the shift is added
back where bins turn into costs.
"""

from __future__ import annotations

import numpy as np

from samplenas.errors import UserError
from samplenas.space.cost import CostModel, FlopsCost
from samplenas.space.mbconv import MBConvSpace


class ExactBucketSampler:
    """Counts of architectures per fine cost bin, per resolution, and backward sampling."""

    def __init__(
        self,
        space: MBConvSpace,
        step: float,
        first_bucket: int,
        n_buckets: int,
        bins_per_step: int = 256,
        cost: CostModel | None = None,
    ) -> None:
        self.space = space
        self.cost = cost or FlopsCost(space)
        chain = self.cost.chain()
        if chain is None:
            raise UserError(
                f"the {self.cost.label} cost of '{space.name}' is not a sum over stages"
            )
        self.step = step
        self.first_bucket = first_bucket
        self.n_buckets = n_buckets
        self.delta = step / bins_per_step
        S = space.n_stages
        self.slack = S + 2  # |total rounding error| <= (S + 2) / 2 bins
        R = len(space.config.resolution)
        parts = [chain.stem, *chain.stages, chain.head]
        shifts = [min(float(t.min()), 0.0) for t in parts]  # FLOPs: all zero
        self.origin = float(sum(shifts))  # the cost of bin 0
        binned = [
            np.rint((t - c) / self.delta).astype(np.int64)
            for t, c in zip(parts, shifts, strict=True)
        ]
        stem, stages, head = binned[0], binned[1:-1], binned[-1]  # [R, W0], ..., [R, WS, WH]
        n_bins = int(stem.max() + sum(t.max() for t in stages) + head.max()) + 2 * self.slack + 2
        self.n_bins = n_bins
        self.stem_c, self.stage_c, self.head_c = stem, stages, head
        # forward[s][r, w, bin]: number of partial archs through stage s (0 = stem) ending
        # in width index w with rounded cost `bin`.
        forward = []
        f0 = np.zeros((R, stem.shape[1], n_bins))
        for r in range(R):
            for w in range(stem.shape[1]):
                f0[r, w, stem[r, w]] += 1
        forward.append(f0)
        for t in stages:  # t: [R, Wprev, W, D, K, E]
            prev = forward[-1]
            cur = np.zeros((R, t.shape[2], n_bins))
            for r in range(R):
                for wp in range(t.shape[1]):
                    for w in range(t.shape[2]):
                        shifts, counts = np.unique(t[r, wp, w].ravel(), return_counts=True)
                        for c, k in zip(shifts, counts, strict=True):
                            cur[r, w, c:] += k * prev[r, wp, : n_bins - c]
            forward.append(cur)
        self.forward = forward
        total = np.zeros((R, n_bins))
        for r in range(R):
            for ws in range(head.shape[1]):
                for wh in range(head.shape[2]):
                    c = head[r, ws, wh]
                    total[r, c:] += forward[-1][r, ws, : n_bins - c]
        self.total = total  # [R, bins]: architectures per rounded total cost
        self.cum_total = np.concatenate([np.zeros((R, 1)), np.cumsum(total, axis=1)], axis=1)
        # one increasing array over all resolutions, for a single vectorised searchsorted
        self._row_offset = float(self.cum_total[:, -1].max()) + 1.0
        self._cum_flat = (self.cum_total + np.arange(R)[:, None] * self._row_offset).ravel()
        # per stage: the (prev width, depth, kernel, expand) cells flattened, with prev width
        self._stage_shape = [t.shape[1:2] + t.shape[3:] for t in stages]
        self._stage_wp = [
            np.repeat(np.arange(sh[0]), int(np.prod(sh[1:])))[None, :] for sh in self._stage_shape
        ]

    def _bin_range(self, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive-exclusive fine-bin range covering each bucket, widened by the slack."""
        b = buckets + self.first_bucket
        lo_cost, hi_cost = (b - 0.5) * self.step - self.origin, (b + 0.5) * self.step - self.origin
        lo = np.floor(lo_cost / self.delta).astype(np.int64) - self.slack
        hi = np.ceil(hi_cost / self.delta).astype(np.int64) + self.slack + 1
        return np.clip(lo, 0, self.n_bins), np.clip(hi, 0, self.n_bins)

    def bucket_counts(self) -> np.ndarray:
        """Architectures per bucket (by rounded cost; exact up to the bins at bucket edges)."""
        centers = np.arange(self.n_bins) * self.delta + self.origin
        b = np.clip(
            np.round(centers / self.step).astype(np.int64) - self.first_bucket,
            0,
            self.n_buckets - 1,
        )
        return np.bincount(b, weights=self.total.sum(axis=0), minlength=self.n_buckets)

    @staticmethod
    def _choose(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
        """One column index per row, with probability proportional to the row's weights."""
        cdf = np.cumsum(weights, axis=1)
        u = rng.random((weights.shape[0], 1)) * cdf[:, -1:]
        return np.minimum((u >= cdf).sum(axis=1), weights.shape[1] - 1)

    def propose(self, rng: np.random.Generator, buckets: np.ndarray) -> np.ndarray:
        """One index row per bucket, uniform over the architectures of the widened bucket."""
        sp = self.space
        n = len(buckets)
        lo, hi = self._bin_range(buckets)
        mass = self.cum_total[:, hi] - self.cum_total[:, lo]  # [R, n]
        empty = mass.sum(axis=0) <= 0
        if np.any(empty):
            target = (buckets[empty][0] + self.first_bucket) * self.step
            raise UserError(
                f"no architecture of space '{sp.name}' has about {self.cost.describe(target)}"
            )
        r = self._choose(rng, mass.T)
        # final bin: inverse CDF inside [lo, hi)
        u = rng.random(n) * mass[r, np.arange(n)] + self.cum_total[r, lo]
        pos = np.searchsorted(self._cum_flat, u + r * self._row_offset, side="right")
        bins = pos - r * (self.n_bins + 1) - 1
        bins = np.clip(bins, lo, hi - 1)
        out = np.zeros((n, len(sp.genes)), dtype=np.int64)
        out[:, sp._g_res] = r
        rows = np.arange(n)
        # head: choose (w_S, w_head)
        hc = self.head_c[r]  # [n, WS, WH]
        WS, WH = hc.shape[1], hc.shape[2]
        prev = self.forward[-1][
            r[:, None, None],
            np.arange(WS)[None, :, None],
            np.clip(bins[:, None, None] - hc, 0, None),
        ]
        weights = np.where(bins[:, None, None] - hc >= 0, prev, 0.0).reshape(n, -1)
        pick = self._choose(rng, weights)
        ws, wh = pick // WH, pick % WH
        out[:, sp._g_width[-1]] = wh
        out[:, sp._g_width[-2]] = ws
        bins = bins - hc[rows, ws, wh]
        w_next = ws
        for s in range(sp.n_stages - 1, -1, -1):
            shape = self._stage_shape[s]
            flat = self.stage_c[s][r, :, w_next].reshape(n, -1)  # [n, Wprev*D*K*E]
            target = bins[:, None] - flat
            counts = self.forward[s][r[:, None], self._stage_wp[s], np.maximum(target, 0)]
            pick = self._choose(rng, np.where(target >= 0, counts, 0.0))
            wp, d, k, e = np.unravel_index(pick, shape)
            gd, gk, ge = sp._g_stage[s]
            out[:, gd], out[:, gk], out[:, ge] = d, k, e
            out[:, sp._g_width[s]] = wp
            bins = bins - flat[rows, pick]
            w_next = wp
        return out

    def sample(
        self, rng: np.random.Generator, buckets: np.ndarray, max_rounds: int = 1000
    ) -> tuple[np.ndarray, np.ndarray]:
        """Index rows exactly uniform on each bucket, and the trials each took."""
        buckets = np.asarray(buckets, dtype=np.int64)
        out = np.zeros((len(buckets), len(self.space.genes)), dtype=np.int64)
        trials = np.zeros(len(buckets), dtype=np.int64)
        todo = np.arange(len(buckets))
        for _ in range(max_rounds):
            if not todo.size:
                break
            cand = self.propose(rng, buckets[todo])
            cost = self.cost.values(cand)
            ok = np.round(cost / self.step).astype(np.int64) - self.first_bucket == buckets[todo]
            trials[todo] += 1
            out[todo[ok]] = cand[ok]
            todo = todo[~ok]
        if todo.size:
            target = (buckets[todo[0]] + self.first_bucket) * self.step
            raise UserError(
                f"no architecture of space '{self.space.name}' found near "
                f"{self.cost.describe(target)}"
            )
        return out, trials
