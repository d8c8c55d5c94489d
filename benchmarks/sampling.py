"""Sampling and analytic-cost speed on this machine (issue "Foundation", BENCHMARKS.md).

Run: python benchmarks/sampling.py  ->  benchmarks/results/sampling.json
Measures, per space: time to build the FLOPs tables from 10^6 samples; mean rejection
trials per FLOPs-conditioned sample (paper's factorised tables, our resolution-conditioned
tables, our exact DP sampler, naive uniform rejection); accepted samples per second on one
core; analytic cost evaluations per second.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from samplenas.samplers.flops_exact import ExactBucketSampler  # noqa: E402
from samplenas.samplers.flops_prior import FlopsPrior  # noqa: E402
from samplenas.space import load_space  # noqa: E402

OUT = Path(__file__).parent / "results" / "sampling.json"


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def naive_trials(space, prior: FlopsPrior, rng: np.random.Generator, n: int) -> float:
    """Mean uniform draws until one lands in a bucket drawn from π(τ) (simulated)."""
    trials = []
    pool_m, _ = space.cost_indices(space.sample_indices(rng, 2_000_000))
    pool_b = prior.bucket_of(pool_m)
    pos = 0
    for b in prior.sample_buckets(rng, n):
        start = pos
        while True:
            if pos >= len(pool_b):
                pool_m, _ = space.cost_indices(space.sample_indices(rng, 2_000_000))
                pool_b, pos, start = prior.bucket_of(pool_m), 0, start - len(pool_b)
            if pool_b[pos] == b:
                break
            pos += 1
        pos += 1
        trials.append(pos - start)
    return float(np.mean(trials))


def bench_space(name: str) -> dict:
    space = load_space(name)
    rng = np.random.default_rng(0)
    res: dict = {"space": name, "size": space.size()}
    for cond in (None, "resolution"):
        prior, secs = timed(FlopsPrior.build, space, m=1_000_000, condition_on=cond)
        key = "factorized" if cond is None else "factorized_resolution"
        targets = prior.sample_buckets(rng, 20_000)
        (_, trials), secs_s = timed(prior.sample, space, rng, targets)
        res[key] = {
            "build_seconds_1e6": round(secs, 2),
            "mean_trials": float(trials.mean()),
            "samples_per_second": round(len(targets) / secs_s),
        }
    res["n_buckets"], res["step_mflops"] = prior.n_buckets, prior.step
    exact, secs = timed(ExactBucketSampler, space, prior.step, prior.first_bucket, prior.n_buckets)
    targets = prior.sample_buckets(rng, 50_000)
    (_, trials), secs_s = timed(exact.sample, rng, targets)
    one_at_a_time = time.perf_counter()
    for b in targets[:2000]:
        exact.sample(rng, np.array([b]))
    one_rate = 2000 / (time.perf_counter() - one_at_a_time)
    res["exact_dp"] = {
        "build_seconds": round(secs, 3),
        "mean_trials": float(trials.mean()),
        "samples_per_second_batched": round(len(targets) / secs_s),
        "samples_per_second_one_at_a_time": round(one_rate),
    }
    res["naive_uniform_rejection"] = {
        "mean_trials_tau_from_prior": naive_trials(space, prior, rng, 2000),
        "mean_trials_tau_uniform_over_buckets": float(np.mean(1.0 / prior.prior[prior.prior > 0])),
    }
    idx = space.sample_indices(rng, 1_000_000)
    _, secs = timed(space.cost_indices, idx)
    archs = [space.arch_from_indices(r) for r in idx[:5000]]
    _, secs_one = timed(lambda: [space.cost(a) for a in archs])
    res["cost_evals_per_second_batched"] = round(len(idx) / secs)
    res["cost_evals_per_second_one_arch"] = round(len(archs) / secs_one)
    return res


def main() -> None:
    results = {
        "machine": os.uname().machine,
        "cpus": os.cpu_count(),
        "spaces": [bench_space(n) for n in ("attentive", "attentive-fashion")],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
