"""The sampler-comparison harness: strategies × seeded runs on a tabular benchmark.

Each run is independent and deterministic given (seed, strategy, run index); runs go
to a process pool over all cores. For every query count q the harness records the best
validation accuracy found within q queries and that architecture's test accuracy; means
and standard deviations over runs make the curves (the Neural Predictor paper's Figure 4).

With a cost objective (``accuracy,latency`` or ``accuracy,params``) the cost is given to
the strategies as known (measuring latency needs no training), and the metric becomes the
hypervolume of the validated (cost, accuracy) front, both axes scaled to [0, 1] by the
table's ranges; the "test" curve is the hypervolume of the same front architectures
scored with their test accuracy.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from tqdm import tqdm

from samplenas.bench.table import Evaluator, Table, load_benchmark
from samplenas.errors import UserError
from samplenas.samplers.base import Sampler
from samplenas.search.pareto import hypervolume_2d, pareto_front
from samplenas.space import Arch

STRATEGIES = (
    "random",
    "re",
    "npred",
    "npred-2stage",
    "npred-rf",
    "npred-mlp",
    "bananas",
    "vae",
    "vae-re",
)


def parse_objective(text: str | None) -> str | None:
    """``accuracy`` -> None; ``accuracy,COST`` -> the cost key (latency, params, ...)."""
    parts = [p.strip() for p in (text or "accuracy").split(",") if p.strip()]
    if not parts or parts[0] != "accuracy" or len(parts) > 2:
        raise UserError(
            f"--objective must be 'accuracy' or 'accuracy,COST' (e.g. accuracy,latency), "
            f"not '{text}'"
        )
    return parts[1] if len(parts) == 2 else None


def make_strategy(
    name: str,
    table: Table,
    seed: int,
    npred_n: int = 50,
    cost_key: str | None = None,
    options: dict[str, Any] | None = None,
) -> Sampler:
    """Strategy ``name`` on ``table``; ``options`` (Python API, the VAE strategies' only)
    override its settings, e.g. ``{"n_init": 30}`` in a tuning study."""
    from samplenas.search.strategies import (
        IterativePredictorSearch,
        NeuralPredictorSearch,
        RandomSearch,
        RegularizedEvolution,
    )

    space, archs = table.space, table.archs
    cost = table.cost_model(cost_key) if cost_key is not None else None
    if name == "random":
        return RandomSearch(space, seed=seed, candidates=archs)
    if name == "re":
        return RegularizedEvolution(space, seed=seed, candidates=archs, cost=cost)
    if name in ("vae", "vae-re"):
        if cost is not None:
            raise UserError(
                f"strategy '{name}' searches accuracy alone, not --objective accuracy,{cost_key}; "
                "use re or npred with a cost objective"
            )
        from samplenas.search.vae_search import VAERegularizedEvolution, VAESearch

        vae_class = VAESearch if name == "vae" else VAERegularizedEvolution
        return vae_class(space, seed=seed, candidates=archs, **(options or {}))
    if options:
        raise UserError(f"strategy '{name}' takes no options, got {sorted(options)}")
    if name == "bananas":
        if cost is not None:
            raise UserError(
                f"strategy 'bananas' searches accuracy alone, not --objective accuracy,{cost_key}; "
                "use re or npred with a cost objective"
            )
        return IterativePredictorSearch(
            space, seed=seed, candidates=archs, predictor_factory=_predictor_factory("npred", space)
        )
    if name.startswith("npred"):
        factory = _predictor_factory(name, space)
        return NeuralPredictorSearch(
            space,
            seed=seed,
            n_train=npred_n,
            candidates=archs,
            predictor_factory=factory,
            cost=cost,
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


def curve_names(table: Table) -> list[str]:
    """What a run reports after each query: ``valid`` (what the strategy saw), ``expected``
    (the seed mean of the same choice) and, when the table has one, ``test`` (held out)."""
    return ["valid", "expected"] + (["test"] if table.has_test else [])


def run_once(
    table: Table,
    strategy: str,
    seed: int,
    budget: int,
    npred_n: int = 50,
    cost_key: str | None = None,
    stats: dict[str, float] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """The metric after each of ``budget`` queries, per curve name (``curve_names``).

    The metric is the best queried validation accuracy so far, and for that same
    architecture its expected (seed-mean) and held-out accuracy; with ``cost_key`` it is
    the hypervolume of the front of queried scores, and of the same architectures scored
    by their expected and held-out accuracy. The choice is always made on what was queried.
    ``stats``, when given, receives the strategy's counters (e.g. the VAE's validity);
    ``options`` go to ``make_strategy``.
    """
    evaluator = Evaluator(table, budget, seed)
    sampler = make_strategy(strategy, table, seed, npred_n, cost_key, options)
    query = evaluator.query  # the only view of the benchmark a strategy gets
    metric = _best_accuracy(evaluator) if cost_key is None else _hypervolume(evaluator, cost_key)
    names = curve_names(table)
    curves = {name: np.full(budget, np.nan) for name in names}
    while evaluator.queries < budget:
        archs = sampler.ask(1)
        if not archs:
            break
        scores = [query(a) for a in archs]
        sampler.tell(archs, scores)
        q = evaluator.queries
        for name, value in zip(names, metric(archs, scores), strict=True):
            curves[name][q - 1] = value
    if stats is not None:
        stats.update(sampler.stats())
    # a strategy that stops early keeps its value for the remaining query counts
    for arr in curves.values():
        last = np.nan
        for i in range(budget):
            last = arr[i] = arr[i] if not np.isnan(arr[i]) else last
    return curves


Metric = Callable[[list[Arch], list[float]], list[float]]


def _reports(evaluator: Evaluator) -> list[Callable[[Arch], float]]:
    """The report-only scores of an architecture, in ``curve_names`` order after valid."""
    return [evaluator.expected] + ([evaluator.test] if evaluator.table.has_test else [])


def _best_accuracy(evaluator: Evaluator) -> Metric:
    best: list[Any] = [-np.inf, None]
    reports = _reports(evaluator)

    def update(archs: list[Arch], scores: list[float]) -> list[float]:
        for a, s in zip(archs, scores, strict=True):
            if s > best[0]:
                best[:] = [s, a]
        return [best[0]] + [score(best[1]) for score in reports]

    return update


def _hypervolume(evaluator: Evaluator, cost_key: str) -> Metric:
    table = evaluator.table
    cost = table.cost_model(cost_key)
    cost_range = cost.bounds()
    reports = _reports(evaluator)
    ranges = [table.valid_range(), (float(table.valid.min()), float(table.valid.max()))]
    if table.test is not None:
        ranges.append((float(table.test.min()), float(table.test.max())))
    seen_cost: list[float] = []
    seen_valid: list[float] = []
    seen_arch: list[Arch] = []

    def update(archs: list[Arch], scores: list[float]) -> list[float]:
        for a, s in zip(archs, scores, strict=True):
            seen_arch.append(a)
            seen_cost.append(cost(a))
            seen_valid.append(s)
        front = pareto_front(seen_cost, seen_valid)
        c = [seen_cost[i] for i in front]
        out = [hypervolume_2d(c, [seen_valid[i] for i in front], cost_range, ranges[0])]
        for score, score_range in zip(reports, ranges[1:], strict=True):
            values = [score(seen_arch[i]) for i in front]
            out.append(hypervolume_2d(c, values, cost_range, score_range))
        return out

    return update


_TABLE: Table | None = None
_TABLE_SPEC: tuple[str, str | None] | None = None


def _init_worker(spec: str, space: str | None) -> None:
    global _TABLE, _TABLE_SPEC
    import torch

    torch.set_num_threads(1)
    if (spec, space) != _TABLE_SPEC:  # forked workers inherit the parent's table
        _TABLE, _TABLE_SPEC = load_benchmark(spec, space), (spec, space)


def _job(
    args: tuple[str, int, int, int, str | None],
) -> tuple[str, dict[str, np.ndarray], dict[str, float]]:
    strategy, seed, budget, npred_n, cost_key = args
    assert _TABLE is not None
    stats: dict[str, float] = {}
    return strategy, run_once(_TABLE, strategy, seed, budget, npred_n, cost_key, stats), stats


def compare(
    spec: str,
    strategies: list[str],
    budget: int,
    runs: int,
    seed: int = 0,
    workers: int | None = None,
    space: str | None = None,
    npred_n: int | None = None,
    objective: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Mean/std curves per strategy; JSON-able, in the CLI's ``--json`` shape.

    ``npred_n`` (the Neural Predictor's N) defaults to the benchmark's measured best
    (``Table.npred_n``). ``progress`` shows a bar of finished runs on stderr.
    """
    for s in strategies:
        if s not in STRATEGIES:
            raise UserError(f"unknown strategy '{s}'; choose from {list(STRATEGIES)}")
    if budget < 1 or runs < 1:
        raise UserError("--budget and --runs must be at least 1")
    cost_key = parse_objective(objective)
    global _TABLE, _TABLE_SPEC
    started = time.perf_counter()
    table = load_benchmark(spec, space)  # fail fast, in this process, on a bad name or file
    if cost_key is not None:
        table.cost(cost_key)  # every architecture must have the cost
    _TABLE, _TABLE_SPEC = table, (spec, space)
    npred_n = table.npred_n if npred_n is None else npred_n
    if any(s.startswith("npred") for s in strategies) and not 2 <= npred_n < budget:
        raise UserError(
            f"the Neural Predictor needs 2 <= --npred-n < --budget, got --npred-n "
            f"{npred_n} and --budget {budget}; lower --npred-n or raise --budget"
        )
    for s in strategies:  # a strategy that cannot run this objective fails here, not in a worker
        make_strategy(s, table, seed, npred_n, cost_key)
    # the slow (predictor) runs first, one job at a time: the cores finish together
    slow_first = sorted(strategies, key=lambda s: s in ("random", "re"))
    jobs = [
        (s, seed * 100_003 + r, budget, npred_n, cost_key) for s in slow_first for r in range(runs)
    ]
    curves: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in strategies}
    stats: dict[str, list[dict[str, float]]] = {s: [] for s in strategies}
    workers = workers or os.cpu_count() or 1
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    bar = tqdm(total=len(jobs), disable=not progress, unit="run", dynamic_ncols=True)
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(spec, space)
    ) as pool:
        for strategy, run, run_stats in pool.map(_job, jobs):
            curves[strategy].append(run)
            stats[strategy].append(run_stats)
            bar.update(1)
    bar.close()
    out: dict[str, Any] = {
        "benchmark": spec,
        "budget": budget,
        "runs": runs,
        "seed": seed,
        "objective": ["accuracy"] + ([cost_key] if cost_key else []),
        "metric": f"hypervolume(accuracy,{cost_key})" if cost_key else "best accuracy",
        "unit": table.unit,
        "npred_n": npred_n,
        "noisy_queries": table.seeds is not None,
        "curves": describe_curves(table),
        "strategies": {},
    }
    queries = list(range(1, budget + 1))
    for s, rows in curves.items():
        out["strategies"][s] = {"queries": queries}
        for name in curve_names(table):
            values = np.stack([r[name] for r in rows])
            out["strategies"][s][f"{name}_mean"] = values.mean(0).tolist()
            out["strategies"][s][f"{name}_std"] = values.std(0).tolist()
        keys = sorted({k for r in stats[s] for k in r})
        if keys:  # counters the strategy reports, mean over the runs reporting each
            out["strategies"][s]["stats"] = {
                k: float(np.mean([r[k] for r in stats[s] if k in r])) for k in keys
            }
    out["wall_seconds"] = time.perf_counter() - started
    return out


