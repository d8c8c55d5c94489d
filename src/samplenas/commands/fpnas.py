"""``samplenas fpnas``: probabilistic NAS (FP-NAS, appendix Algorithm 1) on a supernet."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from samplenas.commands.common import add_data_options, positive_int
from samplenas.commands.train import lock_run_dir, run_to_end
from samplenas.errors import UserError
from samplenas.io import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fpnas",
        help="FP-NAS: learn a distribution over architectures while training the supernet",
    )
    p.add_argument(
        "--config",
        help="recipe: a shipped name (fpnas-tiny, fpnas-fashion) or a YAML file; with "
        "--resume optional (the run keeps its own)",
    )
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument(
        "--sampling",
        metavar="as:LAMBDA|fs:K|vae[:K]",
        help="adaptive K = max(1, round(LAMBDA * entropy)) or a fixed K (fpnas.sampling); "
        "vae: the K come from a VAE (VAENAS Algorithm 3; options in fpnas.vae)",
    )
    p.add_argument(
        "--distribution",
        metavar="factorized|joint|mixed:THETA",
        help="architecture distribution; mixed: factorized, joint after epoch THETA",
    )
    p.add_argument(
        "--target-mflops", type=float, help="hinge-cost target on MFLOPs (fpnas.target_mflops)"
    )
    p.add_argument(
        "--latency",
        metavar="TABLE",
        help="a 'samplenas latency build' table of this space (fpnas.latency_table)",
    )
    p.add_argument(
        "--target-latency-ms",
        type=float,
        help="hinge-cost target on the table's latency (fpnas.target_latency_ms)",
    )
    p.add_argument("--epochs", type=positive_int, help="search epochs (train.epochs)")
    p.add_argument("--seed", type=int, help="random seed (the data split has its own)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_data_options(p)
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="override a recipe value, e.g. --set fpnas.beta=0.5 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print result.json's object")
    p.set_defaults(func=cmd_fpnas)


def _overrides(args: argparse.Namespace) -> dict:
    from samplenas.train.config import merge, parse_overrides

    flags = {
        ("fpnas", "sampling"): args.sampling,
        ("fpnas", "distribution"): args.distribution,
        ("fpnas", "target_mflops"): args.target_mflops,
        ("fpnas", "latency_table"): str(Path(args.latency).resolve()) if args.latency else None,
        ("fpnas", "target_latency_ms"): args.target_latency_ms,
        ("train", "epochs"): args.epochs,
        ("data", "data_dir"): args.data_dir,
    }
    extra: dict = {}
    for (section, key), value in flags.items():
        if value is not None:
            extra = merge(extra, {section: {key: value}})
    if args.seed is not None:
        extra["seed"] = args.seed
    return merge(extra, parse_overrides(args.set))


def cmd_fpnas(args: argparse.Namespace) -> int:
    from samplenas.train import load_config
    from samplenas.train.config import load_run_config

    out = Path(args.out)
    if args.resume and not (out / "config.yaml").is_file():
        raise UserError(f"'{out}' is not a run directory (no config.yaml); nothing to resume")
    if not args.resume and not args.config:
        raise UserError("--config is required for a new search (e.g. --config fpnas-tiny)")
    with lock_run_dir(out):
        if args.resume:  # the run's own recipe; a --config given must agree with it
            cfg = (load_config if args.config else load_run_config)(
                args.config or out, _overrides(args)
            )
        else:
            if (out / "checkpoint.pt").exists():
                raise UserError(
                    f"run directory '{out}' already holds a run; add --resume or use another --out"
                )
            cfg = load_config(args.config, _overrides(args))
        return _search(args, cfg, out)


def _search(args: argparse.Namespace, cfg, out: Path) -> int:
    from samplenas.train.fpnas import RESULT, FPNASTrainer

    trainer = FPNASTrainer(
        cfg,
        out,
        resume=args.resume,
        progress=not args.no_progress,
        accept_data_change=args.accept_data_change,
    )
    result = run_to_end(trainer, f"samplenas fpnas --out {shlex.quote(str(out))} --resume")
    if isinstance(result, int):
        return result
    if args.json:
        print_json(result)
    else:
        last = result["epochs"][-1] if result["epochs"] else {}
        top1 = f", val top-1 {last['val_top1']:.2f}%" if last.get("val_top1") is not None else ""
        print(
            f"most probable architecture: {result['mflops']:.4g} MFLOPs, "
            f"{result['params_m']:.4g} M params{top1}; {result['samples_total']} architectures "
            f"sampled in {result['wall_s']:.0f} s; written to {out / RESULT}"
        )
        print(f"  {json.dumps(result['arch'], separators=(',', ':'))}")
    return 0
