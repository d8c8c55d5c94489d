"""The sampler-comparison harness: strategies × seeded runs on a tabular benchmark.

Each run is independent and deterministic given (seed, strategy, run index); runs go
to a process pool over all cores. For every query count q the harness records the best
validation accuracy found within q queries and that architecture's test accuracy; means
and standard deviations over runs make the curves (the Neural Predictor paper's Figure 4).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from samplenas.bench.table import Evaluator, Table, load_benchmark
from samplenas.errors import UserError
from samplenas.samplers.base import Sampler

STRATEGIES = ("random", "re", "npred", "npred-2stage", "npred-rf", "npred-mlp")


def make_strategy(name: str, table: Table, seed: int, npred_n: int = 50) -> Sampler:
    from samplenas.search.strategies import (
        NeuralPredictorSearch,
        RandomSearch,
        RegularizedEvolution,
    )

    space, archs = table.space, table.archs
    if name == "random":
        return RandomSearch(space, seed=seed, candidates=archs)
    if name == "re":
        return RegularizedEvolution(space, seed=seed, candidates=archs)
    if name.startswith("npred"):
        factory = _predictor_factory(name, space)
        return NeuralPredictorSearch(
            space, seed=seed, n_train=npred_n, candidates=archs, predictor_factory=factory
        )
    raise UserError(f"unknown strategy '{name}'; choose from {list(STRATEGIES)}")


def _predictor_factory(name: str, space) -> Callable[[int], Any]:
    def make(seed: int):
        from samplenas.predictors import RandomForestPredictor
        from samplenas.predictors.gcn import GCNPredictor, TwoStagePredictor
        from samplenas.predictors.mlp import MLPPredictor

        return {
            "npred": lambda: GCNPredictor(space, seed=seed),
            "npred-2stage": lambda: TwoStagePredictor(space, seed=seed),
            "npred-rf": lambda: RandomForestPredictor(space, seed=seed, n_jobs=1),
            "npred-mlp": lambda: MLPPredictor(space, seed=seed),
        }[name]()

    return make


def run_once(
    table: Table, strategy: str, seed: int, budget: int, npred_n: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """(best validation so far, test accuracy of that arch) after each of ``budget`` queries."""
    evaluator = Evaluator(table, budget)
    sampler = make_strategy(strategy, table, seed, npred_n)
    query = evaluator.query  # the only view of the benchmark a strategy gets
    best_valid = np.full(budget, np.nan)
    best_test = np.full(budget, np.nan)
    best, best_arch = -np.inf, None
    while evaluator.queries < budget:
        archs = sampler.ask(1)
        if not archs:
            break
        scores = [query(a) for a in archs]
        sampler.tell(archs, scores)
        for a, s in zip(archs, scores, strict=True):
            if s > best:
                best, best_arch = s, a
        q = evaluator.queries
        best_valid[q - 1] = best
        best_test[q - 1] = evaluator.test(best_arch)
    # a strategy that stops early keeps its best for the remaining query counts
    for arr in (best_valid, best_test):
        last = np.nan
        for i in range(budget):
            last = arr[i] = arr[i] if not np.isnan(arr[i]) else last
    return best_valid, best_test


_TABLE: Table | None = None


def _init_worker(spec: str, space: str | None) -> None:
    global _TABLE
    import torch

    torch.set_num_threads(1)
    _TABLE = load_benchmark(spec, space)


def _job(args: tuple[str, int, int, int]) -> tuple[str, np.ndarray, np.ndarray]:
    strategy, seed, budget, npred_n = args
    assert _TABLE is not None
    v, t = run_once(_TABLE, strategy, seed, budget, npred_n)
    return strategy, v, t


def compare(
    spec: str,
    strategies: list[str],
    budget: int,
    runs: int,
    seed: int = 0,
    workers: int | None = None,
    space: str | None = None,
    npred_n: int = 50,
) -> dict[str, Any]:
    """Mean/std curves per strategy; JSON-able, in the CLI's ``--json`` shape."""
    for s in strategies:
        if s not in STRATEGIES:
            raise UserError(f"unknown strategy '{s}'; choose from {list(STRATEGIES)}")
    if budget < 1 or runs < 1:
        raise UserError("--budget and --runs must be at least 1")
    load_benchmark(spec, space)  # fail fast, in this process, on a bad name or file
    started = time.perf_counter()
    jobs = [(s, seed * 100_003 + r, budget, npred_n) for s in strategies for r in range(runs)]
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {s: [] for s in strategies}
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(spec, space)) as pool:
        for strategy, v, t in pool.map(_job, jobs, chunksize=max(1, len(jobs) // (4 * workers))):
            curves[strategy].append((v, t))
    out: dict[str, Any] = {
        "benchmark": spec,
        "budget": budget,
        "runs": runs,
        "seed": seed,
        "strategies": {},
    }
    queries = list(range(1, budget + 1))
    for s, rows in curves.items():
        v = np.stack([r[0] for r in rows])
        t = np.stack([r[1] for r in rows])
        out["strategies"][s] = {
            "queries": queries,
            "valid_mean": v.mean(0).tolist(),
            "valid_std": v.std(0).tolist(),
            "test_mean": t.mean(0).tolist(),
            "test_std": t.std(0).tolist(),
        }
    out["wall_seconds"] = time.perf_counter() - started
    return out


def plot_curves(result: dict[str, Any], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, c in result["strategies"].items():
        q = np.array(c["queries"])
        for ax, key in zip(axes, ("valid", "test"), strict=True):
            m, s = np.array(c[f"{key}_mean"]), np.array(c[f"{key}_std"])
            ax.plot(q, m, label=name)
            ax.fill_between(q, m - s, m + s, alpha=0.15)
    for ax, key in zip(axes, ("validation", "test"), strict=True):
        ax.set_xlabel("queries")
        ax.set_ylabel(f"{key} accuracy of the best found")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{result['benchmark']}: {result['runs']} runs per strategy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
