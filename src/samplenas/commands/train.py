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
    add_run_dir_option,
    add_weights_option,
    join_ranks,
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
    p.add_argument(
        "--space", help="search space (shipped name or YAML path) instead of the recipe's"
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
    add_run_dir_option(p, "run directory")
    p.add_argument(
        "--arch",
        action="append",
        help=ARCH_HELP + " (default largest); repeat it to score several (spread over "
        "torchrun's processes)",
    )
    p.add_argument("--split", default="val", choices=["val", "test"])
    add_calib_batches_option(p)
    add_data_options(p)
    add_weights_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_eval)


def _overrides(args: argparse.Namespace) -> dict:
    from samplenas.train.config import merge, parse_overrides

    extra: dict = {}
    if args.space:
        extra = merge(extra, {"space": args.space})
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


def _train(args: argparse.Namespace, cfg, out: Path) -> int:
    from samplenas.train import Trainer

    trainer = Trainer(
        cfg,
        out,
        resume=bool(args.resume),
        progress=not args.no_progress,
        accept_data_change=args.accept_data_change,
    )
    summary = run_to_end(trainer, resume_command(out))
    if isinstance(summary, int):
        return summary
    last = summary["history"][-1] if summary["history"] else {}
    if args.json:
        print_json({"run": str(out), **summary})
    else:
        print(f"run finished: {summary['steps']} steps in {out}")
        for k in ("val_top1_smallest", "val_top1_largest"):
            if k in last:
                print(f"  {k}: {last[k]:.2f}%")
    return 0


def run_to_end(trainer, resume_cmd: str) -> dict | int:
    """``trainer.run()``'s result on the main process; otherwise the exit code: 0 on other
    ranks, 1 after divergence, 130 after Ctrl-C, each said with what the user can do next
    (``resume_cmd`` continues the run)."""
    from samplenas.train import TrainingDiverged
    from samplenas.train.distributed import shutdown

    try:
        summary = trainer.run()
    except TrainingDiverged as exc:  # every rank says so: each stopped on its own
        print(
            f"samplenas: training diverged ({exc}); {_after_divergence(trainer)}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        if trainer.dist.is_main:
            print(
                f"samplenas: interrupted at step {trainer.step}; "
                f"{_after_interrupt(trainer, resume_cmd)}",
                file=sys.stderr,
            )
        return 130
    finally:
        shutdown(trainer.dist)
    return summary if trainer.dist.is_main else 0


def resume_command(out: Path) -> str:
    """The exact command that continues the run in ``out``."""
    return f"samplenas train --resume {shlex.quote(str(out))}"


def _after_interrupt(trainer, resume_cmd: str) -> str:
    """What the user can do after Ctrl-C: the command to resume, or that there is none."""
    if trainer.saved_step is None:
        return (
            f"no checkpoint was written yet (every {trainer.cfg.checkpoint.every_steps} steps "
            "and every epoch), so there is nothing to resume; run the same command again"
        )
    return f"the checkpoint of step {trainer.saved_step} is kept; continue with: {resume_cmd}"


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
    """One architecture, or several: under torchrun every rank scores its share and rank 0
    alone prints."""
    from samplenas.search.archive import Archive
    from samplenas.search.parallel import evaluate_many
    from samplenas.search.runner import expected_mflops

    info = join_ranks()
    run = open_run(args, writable=info.is_main)
    texts = args.arch or ["largest"]
    archs = [resolve_arch(text, run.space, run) for text in texts]
    calib, loader = run.calibration(args.calib_batches), run.eval_loader(args.split)

    def measure(arch) -> dict:
        result = run.score(arch, calib, loader)
        cost = run.space.cost(arch)
        return {
            "top1": result["top1"],
            "loss": result["loss"],
            "mflops": cost.mflops,
            "params_m": cost.params_m,
            "split": args.split,
        }

    cache = Archive() if info.is_main else None  # in memory: eval keeps no scores
    rows = evaluate_many(archs, measure, cache, info, expected_mflops(run.space))
    if not info.is_main:
        return 0
    if args.json:
        print_json(
            rows[0]
            if len(rows) == 1
            else [{"arch": t, **r} for t, r in zip(texts, rows, strict=True)]
        )
        return 0
    for text, out in zip(texts, rows, strict=True):
        print(
            (f"{text}: " if len(rows) > 1 else "")
            + f"top-1 {out['top1']:.2f}%  loss {out['loss']:.4f}  {out['mflops']:.2f} MFLOPs  "
            f"{out['params_m']:.3f} M params  ({args.split} split, BN calibrated, "
            f"{run.weights} weights)"
        )
    return 0
