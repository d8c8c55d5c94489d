"""``samplenas search``: stage 2 — evolutionary search on a trained supernet run."""

from __future__ import annotations

import argparse
from pathlib import Path

from samplenas.commands.common import (
    add_evaluation_options,
    add_run_dir_option,
    join_ranks,
    non_negative_int,
    open_cache,
    open_run,
    positive_int,
)
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
        write_front,
    )
    from samplenas.space import Arch
    from samplenas.train.distributed import broadcast_object

    info = join_ranks()
    run = open_run(args, writable=info.is_main)
    rng = tuple(args.mflops_range) if args.mflops_range else None
    cfg = SearchConfig(
        args.population,
        args.mutations,
        args.crossovers,
        args.iterations,
        budget=args.budget,
        mflops_range=rng,
        seed=args.seed,
    )
    calib = run.calibration(args.calib_batches)
    val = run.eval_loader("val", args.val_images)

    def evaluate(arch):
        return run.score(arch, calib, val)

    out = Path(args.run) / "search"
    measured = run.fingerprint(calib, "val", val)
    archive = open_cache(out / "archive.jsonl", measured, info)
    stats = run_evolution(run.space, evaluate, cfg, archive, not args.no_progress, info)
    front = front_of(archive, rng) if archive is not None else []
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
    write_front(
        front,
        out / "pareto.json",
        {"run": str(args.run), **stats, "archive_size": len(archive), "fingerprint": measured},
    )
    plot_front(
        [m for _, m in archive.rows()],
        [m for _, m in front],
        out / "pareto.png",
        f"{run.space.name}: evolutionary search",
    )
    if args.json:
        print_json(
            {
                "front": [{"id": i, "arch": a.to_json(), **m} for i, (a, m) in enumerate(front)],
                **stats,
                "archive": str(out / "archive.jsonl"),
                "plot": str(out / "pareto.png"),
            }
        )
        return 0
    print(f"{'id':>3} {'MFLOPs':>8} {'params M':>9} {'val top-1':>10} {'test top-1':>11}")
    for i, (_, m) in enumerate(front):
        print(
            f"{i:3d} {m['mflops']:8.2f} {m['params_m']:9.3f} {m['val_top1']:10.2f} "
            f"{m['test_top1']:11.2f}"
        )
    rate = throughput_line(stats)
    print(
        f"{stats['evaluations']} evaluations ({stats['new_evaluations']} new"
        + (f", {rate}" if rate else "")
        + f"); front in {out / 'pareto.json'}, "
        f"plot {out / 'pareto.png'}"
    )
    return 0
