"""``samplenas predictor ...``: accuracy predictors (``fit`` on a trained supernet run)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from samplenas.commands.common import (
    add_evaluation_options,
    add_num_archs_option,
    add_run_dir_option,
    join_ranks,
    open_cache,
    open_run,
)
from samplenas.errors import UserError
from samplenas.io import atomic_write_json, print_json


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("predictor", help="accuracy predictors")
    actions = group.add_subparsers(dest="action", required=True, parser_class=type(group))
    p = actions.add_parser(
        "fit",
        help="evaluate n random sub-networks of a run, fit the "
        "AttentiveNAS random forest, report Kendall tau",
    )
    add_run_dir_option(p)
    add_num_archs_option(p, 1024, "sub-networks to evaluate (default 1024)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_evaluation_options(p)
    p.set_defaults(func=cmd_fit)

    p = actions.add_parser("cv", help="k-fold cross-validated MSE and Kendall tau of predictors")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--benchmark", help="nas-bench-graph:DATASET or table:PATH")
    src.add_argument("--data", help="a dataset.json written by 'predictor fit'")
    p.add_argument("--space", help="space of --data or of a table that does not name one")
    p.add_argument(
        "--predictors", default="gcn,rf,mlp", help="comma-separated: gcn, gcn-two-stage, rf, mlp"
    )
    add_num_archs_option(p, 172, "architectures drawn from a benchmark")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_cv)


def cmd_fit(args: argparse.Namespace) -> int:
    """Under torchrun every rank evaluates its share; rank 0 alone fits, writes and prints."""
    from tqdm import tqdm

    from samplenas.predictors import RandomForestPredictor, kendall_tau, tau_ceiling
    from samplenas.search.parallel import Throughput, evaluate_many, throughput_line
    from samplenas.search.runner import expected_mflops

    if args.n < 4:
        raise UserError("--num-archs must be at least 4 (half to fit, half to test)")
    info = join_ranks()
    run = open_run(args, writable=info.is_main)
    if args.n > run.space.size():  # distinct samples: more than the space holds never end
        raise UserError(
            f"--num-archs {args.n} is more than the {run.space.size()} architectures of space "
            f"'{run.space.name}'; pass --num-archs {run.space.size()} or fewer"
        )
    out = Path(args.run) / "predictor"
    # distinct uniform samples, the same list on every resume
    archs = run.space.sample_distinct(np.random.default_rng(args.seed), args.n)
    calib = run.calibration(args.calib_batches)
    val = run.eval_loader("val", args.val_images)
    measured = run.fingerprint(calib, "val", val)
    # resumable: archs evaluated the same way are kept
    archive = open_cache(out / "dataset.jsonl", measured, info)

    def measure(arch) -> dict:
        r = run.score(arch, calib, val, halves=True)
        return {
            "val_top1": r["top1"],
            "val_top1_a": r["top1_a"],
            "val_top1_b": r["top1_b"],
            "mflops": run.space.cost(arch).mflops,
        }

    throughput = Throughput(devices=info.world_size)
    bar = tqdm(total=len(archs), disable=args.no_progress or not info.is_main, unit="arch")
    rows = evaluate_many(
        archs,
        measure,
        archive,
        info,
        expected_mflops(run.space),
        throughput,
        on_round=lambda new: bar.update(len(new)),
    )
    bar.close()
    if not info.is_main:
        return 0
    y = np.array([row["val_top1"] for row in rows])
    half = len(archs) // 2
    held_out = RandomForestPredictor(run.space, seed=args.seed).fit(archs[:half], y[:half])
    tau = kendall_tau(y[half:], held_out.predict(archs[half:]))
    final = RandomForestPredictor(run.space, seed=args.seed).fit(archs, y)
    final.save(out / "forest.npz")
    atomic_write_json(
        out / "dataset.json",
        [{"arch": a.to_json(), **row} for a, row in zip(archs, rows, strict=True)],
    )
    result = {
        "n": len(archs),
        "kendall_tau": tau,
        "fit_on": half,
        "tested_on": len(archs) - half,
        "predictor": str(out / "forest.npz"),
        "dataset": str(out / "dataset.json"),
        "val_top1_range": [float(y.min()), float(y.max())],
        "new_evaluations": throughput.measured,
        **throughput.report(),
        "fingerprint": measured,
    }
    if all("val_top1_a" in row for row in rows):  # archives written before halves lack them
        a = [row["val_top1_a"] for row in rows]
        b = [row["val_top1_b"] for row in rows]
        result["split_half_tau"] = kendall_tau(a, b)
        result["tau_ceiling"] = tau_ceiling(a, b)
        every = len(run.data.split("val"))
        result["tau_ceiling_all_val"] = tau_ceiling(a, b, 2 * every / len(val.split))
    # the kept report names its files relative to itself, so the folder can be moved
    atomic_write_json(
        out / "fit.json", {**result, "predictor": "forest.npz", "dataset": "dataset.json"}
    )
    if args.json:
        print_json(result)
    else:
        print(
            f"Kendall tau {tau:.3f} on {len(archs) - half} held-out sub-networks "
            f"(random forest, 100 trees, depth 15, fit on {half}); predictor: {out / 'forest.npz'}"
        )
        rate = throughput_line(result)
        print(
            f"{throughput.measured} of {len(archs)} sub-networks evaluated now"
            + (f", {rate}" if rate else " (the rest were in the cache)")
        )
        if "tau_ceiling" in result:
            images, projected = "validation split", ""
            if args.val_images:
                images = f"{args.val_images} validation images"
                projected = f" ({result['tau_ceiling_all_val']:.3f} with all validation images)"
            print(
                f"measurement noise: the two halves of the {images} agree with tau "
                f"{result['split_half_tau']:.3f}; a perfect predictor would score about "
                f"{result['tau_ceiling']:.3f}{projected}"
            )
    return 0


def cmd_cv(args: argparse.Namespace) -> int:
    import json

    from samplenas.predictors import kendall_tau
    from samplenas.predictors.registry import make_predictor
    from samplenas.space import load_space

    if args.folds < 2:
        raise UserError("--folds must be at least 2")
    rng = np.random.default_rng(args.seed)
    if args.benchmark:
        from samplenas.bench import load_benchmark

        table = load_benchmark(args.benchmark, args.space)
        if not 2 * args.folds <= args.n <= len(table.archs):
            raise UserError(f"--num-archs must be between {2 * args.folds} and {len(table.archs)}")
        idx = rng.choice(len(table.archs), args.n, replace=False)
        space, archs, y = table.space, [table.archs[i] for i in idx], table.valid[idx]
        source = args.benchmark
    else:
        if not args.space:
            raise UserError("--data needs --space (the space its architectures belong to)")
        space = load_space(args.space)
        try:
            rows = json.loads(Path(args.data).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read predictor data '{args.data}': {exc}") from exc
        archs, y = _labelled_rows(rows, space, args.data)
        source = args.data
    folds = rng.permutation(len(archs)) % args.folds
    result = {"source": source, "n": len(archs), "folds": args.folds, "predictors": {}}
    for name in [p.strip() for p in args.predictors.split(",") if p.strip()]:
        pred = np.zeros(len(archs))
        for k in range(args.folds):
            train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
            model = make_predictor(name, space, seed=args.seed + k)
            model.fit([archs[i] for i in train], y[train])
            pred[test] = model.predict([archs[i] for i in test])
        result["predictors"][name] = {
            "mse": float(np.mean((pred - y) ** 2)),
            "kendall_tau": kendall_tau(y, pred),
        }
    if args.json:
        print_json(result)
        return 0
    print(f"{source}: {len(archs)} architectures, {args.folds}-fold cross-validation")
    for name, r in result["predictors"].items():
        print(f"  {name:<14} MSE {r['mse']:.3g}   Kendall tau {r['kendall_tau']:.3f}")
    return 0


def _labelled_rows(rows: object, space, path: str) -> tuple[list, np.ndarray]:
    """Archs and val_top1 labels of a dataset.json, or UserError naming the bad row."""
    if not isinstance(rows, list) or len(rows) < 2:
        raise UserError(f"predictor data '{path}' must be a JSON list of at least two rows")
    archs, y = [], []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "arch" not in row or "val_top1" not in row:
            raise UserError(f"row {i} of '{path}' needs the keys 'arch' and 'val_top1'")
        label = row["val_top1"]
        if isinstance(label, bool) or not isinstance(label, int | float):
            raise UserError(f"row {i} of '{path}': 'val_top1' must be a number")
        archs.append(space.validate(row["arch"]))
        y.append(float(label))
    return archs, np.array(y)
