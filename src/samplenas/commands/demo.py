"""``samplenas demo``: the main job on the embedded default, end to end.

Fashion-MNIST, the ``attentive-fashion`` space, sandwich-rule supernet training with
in-place distillation, evolutionary search on the search-validation split, the Pareto front
measured on the held-out test set, a plot and exported models. Every stage resumes if
interrupted. The recipe (``samplenas/recipes/demo.yaml``) and the search size were chosen
by measurement to fit about ten minutes on a 2-core CPU (BENCHMARKS.md, "The demo").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from samplenas.commands.common import non_negative_int, positive_int

# The search's size, measured against its minutes (BENCHMARKS.md, "The demo").
POPULATION, ITERATIONS, VAL_IMAGES = 16, 3, 1000
# What the full recipe reaches, for the one-line comparison the demo ends with
# (BENCHMARKS.md, "The default run on Fashion-MNIST": benchmarks/default_run.py).
FULL_RECIPE = (
    "fashion recipe (12 epochs, 54 min here): largest 92.37 %, smallest 89.75 % test top-1"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job on the embedded default (~10 min on CPU)")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument(
        "--config", default="demo", help="training recipe: a shipped name or a YAML file (demo)"
    )
    p.add_argument("--data-dir", help="folder holding Fashion-MNIST's IDX files")
    p.add_argument(
        "--population",
        type=positive_int,
        default=POPULATION,
        help=f"search's initial population ({POPULATION})",
    )
    p.add_argument(
        "--iterations",
        type=non_negative_int,
        default=ITERATIONS,
        help=f"search's evolution rounds ({ITERATIONS})",
    )
    p.add_argument(
        "--val-images",
        type=positive_int,
        default=VAL_IMAGES,
        help=f"search-validation images each candidate is scored on ({VAL_IMAGES})",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from samplenas.cli import main
    from samplenas.train import load_config

    cfg = load_config(args.config)  # a bad recipe stops here, before any work
    out = Path(args.out)
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    quiet = ["--no-progress"] if args.no_progress else []
    start = time.perf_counter()
    if (out / "run.json").is_file():
        _say(f"stage 1: supernet already trained in {out}")
    else:
        resume = (out / "checkpoint.pt").is_file()
        ramp = cfg.train.distill_warmup_epochs
        distill = "in-place distillation"
        if ramp:
            distill += f" ramped in from labels over {ramp:g} epoch{'' if ramp == 1 else 's'}"
        _say(
            f"stage 1: training the supernet (sandwich rule, {distill}, "
            f"{cfg.sampler.name} sampling)" + (" — resuming" if resume else "")
        )
        argv = (
            ["train", "--resume", str(out)]
            if resume
            else ["train", "--config", args.config, "--out", str(out)]
        )
        code = main(argv + data + quiet)
        if code:
            return code
    # the training's own wall time across resumes (run.json), not this invocation's
    t_train = float(json.loads((out / "run.json").read_text()).get("train_seconds", 0.0))
    _say(
        "stage 2: evolutionary search (fitness: top-1 on the search-validation split after "
        "BN calibration)"
    )
    half = max(args.population // 2, 1)
    code = main(
        [
            "search",
            "--run-dir",
            str(out),
            "--population",
            str(args.population),
            "--mutations",
            str(half),
            "--crossovers",
            str(half),
            "--iterations",
            str(args.iterations),
            "--val-images",
            str(args.val_images),
            *data,
            *quiet,
        ]
    )
    if code:
        return code
    front = json.loads((out / "search" / "pareto.json").read_text())["front"]
    picks = sorted({0, len(front) // 2, len(front) - 1})
    _say(f"exporting Pareto members {picks} (smallest, middle, most accurate)")
    for i in picks:
        code = main(
            [
                "export",
                "--run-dir",
                str(out),
                "--arch",
                str(i),
                "--out",
                str(out / "models" / f"pareto-{i}"),
                *data,
            ]
        )
        if code:
            return code
    total = time.perf_counter() - start
    _say(
        f"Pareto front of one supernet, no retraining (test = held-out {cfg.data.dataset} test set)"
    )
    print(f"{'id':>3} {'MFLOPs':>8} {'params (M)':>10} {'val top-1':>10} {'test top-1':>11}")
    for m in front:
        print(
            f"{m['id']:3d} {m['mflops']:8.2f} {m['params_m']:10.3f} {m['val_top1']:10.2f} "
            f"{m['test_top1']:11.2f}"
        )
    best = max(front, key=lambda m: m["val_top1"])  # chosen on validation, reported on test
    print(
        f"\nbest:    {best['test_top1']:.2f} % test top-1 at {best['mflops']:.1f} MFLOPs "
        f"(id {best['id']}) after {t_train / 60:.1f} min of training; the full {FULL_RECIPE}"
    )
    print(f"run:     {out}")
    print(f"plot:    {out / 'search' / 'pareto.png'}")
    print(f"front:   {out / 'search' / 'pareto.json'}")
    formats = "torch.export .pt2, TorchScript, ONNX when onnx is installed, state dict, arch"
    print(f"models:  {out / 'models'} ({formats})")
    print(f"time:    {t_train / 60:.1f} min training, {total / 60:.1f} min in all")
    return 0
