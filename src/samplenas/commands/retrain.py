"""``samplenas retrain``: train one architecture from scratch and report its test top-1."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path
from typing import Any

from samplenas.commands.common import (
    ARCH_HELP,
    add_data_options,
    add_run_dir_option,
    positive_int,
    resolve_arch,
)
from samplenas.errors import UserError
from samplenas.io import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrain",
        help="train one architecture from scratch (augmentation, label smoothing, weight "
        "average) and report its test top-1",
    )
    p.add_argument("--arch", help=ARCH_HELP + "; a Pareto id needs --run")
    p.add_argument(
        "--space", help="the architecture's space (default: the --run's, else the recipe's)"
    )
    add_run_dir_option(
        p,
        help="a trained run: its data (as recorded in it) and its search's Pareto ids",
        required=False,
    )
    p.add_argument(
        "--config",
        help="recipe whose train section retrains (a shipped name such as retrain-fashion, "
        "or a YAML file); its data unless --run",
    )
    p.add_argument("--out", required=True, help="directory of this retraining")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the retraining in --out where it stopped (its recipe and arch)",
    )
    p.add_argument("--seed", type=int, help="random seed of training")
    p.add_argument("--epochs", type=positive_int, help="number of epochs")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="override a recipe value, e.g. --set train.ema_decay=0.999 (repeatable)",
    )
    add_data_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print result.json's object")
    p.set_defaults(func=cmd_retrain)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from samplenas.train.config import merge, parse_overrides

    extra: dict[str, Any] = {}
    if args.epochs is not None:
        extra = merge(extra, {"train": {"epochs": args.epochs}})
    if args.seed is not None:
        extra = merge(extra, {"seed": args.seed})
    if args.data_dir:
        extra = merge(extra, {"data": {"data_dir": args.data_dir}})
    return merge(extra, parse_overrides(args.set))


def resume_command(out: Path) -> str:
    return f"samplenas retrain --resume --out {shlex.quote(str(out))}"


def cmd_retrain(args: argparse.Namespace) -> int:
    from samplenas.train.lock import run_lock

    out = Path(args.out)
    with run_lock(out):
        if args.resume:
            cfg, arch, origin, source = _resumed(args, out)
        else:
            cfg, arch, origin, source = _fresh(args, out)
        return _retrain(args, cfg, out, arch, origin, source)


def _fresh(args: argparse.Namespace, out: Path):
    """The recipe (with the run's data under --run), the arch and where it came from."""
    from samplenas.space import load_space
    from samplenas.train.checkpoint import CHECKPOINT
    from samplenas.train.config import load_config, load_run_config

    if not args.config:
        raise UserError(
            "--config is required: the recipe to retrain with (e.g. --config retrain-fashion "
            "or a YAML file)"
        )
    if not args.arch:
        raise UserError(f"--arch is required: {ARCH_HELP}")
    if (out / CHECKPOINT).exists():
        raise UserError(
            f"directory '{out}' already holds a retraining; add --resume or use another --out"
        )
    cfg = load_config(args.config, _overrides(args))
    run = Path(args.run) if args.run else None
    if run is not None:
        if not (run / "config.yaml").is_file():
            raise UserError(f"'{run}' is not a run directory (no config.yaml)")
        data_dir = {"data": {"data_dir": args.data_dir}} if args.data_dir else None
        run_cfg = load_run_config(run, data_dir)
        space = _space_of_run(args.space, run_cfg.space, run)
        cfg = dataclasses.replace(cfg, data=run_cfg.data, space=space)
    elif args.space:
        cfg = dataclasses.replace(cfg, space=args.space)
    space = load_space(cfg.space)
    weights = None
    if args.arch.isdigit() and run is not None:  # a Pareto id: of the run's current front
        from samplenas.train.runs import load_run_weights

        weights = load_run_weights(run)
    arch = resolve_arch(args.arch, space, weights)
    origin = {"from": args.arch, "run": str(run.resolve()) if run else None}
    return cfg, arch, origin, run


def _space_of_run(given: str | None, recorded: Any, run: Path) -> Any:
    """The run's space (its recorded copy); ``--space`` may only name the same one."""
    from samplenas.space import load_space

    if given and load_space(given).name != load_space(recorded).name:
        raise UserError(
            f"--space '{given}' is not the space of run '{run}' ('{load_space(recorded).name}'); "
            "drop --space, or pass the architecture without --run"
        )
    return recorded


def _resumed(args: argparse.Namespace, out: Path):
    """The recorded recipe and arch; what the command line names must agree with them."""
    from samplenas.space import load_space
    from samplenas.train.config import load_run_config
    from samplenas.train.retrain import read_arch_record

    if args.config:
        raise UserError(
            "--config cannot be combined with --resume: a resumed retraining keeps its own "
            f"recipe ('{out / 'config.yaml'}'); drop --config"
        )
    if not (out / "config.yaml").is_file():
        raise UserError(f"'{out}' is not a retrain directory (no config.yaml); nothing to resume")
    record = read_arch_record(out)
    cfg = load_run_config(out, _overrides(args))
    space = load_space(cfg.space)
    arch = space.validate(record["arch"])
    if args.space and load_space(args.space).name != space.name:
        raise UserError(f"--space '{args.space}' is not '{space.name}', which '{out}' retrains")
    if args.arch and not args.arch.isdigit():
        named = resolve_arch(args.arch, space)
        if named != arch:
            raise UserError(
                f"--arch names another architecture than the one '{out}' retrains "
                f"({record.get('from', ARCH_HELP)}); drop --arch to resume, or use another --out"
            )
    return cfg, arch, {}, None


def _retrain(args, cfg, out: Path, arch, origin: dict[str, Any], source: Path | None) -> int:
    from samplenas.commands.train import run_to_end
    from samplenas.train.retrain import RESULT, Retrainer

    retrainer = Retrainer(
        cfg,
        out,
        arch,
        resume=args.resume,
        progress=not args.no_progress,
        accept_data_change=args.accept_data_change,
        source_run=source,
        origin=origin,
    )
    result = run_to_end(retrainer, resume_command(out))
    if isinstance(result, int):
        return result
    if args.json:
        print_json(result)
    else:
        print(
            f"retrained: test top-1 {result['test_top1']:.2f}% with the {result['weights']} "
            f"weights of epoch {result['best_epoch']} (val top-1 {result['val_top1']:.2f}%), "
            f"{result['epochs']} epochs in {result['wall_s']:.0f} s; {out / RESULT}"
        )
    return 0
