"""Sampling and analytic-cost speed on this machine (issue "Foundation", BENCHMARKS.md).

Run: python benchmarks/sampling.py  ->  benchmarks/results/sampling.json
Measures, per space: time to build the FLOPs tables from 10^6 samples; mean rejection
trials per FLOPs-conditioned sample (paper's factorised tables, our resolution-conditioned
tables, our exact DP sampler, naive uniform rejection); accepted samples per second on one
core; analytic cost evaluations per second.
``--report`` rebuilds the BENCHMARKS.md table from the committed JSON (no measuring).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from md_tables import replace_table, sci, sig  # noqa: E402

from samplenas.io import atomic_write_json  # noqa: E402
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


ROWS = [  # (label, goal, cell of one space's results)
    ("buckets (step)", "", lambda r: f"{r['n_buckets']} ({r['step_mflops']:g} MFLOPs)"),
    (
        "time to build π(τ) and tables from 10^6 uniform (+0.5×10^6 tilted) samples: "
        "factorised / also on resolution",
        "≤ 60 s",
        lambda r: (
            f"{r['factorized']['build_seconds_1e6']:.1f} s / "
            f"{r['factorized_resolution']['build_seconds_1e6']:.1f} s"
        ),
    ),
    (
        "mean trials, paper's factorised tables π̂(o_i \\| τ)",
        "(paper: ~12)",
        lambda r: f"{r['factorized']['mean_trials']:.1f}",
    ),
    (
        "mean trials, tables also conditioned on resolution",
        "",
        lambda r: f"{r['factorized_resolution']['mean_trials']:.1f}",
    ),
    (
        "**mean trials, exact DP sampler (default)**",
        "≤ 6",
        lambda r: f"**{r['exact_dp']['mean_trials']:.2f}**",
    ),
    (
        "mean trials, naive uniform rejection (simulated, τ ~ π(τ))",
        "",
        lambda r: f"{r['naive_uniform_rejection']['mean_trials_tau_from_prior']:.0f}",
    ),
    (
        "naive uniform rejection, τ uniform over buckets (1/π(τ) averaged)",
        "(paper: 50,878)",
        lambda r: sci(r["naive_uniform_rejection"]["mean_trials_tau_uniform_over_buckets"]),
    ),
    (
        "accepted samples/s, exact DP, batched",
        "≥ 5,000",
        lambda r: sig(r["exact_dp"]["samples_per_second_batched"]),
    ),
    (
        "accepted samples/s, exact DP, one `ask(1)` at a time",
        "≥ 5,000",
        lambda r: sig(r["exact_dp"]["samples_per_second_one_at_a_time"]),
    ),
    (
        "accepted samples/s, factorised tables, batched",
        "",
        lambda r: sig(r["factorized"]["samples_per_second"]),
    ),
    (
        "accepted samples/s, tables also conditioned on resolution, batched",
        "",
        lambda r: sig(r["factorized_resolution"]["samples_per_second"]),
    ),
    (
        "analytic cost evaluations/s, batched (table lookups)",
        "",
        lambda r: sci(r["cost_evals_per_second_batched"]),
    ),
    (
        "analytic cost evaluations/s, one `space.cost(arch)` at a time",
        "",
        lambda r: sig(r["cost_evals_per_second_one_arch"]),
    ),
]


def report(results: dict) -> str:
    """The BENCHMARKS.md table, every cell from ``results`` (sampling.json)."""
    spaces = results["spaces"]
    lines = ["| | " + " | ".join(f"`{r['space']}`" for r in spaces) + " | goal |"]
    lines.append("|---" * (len(spaces) + 2) + "|")
    for label, goal, cell in ROWS:
        cells = [label, *(cell(r) for r in spaces), goal]
        lines.append(("| " + " | ".join(cells) + " |").replace("  |", " |"))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--report", action="store_true", help="rebuild the BENCHMARKS.md table from the JSON"
    )
    if ap.parse_args().report:
        table = report(json.loads(OUT.read_text()))
        replace_table("sampling", table)
        print(table)
        return
    results = {
        "machine": os.uname().machine,
        "cpus": os.cpu_count(),
        "spaces": [bench_space(n) for n in ("attentive", "attentive-fashion")],
    }
    atomic_write_json(OUT, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
