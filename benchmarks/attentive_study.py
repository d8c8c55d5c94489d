"""The AttentiveNAS sampling study at our scale (paper Figures 5 and 6), resumable.

Run: python benchmarks/attentive_study.py [--seeds 0 1 2] [--steps 430] [--subnets 70]
Trains in runs/study/<strategy>-s<seed>/ (gitignored, resumable) and keeps each finished
(strategy, seed) unit in benchmarks/results/attentive_study/ (committed), so the study
spans sessions even when runs/ does not survive; from the units it writes
benchmarks/results/attentive_study.json, attentive_fig5.png and attentive_fig6.png.

Every strategy trains the same recipe (the `fashion` recipe with the paper's 2 sampled
sub-networks a step, shortened to --steps optimizer steps) with a different sampler for
the two attentive slots: uniform, BestUp-3 / WorstUp-3 (loss), BestUp-50 / WorstUp-50
(acc). The -acc samplers score candidates with a random-forest predictor fitted on
sub-networks of the uniform run of the same seed (its data and forest are kept in the
units directory too). Figure 5: top-1 of FLOPs-stratified random sub-networks (70 per
run, 210 per strategy over three seeds); Figure 6: per FLOPs bucket, the held-out test
top-1 of the front member with the best validation top-1 at or under the bucket's upper
edge (selected on validation, reported on test), minus uniform's. Sized to about three
hours of the 2-core host (one epoch of training per run, sub-networks scored on 1,000
validation images after calibrating BN on 4 x 256).

The attentive samplers draw each slot's candidates from the FLOPs prior (the sampler now
called ``flops-prior``; it was named ``flops-uniform`` when the study ran).
``--report`` re-aggregates the committed units (no training) and rewrites the table in
BENCHMARKS.md.

``vae`` (VAENAS Algorithm 2, ``--sampler vae`` with its default options) joined later
(issue "VAENAS", item 5): ``--strategies vae`` trains its units with the same pinned
recipe, and the study's search runs on them as on every sampler; seed 0's run also gets
the search seeded with VAE samples (``search --seed-from vae``, on a copy of the run).
Its units were trained with one torch thread (``STUDY_THREADS=1``) beside other jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from md_tables import replace_table
from scipy.stats import ttest_1samp

from samplenas.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "study"
RESULTS = ROOT / "benchmarks" / "results"
UNITS = RESULTS / "attentive_study"
EVAL = ["--val-images", "1000", "--calib-batches", "4"]
STRATEGIES = [
    "uniform",
    "bestup-3-loss",
    "worstup-3-loss",
    "bestup-50-acc",
    "worstup-50-acc",
    "vae",
]
DISPLAY = {
    "uniform": "uniform",
    "bestup-3-loss": "BestUp-3 (loss)",
    "worstup-3-loss": "WorstUp-3 (loss)",
    "bestup-50-acc": "BestUp-50 (acc)",
    "worstup-50-acc": "WorstUp-50 (acc)",
    "vae": "VAE (VAENAS Algorithm 2)",
}
# the recipe the committed units were trained with; the fashion recipe has moved on since
STUDY_NUM_RANDOM = 2  # the paper's sandwich: largest + 2 sampled + smallest
STUDY_WARMUP_SHARE = 0.5 / 9  # warm-up epochs per epoch of the schedule
STUDY_LOSS_ESTIMATOR = "ce"  # -loss samplers scored candidates by CE on labels (now: train)
STUDY_CALIBRATION_SPLIT = "val"  # BN calibrated on validation images (now: train)


THREADS = int(os.environ.get("STUDY_THREADS", "0"))  # 0: the recipe's (all cores)
# seeds whose VAE run gets a second search, started from VAE samples (time-bounded: 0 only)
SEEDED_SEARCH_SEEDS = {0}


def cli(*argv: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "samplenas.cli", *argv, "--no-progress"], check=True, cwd=ROOT
    )


def steps_recipe(steps: int) -> list[str]:
    """The fashion recipe cut to ``steps`` optimizer steps, same schedule shape.

    The warm-up keeps its share of the study's schedule (``STUDY_WARMUP_SHARE``), so a
    one-epoch run does not spend half of itself warming up.
    """
    per_epoch = 55_000 // 128
    subset = min(55_000, steps * 128) if steps < per_epoch else None
    epochs = max(1, round(steps / per_epoch))
    warmup = STUDY_WARMUP_SHARE * epochs
    out = ["--epochs", str(epochs), "--set", "eval_every_epochs=0"]
    out += ["--set", f"train.threads={THREADS}"] if THREADS else []
    out += ["--set", f"train.num_random={STUDY_NUM_RANDOM}"]
    out += ["--set", f"train.warmup_epochs={warmup:.4f}"]
    out += ["--set", f"calibration.split={STUDY_CALIBRATION_SPLIT}"]
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
    if strategy.endswith("-loss"):
        extra = ["--set", f"sampler.options.loss={STUDY_LOSS_ESTIMATOR}"]
    if strategy.endswith("-acc"):
        predictor = fit_predictor(seed, steps)
        extra = ["--set", f"sampler.options.predictor={predictor}"]
    cli(
        "train",
        "--config",
        "fashion",
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
    """The -acc samplers' forest for ``seed``: committed copy, else fit on uniform's run."""
    kept = UNITS / f"predictor-s{seed}"
    if (kept / "forest.npz").is_file():
        return kept / "forest.npz"
    base = train("uniform", seed, steps)
    if not (base / "predictor" / "forest.npz").is_file():
        cli("predictor", "fit", "--run", str(base), "--n", "256", *EVAL, "--seed", str(seed))
    kept.mkdir(parents=True, exist_ok=True)
    for name in ("forest.npz", "dataset.json", "fit.json"):
        shutil.copy2(base / "predictor" / name, kept / name)
    return kept / "forest.npz"


def sample_subnets(run: Path, n: int) -> list[dict]:
    """Top-1 of n sub-networks spread evenly over the FLOPs buckets (same archs for all runs)."""
    out = run / "study-subnets.json"
    if out.is_file():
        return json.loads(out.read_text())
    from samplenas.samplers import FlopsConditionedSampler
    from samplenas.train.runs import load_run

    r = load_run(run)
    sampler = FlopsConditionedSampler(r.space, seed=1234)
    prior = sampler.prior
    buckets = np.flatnonzero(prior.prior > 1e-4)
    targets = np.resize(buckets, n)
    archs = sampler.sample_in_buckets(targets)
    calib = r.calibration(4)
    val = r.eval_loader("val", 1000)
    rows = []
    for arch in archs:
        m = r.score(arch, calib, val)
        rows.append({"arch": arch.to_json(), "mflops": r.space.mflops(arch), "val_top1": m["top1"]})
    out.write_text(json.dumps(rows))
    return rows


def search(run: Path, *extra: str) -> list[dict]:
    if not (run / "search" / "pareto.json").is_file():
        cli(
            "search",
            *extra,
            "--run",
            str(run),
            "--population",
            "32",
            "--mutations",
            "16",
            "--crossovers",
            "16",
            "--iterations",
            "3",
            *EVAL,
        )
    return json.loads((run / "search" / "pareto.json").read_text())["front"]


def run_unit(strategy: str, seed: int, steps: int, subnets: int) -> dict:
    """Train, sample and search one (strategy, seed); the result is kept in UNITS."""
    path = UNITS / f"{strategy}-s{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    started = time.perf_counter()
    run = train(strategy, seed, steps)
    summary = json.loads((run / "run.json").read_text())
    unit = {
        "strategy": strategy,
        "seed": seed,
        "steps": steps,
        "train_seconds": summary.get("train_seconds"),
        "subnets": sample_subnets(run, subnets),
        "front": search(run),
        "choices": choice_summary(run),
    }
    if strategy == "vae" and seed in SEEDED_SEARCH_SEEDS:  # Algorithm 2's own search
        unit["front_seeded"] = search(copy_without_search(run), "--seed-from", "vae")
    unit["unit_seconds"] = time.perf_counter() - started
    atomic_write_json(path, unit)
    return unit


def copy_without_search(run: Path) -> Path:
    """A copy of a trained run for a second, differently seeded search of its own."""
    copy = run.with_name(run.name + "-seeded")
    if not copy.is_dir():  # copied whole or not at all: a killed copy is not reused
        partial = run.with_name(run.name + "-seeded.partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(run, partial, ignore=shutil.ignore_patterns("search", "run.lock"))
        os.replace(partial, copy)
    return copy


def choice_summary(run: Path) -> dict | None:
    """How decisive the sampler's picks were, from the run's per-step samples.jsonl.

    Per attentive slot: how far apart the candidates' scores were, and whether the kept
    one was the bucket's largest or smallest candidate (1/K each if FLOPs play no part).
    Runs trained before the log existed have none.
    """
    path = run / "samples.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    out: dict = {"steps": len(rows)}
    out["mean_sampled_mflops"] = float(np.mean([m for r in rows for m in r["mflops"]]))
    slots = [
        (np.array(cm), np.array(cs), p)
        for r in rows
        if "picked" in r
        for cm, cs, p in zip(r["candidate_mflops"], r["candidate_scores"], r["picked"], strict=True)
    ]
    if slots:
        spread = [cs.max() - cs.min() for _, cs, _ in slots]
        out["candidates_per_slot"] = int(np.mean([len(cm) for cm, _, _ in slots]))
        out["score_spread_median"] = float(np.median(spread))
        out["picked_largest_candidate"] = float(np.mean([cm[p] == cm.max() for cm, _, p in slots]))
        out["picked_smallest_candidate"] = float(np.mean([cm[p] == cm.min() for cm, _, p in slots]))
        out["picked_minus_mean_candidate_mflops"] = float(
            np.mean([cm[p] - cm.mean() for cm, _, p in slots])
        )
    return out


def collect(seeds: list[int], steps: int) -> dict:
    results: dict = {"steps": steps, "seeds": seeds, "runs": {}}
    for path in sorted(UNITS.glob("*-s*.json")):
        unit = json.loads(path.read_text())
        if unit.get("choices") is None and (RUNS / path.stem).is_dir():
            unit["choices"] = choice_summary(RUNS / path.stem)  # units kept before the log
            if unit["choices"] is not None:
                atomic_write_json(path, unit)
        results["runs"][path.stem] = unit
    for seed in seeds:
        fit = UNITS / f"predictor-s{seed}" / "fit.json"
        if fit.is_file():
            results.setdefault("predictor_tau", {})[str(seed)] = json.loads(fit.read_text())[
                "kendall_tau"
            ]
    if results["runs"]:
        results["summary"] = summarise(results)
    return results


def quartile_edges(results: dict) -> np.ndarray:
    """FLOPs quartiles of every scored sub-network: the buckets of both figures."""
    flops = [row["mflops"] for r in results["runs"].values() for row in r["subnets"]]
    return np.quantile(flops, [0, 0.25, 0.5, 0.75, 1])


def summarise(results: dict) -> dict:
    """Per strategy: its per-seed numbers, and its gain over uniform with the seed spread.

    The gain is paired by seed (strategy minus uniform of the same seed), so the spread
    it is compared with is the seed-to-seed noise of that difference.
    """
    edges = quartile_edges(results)
    runs = results["runs"]
    out: dict = {"bucket_edges_mflops": [round(float(e), 2) for e in edges]}
    for strategy in STRATEGIES:
        per_seed = {}
        for seed in results["seeds"]:
            unit = runs.get(f"{strategy}-s{seed}")
            if unit is None:
                continue
            top1 = np.array([row["val_top1"] for row in unit["subnets"]])
            per_seed[seed] = {
                "subnet_mean": float(top1.mean()),
                "subnet_median": float(np.median(top1)),
                "subnet_min": float(top1.min()),
                "below_70": int((top1 < 70).sum()),
                # selected on validation; reported on test, and (optimistic) on validation
                "front_test": [front_best(unit["front"], hi, "test_top1") for hi in edges[1:]],
                "front_val": [front_best(unit["front"], hi, "val_top1") for hi in edges[1:]],
            }
            if "front_seeded" in unit:  # VAENAS: the search that starts from VAE samples
                per_seed[seed]["front_seeded_test"] = [
                    front_best(unit["front_seeded"], hi, "test_top1") for hi in edges[1:]
                ]
        if not per_seed:
            continue
        entry: dict = {"per_seed": per_seed}
        if strategy != "uniform":
            paired = [
                (per_seed[seed], base)
                for seed in per_seed
                if (base := out.get("uniform", {}).get("per_seed", {}).get(seed))
            ]
            if paired:
                mean_gain = np.array([m["subnet_mean"] - b["subnet_mean"] for m, b in paired])
                entry["gain_over_uniform"] = {
                    "paired_seeds": len(paired),
                    "subnet_mean": [
                        float(mean_gain.mean()),
                        float(mean_gain.std(ddof=1)) if len(paired) > 1 else None,
                    ],
                    # paired t-test over seeds: is the gain larger than the seed noise?
                    "subnet_mean_p_value": float(ttest_1samp(mean_gain, 0.0).pvalue)
                    if len(paired) > 2
                    else None,
                    **front_gains(paired, "front_test"),
                    **front_gains(paired, "front_val"),
                }
                seeded = [
                    ({"front_test": m["front_seeded_test"]}, b)
                    for m, b in paired
                    if "front_seeded_test" in m
                ]
                if seeded:
                    gain = front_gains(seeded, "front_test")
                    entry["gain_over_uniform"].update(
                        {k.replace("front_test", "front_seeded_test"): v for k, v in gain.items()}
                    )
        out[strategy] = entry
    return out


def front_gains(paired: list[tuple[dict, dict]], key: str) -> dict:
    """Per bucket: mean and seed spread of the paired gain in ``key``, and a paired t-test."""
    gain = np.array([np.array(m[key]) - np.array(b[key]) for m, b in paired])
    n = len(paired)
    return {
        f"{key}_per_bucket_mean": [float(v) for v in gain.mean(0)],
        f"{key}_per_bucket_std": [float(v) for v in gain.std(0, ddof=1)] if n > 1 else None,
        f"{key}_per_bucket_p_value": [float(ttest_1samp(g, 0.0).pvalue) for g in gain.T]
        if n > 2
        else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=430)
    ap.add_argument("--subnets", type=int, default=70)
    ap.add_argument("--strategies", nargs="+", default=STRATEGIES)
    ap.add_argument(
        "--report",
        action="store_true",
        help="only re-aggregate the kept units and rewrite the BENCHMARKS.md table",
    )
    args = ap.parse_args()
    if not args.report:
        for seed in args.seeds:
            for strategy in args.strategies:
                run_unit(strategy, seed, args.steps, args.subnets)
                write(collect(args.seeds, args.steps))
    results = collect(args.seeds, args.steps)
    write(results)
    if "summary" in results:
        table = markdown_table(results["summary"])
        replace_table("attentive_study", table)
        print(table)
        replace_table("vae_oneshot", vae_table(results["summary"]))


def markdown_table(summary: dict) -> str:
    """The BENCHMARKS.md table: per strategy, seeds done, means over seeds, paired gains.

    Front columns: per FLOPs bucket, the front member with the best validation top-1 at
    or under the bucket's upper edge, reported by its held-out test top-1 (10,000 images
    the search never saw); the last column reports the same pick on validation, the
    1,000 images it was selected on, for comparison.
    """
    edges = summary["bucket_edges_mflops"]
    head = " / ".join(f"{e:.1f}" for e in edges[1:])
    lines = [
        f"| strategy | seeds | sub-network mean val top-1 (per seed) | < 70% of 70 | "
        f"best test top-1 at ≤ {head} MFLOPs, selected on validation (mean) | "
        "gain over uniform: sub-network mean | gain: best test top-1 per bucket | "
        "gain on validation (selected and scored on the same images) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for strategy in STRATEGIES:
        entry = summary.get(strategy)
        if entry is None:
            continue
        per_seed = list(entry["per_seed"].values())
        means = ", ".join(f"{p['subnet_mean']:.2f}" for p in per_seed)
        below = ", ".join(str(p["below_70"]) for p in per_seed)
        front = np.mean([p["front_test"] for p in per_seed], axis=0)
        cells = [DISPLAY[strategy], str(len(per_seed)), means, below]
        cells.append(" / ".join(f"{v:.1f}" for v in front))
        gain = entry.get("gain_over_uniform")
        if gain is None:
            cells += ["—", "—", "—"]
        else:
            mean, spread = gain["subnet_mean"]
            p_value = gain.get("subnet_mean_p_value")
            cells.append(
                signed(mean, 2)
                + (f" ± {spread:.2f}" if spread is not None else "")
                + (f" (p = {p_value:.2f})" if p_value is not None else "")
            )
            cells.append(bucket_gains(gain, "front_test"))
            cells.append(bucket_gains(gain, "front_val"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def vae_table(summary: dict) -> str:
    """VAENAS Algorithm 2 against uniform and the study's best attentive sampler.

    Per FLOPs bucket, the held-out test top-1 of the front member picked on validation
    (mean ± seed std), and its gain over uniform paired by seed; the VAE row twice: after
    the same search as every sampler, and after the search seeded with VAE samples.
    """
    if "vae" not in summary:
        return ""
    edges = summary["bucket_edges_mflops"]
    head = " / ".join(f"{e:.1f}" for e in edges[1:])
    lines = [
        f"| sampler (search) | seeds | best test top-1 at ≤ {head} MFLOPs, picked on "
        "validation (mean ± seed std) | gain over uniform, paired by seed | p (paired t) |",
        "|---|---|---|---|---|",
    ]
    rows = [
        ("uniform", "front_test", "uniform (same search)"),
        ("worstup-3-loss", "front_test", "WorstUp-3 (loss) (same search)"),
        ("vae", "front_test", "VAE (same search)"),
        ("vae", "front_seeded_test", "VAE (search seeded with 16 VAE samples)"),
    ]
    for strategy, key, label in rows:
        entry = summary.get(strategy)
        fronts = np.array([p[key] for p in (entry or {}).get("per_seed", {}).values() if key in p])
        if not len(fronts):
            continue
        cells = [label, str(len(fronts))]
        if len(fronts) > 1:
            pairs = zip(fronts.mean(0), fronts.std(0, ddof=1), strict=True)
            cells.append(" / ".join(f"{m:.2f}±{s_:.2f}" for m, s_ in pairs))
        else:
            cells.append(" / ".join(f"{m:.2f}" for m in fronts[0]))
        gain = entry.get("gain_over_uniform")
        if gain is None or f"{key}_per_bucket_mean" not in gain:
            cells += ["—", "—"]
        else:
            cells.append(bucket_gains(gain, key))
            p_values = gain.get(f"{key}_per_bucket_p_value") or []
            cells.append(" / ".join(f"{p_:.2f}" for p_ in p_values) or "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def signed(value: float, digits: int) -> str:
    """+0.4 / −2.3 (a true minus sign, as the rest of BENCHMARKS.md writes it)."""
    return f"{value:+.{digits}f}".replace("-", "−")


def bucket_gains(gain: dict, key: str) -> str:
    means = gain[f"{key}_per_bucket_mean"]
    stds = gain[f"{key}_per_bucket_std"] or [None] * len(means)
    return " / ".join(
        signed(m, 1) + (f"±{s_:.1f}" if s_ is not None else "")
        for m, s_ in zip(means, stds, strict=True)
    )


def write(results: dict) -> None:
    atomic_write_json(RESULTS / "attentive_study.json", results)
    if results["runs"]:
        plot(results)


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"].values()
    strategies = [s for s in STRATEGIES if any(r["strategy"] == s for r in runs)]
    edges = quartile_edges(results)
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
        ax.boxplot(
            data, tick_labels=[s.replace("-", "\n", 1) for s in strategies], showfliers=False
        )
        ax.set_title(f"{edges[b]:.1f}-{edges[b + 1]:.1f} MFLOPs")
        ax.tick_params(axis="x", labelsize=7)
    axes[0].set_ylabel("val top-1 (%)")
    fig.tight_layout()
    fig.savefig(RESULTS / "attentive_fig5.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, s in enumerate(strategies[1:]):
        gains = []
        for seed in results["seeds"]:
            base = results["runs"].get(f"uniform-s{seed}")
            mine = results["runs"].get(f"{s}-s{seed}")
            if not base or not mine:
                continue
            gains.append(
                [
                    front_best(mine["front"], hi, "test_top1")
                    - front_best(base["front"], hi, "test_top1")
                    for hi in edges[1:]
                ]
            )
        if gains:
            g = np.array(gains)
            offset = 0.3 * (i - (len(strategies) - 2) / 2)  # side by side, centred
            mids = (edges[:-1] + edges[1:]) / 2 + offset
            spread = g.std(0, ddof=1) if len(g) > 1 else None  # as in the summary table
            ax.errorbar(mids, g.mean(0), yerr=spread, capsize=3, marker="o", label=s)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("MFLOPs quartile (front member picked on validation at <= its upper edge)")
    ax.set_ylabel("test top-1 gain over uniform (pp)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "attentive_fig6.png", dpi=110)
    plt.close(fig)


def front_best(front: list[dict], hi: float, report: str) -> float:
    """``report`` of the member with the best validation top-1 at <= ``hi`` MFLOPs.

    Selecting and reporting on the same 1,000 validation images favours whichever run's
    noise happened to be high; reporting the pick's ``test_top1`` does not.
    """
    inside = [m for m in front if m["mflops"] <= hi]
    return max(inside, key=lambda m: m["val_top1"])[report] if inside else float("nan")


if __name__ == "__main__":
    main()
