"""``samplenas train`` (stage 1) and ``samplenas eval`` (one sub-network, BN-calibrated)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from contextlib import nullcontext
from pathlib import Path

from samplenas.commands.common import (
    ARCH_HELP,
    add_calib_batches_option,
    add_data_options,
    add_weights_option,
    open_run,
    positive_int,
    resolve_arch,
)
from samplenas.errors import UserError
from samplenas.io import print_json


def register(sub: argparse._SubParsersAction) -> None:
    from samplenas.train.config import recipe_names

    p = sub.add_parser("train", help="train a supernet (sandwich rule, in-place distillation)")
    p.add_argument(
        "--config",
        help=f"recipe: a shipped name ({', '.join(recipe_names())}) or a YAML file; "
        "default: fashion",
    )
    p.add_argument("--out", help="run directory (default runs/<config name>)")
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR where it stopped (may change only --epochs, "
        "checkpoint/eval cadence, threads, --data-dir)",
    )
    p.add_argument("--sampler", help="sampler name, e.g. uniform or flops-uniform")
    p.add_argument("--epochs", type=positive_int, help="number of epochs")
    add_data_options(p)
    p.add_argument(
        "--seed",
        type=int,
        help="random seed of training (the data split has its own, data.split_seed)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="override a recipe value, e.g. --set train.lr=0.2 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval", help="top-1 of one sub-network of a trained run (after BN calibration)"
    )
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--arch", default="largest", help=ARCH_HELP + " (default largest)")
    p.add_argument("--split", default="val", choices=["val", "test"])
    add_calib_batches_option(p)
    add_data_options(p)
    add_weights_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_eval)


def _overrides(args: argparse.Namespace) -> dict:
    from samplenas.train.config import merge, parse_overrides

    extra: dict = {}
    if args.sampler:
        extra = merge(extra, {"sampler": {"name": args.sampler}})
    if args.epochs is not None:
        extra = merge(extra, {"train": {"epochs": args.epochs}})
    if args.data_dir:
        extra = merge(extra, {"data": {"data_dir": args.data_dir}})
    if args.seed is not None:
        extra = merge(extra, {"seed": args.seed})
    return merge(extra, parse_overrides(args.set))


def cmd_train(args: argparse.Namespace) -> int:
    from samplenas.train import load_config
    from samplenas.train.config import DEFAULT_RECIPE, load_run_config

    if args.resume:
        out = Path(args.resume)
        if args.config:
            raise UserError(
                "--config cannot be combined with --resume: a resumed run keeps its own "
                f"recipe ('{out / 'config.yaml'}'); drop --config"
            )
        if not (out / "config.yaml").is_file():
            raise UserError(f"'{out}' is not a run directory (no config.yaml); nothing to resume")
    else:
        cfg = load_config(args.config, _overrides(args))
        out = Path(args.out or f"runs/{Path(args.config or DEFAULT_RECIPE).stem}")
    with lock_run_dir(out):
        if args.resume:
            cfg = load_run_config(out, _overrides(args))
        elif (out / "checkpoint.pt").exists():
            raise UserError(
                f"run directory '{out}' already holds a run; use --resume {out} or another --out"
            )
        return _train(args, cfg, out)


def lock_run_dir(out: Path):
    """One trainer per directory; under torchrun rank 0 holds the lock for all ranks."""
    from samplenas.train.lock import run_lock

    return run_lock(out) if int(os.environ.get("RANK", "0")) == 0 else nullcontext()


def run_to_end(trainer, resume: str) -> tuple[int, dict | None]:
    """``trainer.run()`` with divergence and Ctrl-C turned into an exit status and one
    line saying what is kept (``resume``: the command that continues the run)."""
    from samplenas.train import TrainingDiverged

    try:
        return 0, trainer.run()
    except TrainingDiverged as exc:  # every rank says so: each stopped on its own
        print(
            f"samplenas: training diverged ({exc}); {_after_divergence(trainer)}",
            file=sys.stderr,
        )
        return 1, None
    except KeyboardInterrupt:
        if trainer.dist.is_main:
            print(
                f"samplenas: interrupted at step {trainer.step}; "
                f"{_after_interrupt(trainer, resume)}",
                file=sys.stderr,
            )
        return 130, None
    finally:
        from samplenas.train.distributed import shutdown

        shutdown(trainer.dist)


def _train(args: argparse.Namespace, cfg, out: Path) -> int:
    from samplenas.train import Trainer

    trainer = Trainer(
        cfg,
        out,
        resume=bool(args.resume),
        progress=not args.no_progress,
        accept_data_change=args.accept_data_change,
    )
    code, summary = run_to_end(trainer, resume_command(out))
    if code or not trainer.dist.is_main:
        return code
    last = summary["history"][-1] if summary["history"] else {}
    if args.json:
        print_json({"run": str(out), **summary})
    else:
        print(f"run finished: {summary['steps']} steps in {out}")
        for k in ("val_top1_smallest", "val_top1_largest"):
            if k in last:
                print(f"  {k}: {last[k]:.2f}%")
    return 0


def resume_command(out: Path) -> str:
    """The exact command that continues the run in ``out``."""
    return f"samplenas train --resume {shlex.quote(str(out))}"


def _after_interrupt(trainer, resume: str) -> str:
    """What the user can do after Ctrl-C: the command to resume, or that there is none."""
    if trainer.saved_step is None:
        return (
            f"no checkpoint was written yet (every {trainer.cfg.checkpoint.every_steps} steps "
            "and every epoch), so there is nothing to resume; run the same command again"
        )
    return f"the checkpoint of step {trainer.saved_step} is kept; continue with: {resume}"


def _after_divergence(trainer) -> str:
    """A diverged run cannot be resumed as it was (it would diverge again): say what can."""
    fix = "lower train.lr or raise train.warmup_epochs (--set train.lr=...)"
    if trainer.saved_step is None:
        return (
            "it diverged before its first checkpoint, so there is nothing to resume; "
            f"{fix} and start again"
        )
    return (
        f"the last good checkpoint (step {trainer.saved_step}) is kept in '{trainer.out}'; "
        f"{fix} and start a new run with another --out"
    )


def cmd_eval(args: argparse.Namespace) -> int:
    run = open_run(args)
    arch = resolve_arch(args.arch, run.space, run)
    result = run.evaluate(arch, args.split, args.calib_batches)
    cost = run.space.cost(arch)
    out = {
        "top1": result["top1"],
        "loss": result["loss"],
        "mflops": cost.mflops,
        "params_m": cost.params_m,
        "split": args.split,
    }
    if args.json:
        print_json(out)
    else:
        print(
            f"top-1 {out['top1']:.2f}%  loss {out['loss']:.4f}  {cost.mflops:.2f} MFLOPs  "
            f"{cost.params_m:.3f} M params  ({args.split} split, BN calibrated, "
            f"{run.weights} weights)"
        )
    return 0
