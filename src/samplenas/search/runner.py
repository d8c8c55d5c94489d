"""Stage 2 on a trained run: evolutionary search, archived, resumable, then the Pareto front.

Fitness is top-1 on the search-validation split after BN calibration. Every evaluation is
appended to ``<run>/search/archive.jsonl``; a killed search replays the (seeded) evolution
against the archive and evaluates only what is missing. Pareto members are evaluated once
on the held-out test split at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from samplenas.io import atomic_write_json
from samplenas.search.archive import Archive
from samplenas.search.evolution import EvolutionSampler
from samplenas.search.parallel import Throughput, evaluate_many
from samplenas.search.pareto import pareto_front
from samplenas.space import Arch, GeneSpace
from samplenas.space.cost import CostModel
from samplenas.train.distributed import DistInfo


@dataclass
class SearchConfig:
    population: int = 64
    mutations: int = 32
    crossovers: int = 32
    iterations: int = 6
    mutate_prob: float = 0.2
    budget: int | None = None  # cap on evaluations
    mflops_range: tuple[float, float] | None = None
    seed: int = 0
    cost_range: tuple[float, float] | None = None  # bounds in the search cost's unit


def run_evolution(
    space: GeneSpace,
    evaluate: Callable[[Arch], dict[str, float]],
    cfg: SearchConfig,
    archive: Archive | None,
    progress: bool = True,
    cost: CostModel | None = None,
    info: DistInfo | None = None,
    seeds: Sequence[Arch] = (),
) -> dict[str, Any]:
    """Evolve, evaluating through ``archive`` (cached) with ``evaluate``; return timing stats.

    ``cost`` (default FLOPs) is what ``cfg``'s bounds and the evolution's buckets are of.
    Under torchrun every rank runs this with the same ``cfg``; each generation is measured
    across the ranks (``parallel.evaluate_many``) and only rank 0 holds ``archive``
    (None elsewhere) and shows progress. ``seeds`` join generation 0 (see
    ``EvolutionSampler``); the stats say how many did (``seeded``).
    """
    info = info or DistInfo()
    sampler = EvolutionSampler(
        space,
        seed=cfg.seed,
        population=cfg.population,
        mutations=cfg.mutations,
        crossovers=cfg.crossovers,
        iterations=cfg.iterations,
        mutate_prob=cfg.mutate_prob,
        mflops_range=cfg.mflops_range,
        cost=cost,
        cost_range=cfg.cost_range,
        seeds=seeds,
    )
    total = cfg.population + cfg.iterations * (cfg.mutations + cfg.crossovers)
    if cfg.budget:
        total = min(total, cfg.budget)
    bar = tqdm(
        total=total, disable=not (progress and info.is_main), unit="arch", dynamic_ncols=True
    )
    best: dict[str, Any] = {"val_top1": -math.inf}  # best so far, on the progress bar

    def show(rows: list[dict[str, Any]], advance: int | None = None) -> None:
        nonlocal best
        best = max([best, *rows], key=lambda r: r["val_top1"])
        if rows:
            bar.set_postfix_str(
                f"best so far {best['val_top1']:.2f}% at {best['mflops']:.2f} MFLOPs",
                refresh=False,
            )
        bar.update(len(rows) if advance is None else advance)

    def measure(arch: Arch) -> dict[str, Any]:
        metrics = evaluate(arch)
        analytic = space.cost(arch)
        return {
            "val_top1": metrics["top1"],
            "val_loss": metrics["loss"],
            "mflops": analytic.mflops,
            "params_m": analytic.params_m,
        }

    throughput = Throughput(devices=info.world_size)
    evaluated = 0
    while not sampler.done() and evaluated < total:
        archs = sampler.ask()[: total - evaluated]
        if not archs:
            break
        before = throughput.measured
        rows = evaluate_many(
            archs, measure, archive, info, expected_mflops(space), throughput, on_round=show
        )
        cached = len(archs) - (throughput.measured - before)
        if cached:  # the bar counts them too
            show(rows, advance=cached)
        evaluated += len(archs)
        sampler.tell(archs, [row["val_top1"] for row in rows])
    bar.close()
    return {
        "evaluations": evaluated,
        "new_evaluations": throughput.measured,
        **({"seeded": sampler.seeded} if seeds else {}),
        **throughput.report(),
    }


def expected_mflops(space: GeneSpace) -> Callable[[Arch], float]:
    """What an evaluation is expected to cost, for splitting work across ranks: its MFLOPs."""
    return lambda arch: space.cost(arch).mflops


def front_of(
    archive: Archive,
    cost_range: tuple[float, float] | None = None,
    cost: CostModel | None = None,
) -> list[tuple[Arch, dict[str, Any]]]:
    """The (cost, val top-1) Pareto front of the archive within ``cost_range``; the cost is
    the rows' MFLOPs, or ``cost`` computed per arch (and added to its rows)."""
    rows = with_cost(archive.rows(), cost)
    key = cost.name if cost is not None else "mflops"
    if cost_range:
        rows = [r for r in rows if cost_range[0] <= r[1][key] <= cost_range[1]]
    if not rows:
        return []
    idx = pareto_front([r[1][key] for r in rows], [r[1]["val_top1"] for r in rows])
    return [rows[i] for i in idx]


def with_cost(
    rows: list[tuple[Arch, dict[str, Any]]], cost: CostModel | None
) -> list[tuple[Arch, dict[str, Any]]]:
    """Rows with ``cost``'s value under its name (a cost the archive does not store:
    a latency table's prediction depends on the table, not on the evaluation)."""
    if cost is None:
        return rows
    return [(a, {**m, cost.name: cost(a)}) for a, m in rows]


def write_front(
    front: list[tuple[Arch, dict[str, Any]]], path: Path, extra: dict[str, Any]
) -> None:
    atomic_write_json(
        path,
        {**extra, "front": [{"id": i, "arch": a.to_json(), **m} for i, (a, m) in enumerate(front)]},
    )


def config_dict(cfg: SearchConfig) -> dict[str, Any]:
    return asdict(cfg)
