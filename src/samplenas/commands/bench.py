"""``samplenas bench``: compare search strategies on a tabular benchmark."""

from __future__ import annotations

import argparse
from pathlib import Path

from samplenas.commands.common import positive_int
from samplenas.errors import UserError
from samplenas.io import atomic_write_json, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="compare search strategies on a tabular benchmark")
    p.add_argument(
        "--benchmark",
        required=True,
        help="nas-bench-graph:DATASET (cora, citeseer, ...), nas-bench-201:DATASET "
        "(cifar10-valid, cifar100, imagenet16-120) or table:PATH",
    )
    p.add_argument("--space", help="space of a table:PATH file that does not name one")
    p.add_argument(
        "--strategies",
        default="random,re,npred",
        help="comma-separated: random, re, npred, npred-2stage, npred-rf, npred-mlp, "
        "bananas (GCN refit every 10 queries, BANANAS-style), vae (random warm-up, then "
        "samples of a VAE retrained on the best seen), vae-re (RE seeded from the VAE)",
    )
    p.add_argument("--budget", type=positive_int, default=300, help="queries per run")
    p.add_argument("--runs", type=positive_int, default=100, help="independent runs per strategy")
    p.add_argument(
        "--npred-n",
        type=int,
        help="Neural Predictor training queries N (default: the benchmark's best measured N: "
        "50 on NAS-Bench-Graph and tables, 20 on NAS-Bench-201; BENCHMARKS.md N vs K)",
    )
    p.add_argument(
        "--objective",
        default="accuracy",
        help="accuracy, or accuracy,latency / accuracy,params: then the metric is the "
        "hypervolume of the validated front and the Neural Predictor queries soft-Pareto sets",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=positive_int, help="processes (default: all cores)")
    p.add_argument("--out", help="folder for bench.json and bench.png")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from samplenas.bench.harness import compare, plot_curves

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not strategies:
        raise UserError("--strategies names no strategy")
    result = compare(
        args.benchmark,
        strategies,
        args.budget,
        args.runs,
        args.seed,
        args.workers,
        args.space,
        args.npred_n,
        args.objective,
        progress=not args.no_progress,
    )
    if args.out:
        out = Path(args.out)
        atomic_write_json(out / "bench.json", result)
        plot_curves(result, out / "bench.png")
    if args.json:
        print_json(result)
        return 0
    marks = [q for q in (10, 50, 100, 200, 300, 500) if q <= args.budget] or [args.budget]
    extra = [k for k in ("expected", "test") if k in result["curves"]]
    if not result["noisy_queries"]:
        extra = [k for k in extra if k != "expected"]  # equal to valid: not repeated
    shown = "validation" + "".join(f" ({k})" for k in extra)
    what = (
        f"best {shown} accuracy"
        if result["metric"] == "best accuracy"
        else f"{result['metric']} on {shown}"
    )
    print(
        f"{args.benchmark}: {args.runs} runs x {args.budget} queries "
        f"({result['wall_seconds']:.1f} s); {what}, mean ± std"
    )
    for key in ["valid", *extra]:
        print(f"  {key}: {result['curves'][key]}")
    digits = 2 if result["unit"] == "%" and result["metric"] == "best accuracy" else 4
    width = 16 + (digits + 4) * len(extra)
    print(f"{'strategy':<14}" + "".join(f"{f'q={q}':>{width}}" for q in marks))
    for name, c in result["strategies"].items():
        cells = [
            f"{c['valid_mean'][q - 1]:.{digits}f}±{c['valid_std'][q - 1]:.{digits}f}"
            + "".join(f" ({c[f'{k}_mean'][q - 1]:.{digits}f})" for k in extra)
            for q in marks
        ]
        print(f"{name:<14}" + "".join(f"{cell:>{width}}" for cell in cells))
    for name, c in result["strategies"].items():
        if "vae_validity" in c.get("stats", {}):
            st = c["stats"]
            print(
                f"{name}: VAE samples valid {100 * st['vae_validity']:.1f} % "
                f"(mean over runs), random fallbacks {100 * st.get('vae_fallback_rate', 0):.1f} %"
            )
    return 0