def describe_curves(table: Table) -> dict[str, str]:
    """One sentence per reported curve, written into every result."""
    noisy = table.seeds is not None
    out = {
        "valid": "the best queried validation accuracy (what the strategy saw"
        + ("; one training seed per query)" if noisy else ")"),
        "expected": "the seed-mean validation accuracy of that same architecture"
        + ("" if noisy else " (equal to valid: this table holds seed means only)"),
    }
    if table.has_test:
        out["test"] = f"held out, never seen by a strategy: {table.test_label}"
    return out


def plot_curves(result: dict[str, Any], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(result.get("curves", {"valid": "", "test": ""}))
    if not result.get("noisy_queries") and "expected" in keys:
        keys.remove("expected")  # identical to valid without per-seed queries: no panel
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    axes = axes[0]
    for name, c in result["strategies"].items():
        q = np.array(c["queries"])
        for ax, key in zip(axes, keys, strict=True):
            m, s = np.array(c[f"{key}_mean"]), np.array(c[f"{key}_std"])
            ax.plot(q, m, label=name)
            ax.fill_between(q, m - s, m + s, alpha=0.15)
    metric = result.get("metric", "best accuracy")
    labels = {"valid": "queried validation", "expected": "expected (seed-mean)", "test": "held-out"}
    for ax, key in zip(axes, keys, strict=True):
        ax.set_xlabel("queries")
        if metric == "best accuracy":
            ax.set_ylabel(f"{labels[key]} accuracy of the best found")
        else:
            ax.set_ylabel(f"{metric} ({labels[key]})")
        ax.grid(alpha=0.3)
    axes[0].legend()
    runs = result["runs"]
    if isinstance(runs, dict):  # a study merging strategies run with different counts
        runs = ", ".join(f"{name} {n}" for name, n in runs.items())
    fig.suptitle(f"{result['benchmark']}: runs per strategy: {runs}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
