"""``samplenas search``: stage 2 — evolutionary search on a trained supernet run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from samplenas.commands.common import (
    add_evaluation_options,
    add_run_dir_option,
    join_ranks,
    non_negative_int,
    open_cache,
    open_run,
    positive_int,
)
from samplenas.errors import UserError
from samplenas.io import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="evolutionary search on a trained run; Pareto front")
    add_run_dir_option(p)
    p.add_argument("--budget", type=positive_int, help="at most this many evaluations")
    p.add_argument(
        "--mflops-range",
        type=float,
        nargs=2,
        metavar=("A", "B"),
        help="keep architectures within A..B MFLOPs",
    )
    p.add_argument(
        "--latency",
        metavar="TABLE",
        help="search over (latency, accuracy) with this table's predicted ms "
        "(from 'samplenas latency build'); the front is also timed end to end",
    )
    p.add_argument(
        "--max-latency-ms",
        type=float,
        metavar="X",
        help="keep architectures the table predicts at most X ms (needs --latency)",
    )
    p.add_argument(
        "--latency-range",
        type=float,
        nargs=2,
        metavar=("A", "B"),
        help="keep architectures the table predicts within A..B ms (needs --latency)",
    )
    p.add_argument(
        "--population", type=positive_int, default=64, help="initial population P (paper 512)"
    )
    p.add_argument(
        "--mutations", type=non_negative_int, default=32, help="mutations per iteration M (128)"
    )
    p.add_argument(
        "--crossovers", type=non_negative_int, default=32, help="crossovers per iteration C (128)"
    )
    p.add_argument("--iterations", type=non_negative_int, default=6, help="iterations I (paper 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--seed-from",
        choices=["vae"],
        help="start the population with samples of the VAE the run trained (--sampler vae)",
    )
    p.add_argument(
        "--n-seeds",
        type=positive_int,
        help="how many VAE samples join the initial population (default: half of it)",
    )
    add_evaluation_options(p)
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    """Under torchrun every rank evaluates its share; rank 0 alone writes and prints."""
    from samplenas.report import plot_front
    from samplenas.search.parallel import evaluate_many, throughput_line
    from samplenas.search.runner import (
        SearchConfig,
        expected_mflops,
        front_of,
        run_evolution,
        with_cost,
        write_front,
    )
    from samplenas.space import Arch
    from samplenas.train.distributed import broadcast_object

    info = join_ranks()
    run = open_run(args, writable=info.is_main)
    cost, cost_range = search_cost(args, run.space)
    rng = tuple(args.mflops_range) if args.mflops_range else None
    cfg = SearchConfig(
        args.population,
        args.mutations,
        args.crossovers,
        args.iterations,
        budget=args.budget,
        mflops_range=rng,
        seed=args.seed,
        cost_range=cost_range,
    )
    seeds = search_seeds(args, run, cost, cost_range or rng)
    calib = run.calibration(args.calib_batches)
    val = run.eval_loader("val", args.val_images)

    def evaluate(arch):
        return run.score(arch, calib, val)

    out = Path(args.run) / "search"
    measured = run.fingerprint(calib, "val", val)
    archive = open_cache(out / "archive.jsonl", measured, info)
    stats = run_evolution(
        run.space, evaluate, cfg, archive, not args.no_progress, cost=cost, info=info, seeds=seeds
    )
    front = front_of(archive, cost_range or rng, cost) if archive is not None else []
    test = run.eval_loader("test")
    # Pareto members' test accuracy, measured once per way of measuring
    tested = open_cache(out / "test.jsonl", run.fingerprint(calib, "test", test), info)
    members = broadcast_object([a.to_json() for a, _ in front], info)

    def test_row(arch: Arch) -> dict:
        r = run.score(arch, calib, test)
        return {"test_top1": r["top1"], "test_loss": r["loss"]}

    rows = evaluate_many(
        [Arch(a) for a in members], test_row, tested, info, expected_mflops(run.space)
    )
    if not info.is_main:
        return 0
    for (_, metrics), row in zip(front, rows, strict=True):
        metrics.update(row)
    extra = {}
    if cost is not None:
        extra["latency"] = measure_front(run.space, cost, front, cost_range)
    write_front(
        front,
        out / "pareto.json",
        {
            "run": str(args.run),
            **stats,
            "archive_size": len(archive),
            "fingerprint": measured,
            **extra,
        },
    )
    plot_front(
        [m for _, m in with_cost(archive.rows(), cost)],
        [m for _, m in front],
        out / "pareto.png",
        f"{run.space.name}: evolutionary search",
        cost_key=cost.name if cost else "mflops",
        cost_label=f"{cost.label} ({cost.unit}, table)" if cost else "MFLOPs",
    )
    if args.json:
        print_json(
            {
                "front": [{"id": i, "arch": a.to_json(), **m} for i, (a, m) in enumerate(front)],
                **stats,
                **extra,
                "archive": str(out / "archive.jsonl"),
                "plot": str(out / "pareto.png"),
            }
        )
        return 0
    print_front(front, cost is not None)
    rate = throughput_line(stats)
    print(
        f"{stats['evaluations']} evaluations ({stats['new_evaluations']} new"
        + (f", {rate}" if rate else "")
        + f"); front in {out / 'pareto.json'}, "
        f"plot {out / 'pareto.png'}"
    )
    return 0


def search_seeds(args: argparse.Namespace, run, cost, bounds) -> list:
    """``--seed-from vae``: ``--n-seeds`` distinct samples of the run's VAE within the
    search's bounds, drawn with ``--seed`` (alike on every rank); [] without it."""
    if args.seed_from is None:
        if args.n_seeds is not None:
            raise UserError("--n-seeds says how many VAE samples to seed with: add --seed-from vae")
        return []
    from samplenas.samplers.vae_oneshot import trained_vae, vae_seeds
    from samplenas.space.cost import FlopsCost
    from samplenas.train.checkpoint import CHECKPOINT, load_checkpoint

    state = load_checkpoint(Path(args.run) / CHECKPOINT).get("sampler")
    vae = trained_vae(Path(args.run), run.space, run.cfg.sampler, state)
    measure = cost or FlopsCost(run.space)
    accept = None if bounds is None else lambda a: bounds[0] <= measure(a) <= bounds[1]
    n = args.n_seeds or max(args.population // 2, 1)
    seeds = vae_seeds(vae, n, args.seed, accept)
    if len(seeds) < n:  # a VAE trained on few architectures proposes few
        print(
            f"samplenas: the run's VAE gave {len(seeds)} distinct architectures of the {n} "
            "asked (--n-seeds); the rest of the population is drawn as usual",
            file=sys.stderr,
        )
    return seeds


def search_cost(args: argparse.Namespace, space) -> tuple[Any, tuple[float, float] | None]:
    """The search's cost model and bounds: (None, None) for FLOPs (``--mflops-range``
    bounds those), a latency table's cost with ``--latency``."""
    from samplenas.space.cost import make_cost

    bounded = args.max_latency_ms is not None or args.latency_range is not None
    if not args.latency:
        if bounded:
            raise UserError(
                "--max-latency-ms and --latency-range bound a latency table's prediction: "
                "give the table with --latency TABLE.json ('samplenas latency build')"
            )
        return None, None
    if args.mflops_range:
        raise UserError("--mflops-range bounds FLOPs, --latency searches latency; give one of them")
    if args.max_latency_ms is not None and args.latency_range is not None:
        raise UserError("give --max-latency-ms X or --latency-range A B, not both")
    cost = make_cost(space, "latency", args.latency)
    if args.max_latency_ms is not None:
        return cost, (cost.bounds()[0], args.max_latency_ms)
    return cost, tuple(args.latency_range) if args.latency_range else None


def measure_front(space, cost, front: list, cost_range) -> dict[str, Any]:
    """Time every front member end to end (the static model ``export`` writes, under the
    table's settings) and add ``measured_ms`` beside the table's ``latency_ms``."""
    from samplenas.latency import time_arch
    from samplenas.latency.check import here_matches

    info: dict[str, Any] = {"table": cost.path, "range_ms": cost_range, "measured": False}
    try:
        here_matches(cost.table)
    except UserError as exc:  # a table of another device: its ms cannot be timed here
        info["not_measured_because"] = str(exc)
        print(f"note: the front is not timed here: {exc}", file=sys.stderr)
        return info
    for arch, metrics in front:
        metrics["measured_ms"] = time_arch(space, arch, cost.table.settings)
    info["measured"] = True
    info["settings"] = cost.settings()
    return info


def print_front(front: list, latency: bool) -> None:
    """The front as a table: MFLOPs, params, [predicted and measured ms], top-1."""
    head = f"{'id':>3} {'MFLOPs':>8} {'params M':>9}"
    if latency:
        head += f" {'table ms':>9} {'measured':>9}"
    print(head + f" {'val top-1':>10} {'test top-1':>11}")
    for i, (_, m) in enumerate(front):
        line = f"{i:3d} {m['mflops']:8.2f} {m['params_m']:9.3f}"
        if latency:
            measured = m.get("measured_ms")
            line += f" {m['latency_ms']:9.3f} " + (
                f"{measured:9.3f}" if measured is not None else f"{'-':>9}"
            )
        print(line + f" {m['val_top1']:10.2f} {m['test_top1']:11.2f}")
