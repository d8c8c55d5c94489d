"""The AttentiveNAS sampling study at our scale (paper Figures 5 and 6), resumable.

Run: python benchmarks/attentive_study.py [--seeds 0 1 2] [--steps 860] [--stage all]
Writes runs/study/<strategy>-s<seed>/ (gitignored) and, from them,
benchmarks/results/attentive_study.json, attentive_fig5.png and attentive_fig6.png.

Every strategy trains the same recipe (configs/fashion.yaml, shortened to --steps
optimizer steps) with a different sampler for the two attentive slots: uniform,
BestUp-3 / WorstUp-3 (loss), BestUp-50 / WorstUp-50 (acc). The -acc samplers score
candidates with a random-forest predictor fitted on sub-networks of the uniform run of
the same seed. Figure 5: top-1 of ≥ 200 FLOPs-stratified random sub-networks per run;
Figure 6: best top-1 per FLOPs bucket (the evaluated Pareto front) minus uniform's.
Every stage skips what is already on disk, so the study can span sessions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "study"
RESULTS = ROOT / "benchmarks" / "results"
STRATEGIES = ["uniform", "bestup-3-loss", "worstup-3-loss", "bestup-50-acc", "worstup-50-acc"]


def cli(*argv: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "samplenas.cli", *argv, "--no-progress"], check=True, cwd=ROOT
    )


def steps_recipe(steps: int) -> list[str]:
    """configs/fashion.yaml cut to ``steps`` optimizer steps (same schedule shape)."""
    per_epoch = 55_000 // 128
    subset = min(55_000, steps * 128) if steps < per_epoch else None
    epochs = max(1, round(steps / per_epoch))
    out = ["--epochs", str(epochs), "--set", "eval_every_epochs=0"]
    if subset:
        out += ["--set", f"data.train_subset={subset}"]
    return out


def train(strategy: str, seed: int, steps: int) -> Path:
    run = RUNS / f"{strategy}-s{seed}"
    if (run / "run.json").is_file():
        return run
    if (run / "checkpoint.pt").is_file():
        cli("train", "--resume", str(run))
        return run
    extra = []
    if strategy.endswith("-acc"):
        predictor = fit_predictor(seed, steps)
        extra = ["--set", f"sampler.options.predictor={predictor}"]
    cli(
        "train",
        "--config",
        "configs/fashion.yaml",
        "--out",
        str(run),
        "--seed",
        str(seed),
        "--sampler",
        strategy,
        *steps_recipe(steps),
        *extra,
    )
    return run


def fit_predictor(seed: int, steps: int) -> Path:
    base = train("uniform", seed, steps)
    path = base / "predictor" / "forest.npz"
    if not path.is_file():
        cli(
            "predictor",
            "fit",
            "--run",
            str(base),
            "--n",
            "512",
            "--val-images",
            "2000",
            "--calib-batches",
            "4",
            "--seed",
            str(seed),
        )
    return path


def sample_subnets(run: Path, n: int) -> list[dict]:
    """Top-1 of n sub-networks spread evenly over the FLOPs buckets (same archs for all runs)."""
    out = run / "study-subnets.json"
    if out.is_file():
        return json.loads(out.read_text())
    from samplenas.samplers import FlopsConditionedSampler
    from samplenas.train.evaluate import evaluate_subnet
    from samplenas.train.runs import load_run

    r = load_run(run)
    sampler = FlopsConditionedSampler(r.space, seed=1234)
    prior = sampler.prior
    buckets = np.flatnonzero(prior.prior > 1e-4)
    targets = np.resize(buckets, n)
    archs = sampler.sample_in_buckets(targets)
    calib = r.calibration(4)
    val = r.eval_loader("val", 2000)
    rows = []
    for arch in archs:
        m = evaluate_subnet(r.supernet, arch, calib, val, r.cfg.train.channels_last)
        rows.append({"arch": arch.to_json(), "mflops": r.space.mflops(arch), "val_top1": m["top1"]})
    out.write_text(json.dumps(rows))
    return rows


def search(run: Path) -> list[dict]:
    if not (run / "search" / "pareto.json").is_file():
        cli(
            "search",
            "--run",
            str(run),
            "--population",
            "64",
            "--mutations",
            "32",
            "--crossovers",
            "32",
            "--iterations",
            "4",
            "--val-images",
            "2000",
            "--calib-batches",
            "4",
        )
    return json.loads((run / "search" / "pareto.json").read_text())["front"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=860)
    ap.add_argument("--subnets", type=int, default=210)
    ap.add_argument("--strategies", nargs="+", default=STRATEGIES)
    args = ap.parse_args()
    results: dict = {"steps": args.steps, "seeds": args.seeds, "runs": {}}
    for seed in args.seeds:
        for strategy in args.strategies:
            run = train(strategy, seed, args.steps)
            results["runs"][f"{strategy}-s{seed}"] = {
                "strategy": strategy,
                "seed": seed,
                "subnets": sample_subnets(run, args.subnets),
                "front": search(run),
            }
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / "attentive_study.json").write_text(json.dumps(results, indent=1))
    plot(results)


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"].values()
    strategies = [s for s in STRATEGIES if any(r["strategy"] == s for r in runs)]
    edges = np.quantile(
        [row["mflops"] for r in runs for row in r["subnets"]], [0, 0.25, 0.5, 0.75, 1]
    )
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), sharey=False)
    for b, ax in enumerate(axes):
        data = []
        for s in strategies:
            data.append(
                [
                    row["val_top1"]
                    for r in runs
                    if r["strategy"] == s
                    for row in r["subnets"]
                    if edges[b] <= row["mflops"] <= edges[b + 1]
                ]
            )
        ax.boxplot(data, labels=[s.replace("-", "\n", 1) for s in strategies], showfliers=False)
        ax.set_title(f"{edges[b]:.1f}-{edges[b + 1]:.1f} MFLOPs")
        ax.tick_params(axis="x", labelsize=7)
    axes[0].set_ylabel("val top-1 (%)")
    fig.tight_layout()
    fig.savefig(RESULTS / "attentive_fig5.png", dpi=110)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for s in strategies[1:]:
        gains = []
        for seed in results["seeds"]:
            base = results["runs"].get(f"uniform-s{seed}")
            mine = results["runs"].get(f"{s}-s{seed}")
            if not base or not mine:
                continue
            gains.append(
                [
                    front_at(mine["front"], lo, hi) - front_at(base["front"], lo, hi)
                    for lo, hi in zip(edges[:-1], edges[1:], strict=True)
                ]
            )
        if gains:
            g = np.array(gains)
            mids = (edges[:-1] + edges[1:]) / 2
            ax.errorbar(mids, g.mean(0), yerr=g.std(0), capsize=3, marker="o", label=s)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("MFLOPs")
    ax.set_ylabel("Pareto top-1 gain over uniform (pp)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "attentive_fig6.png", dpi=110)


def front_at(front: list[dict], lo: float, hi: float) -> float:
    inside = [m["val_top1"] for m in front if m["mflops"] <= hi]
    return max(inside) if inside else float("nan")


if __name__ == "__main__":
    main()
