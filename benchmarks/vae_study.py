"""VAENAS on tabular benchmarks: the paper's Table 4 protocol and budget-fair curves.

Run:    nice python benchmarks/vae_study.py [--parts table4 tune fair] [--runs 100]
Report: python benchmarks/vae_study.py --report   (rewrites the BENCHMARKS.md tables)

``table4`` (section 5.3): per run, a random set of M architectures (not counted) scored by
the ground truth (the seed-mean validation accuracy) plus Gaussian label noise of std
0, 0.1 or 0.5 accuracy points (the paper's "noise 0.1 %"); a fresh VAE trained on its
top 25 %; the max ground-truth accuracy of the first K = 10, 50, 100, 300 VAE samples
against K uniform samples, on NAS-Bench-201 (3 datasets) and NAS-Bench-Graph (9).
``tune``: the ``vae`` strategy's warm-up size and retrain period, on cifar10-valid only.
``fair``: ``vae`` and ``vae-re`` with every query counted, against the random, RE and
npred curves of benchmarks/results/nb201/ (nb201_study.py) on the three datasets.

Each (benchmark, noise) and each strategy writes its own JSON under
benchmarks/results/vae/ and is skipped when it exists, so a killed study resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from md_tables import replace_table

from samplenas.bench import load_benchmark
from samplenas.bench.harness import compare, plot_curves, run_once
from samplenas.bench.nasbench201 import NB201_DATASETS
from samplenas.bench.table import NB_GRAPH_DATASETS, Table
from samplenas.io import atomic_write_json
from samplenas.samplers.vae import VAESampler, validity_and_diversity

OUT = Path(__file__).parent / "results" / "vae"
BENCHMARKS = [f"nas-bench-201:{d}" for d in NB201_DATASETS] + [
    f"nas-bench-graph:{d}" for d in NB_GRAPH_DATASETS
]
NOISES = (0.0, 0.1, 0.5)  # label-noise std in accuracy points (% of accuracy)
KS = (10, 50, 100, 300)
RANDOM_SET = 1000  # the paper: 6,000 of NAS-Bench-101's 423k; here ≤ a quarter of a space
TOP = 0.25  # the paper: the top 1,500 of 6,000
TUNE = "nas-bench-201:cifar10-valid"
TUNE_GRID = [(n_init, every) for n_init in (10, 30) for every in (20, 50)]
FAIR_MARKS = (50, 100, 200)


def stem(bench: str) -> str:
    return bench.replace(":", "_")


# -- Table 4 -------------------------------------------------------------------------------
def table4_run(table: Table, noise: float, run: int, n_iters: int) -> dict:
    """One run: max-of-K ground truth of VAE vs uniform samples, VAE validity/diversity."""
    rng = np.random.default_rng([run, 4])  # the same random set and baseline at every noise
    n = min(RANDOM_SET, len(table.archs) // 4)
    chosen = rng.choice(len(table.archs), n, replace=False)
    baseline = rng.integers(len(table.archs), size=max(KS))  # K uniform samples
    scale = 1.0 if table.unit == "%" else 0.01  # noise in accuracy points either way
    noisy = table.valid[chosen] + noise * scale * np.random.default_rng([run, 5]).normal(size=n)
    vae = VAESampler(table.space, seed=run, ranking_ratio=TOP, n_iters=n_iters)
    vae.tell([table.archs[i] for i in chosen], noisy)
    samples = [table.index[table.space.validate(a)] for a in vae.ask(max(KS))]
    out: dict = {"vae": {}, "random": {}}
    for name, idx in (("vae", np.array(samples)), ("random", baseline)):
        for k in KS:
            out[name][str(k)] = float(table.valid[idx[:k]].max())
    out.update(validity_and_diversity(vae, 1000))
    out["top_in_training"] = float(table.valid[chosen].max())
    return out


def table4_part(bench: str, noise: float, runs: int, n_iters: int) -> dict:
    path = OUT / f"table4_{stem(bench)}_noise{noise}.json"
    if path.is_file():
        return json.loads(path.read_text())
    table = load_benchmark(bench)
    started = time.perf_counter()
    rows = [table4_run(table, noise, r, n_iters) for r in range(runs)]
    result = {
        "benchmark": bench,
        "noise": noise,
        "runs": runs,
        "n_iters": n_iters,
        "random_set": min(RANDOM_SET, len(table.archs) // 4),
        "top": TOP,
        "unit": table.unit,
        "rows": rows,
        "wall_seconds": time.perf_counter() - started,
    }
    atomic_write_json(path, result)
    return result


def summarise_table4(part: dict) -> dict:
    """Means, seed spreads and the paired VAE-minus-random difference per K."""
    rows = part["rows"]
    out: dict = {"runs": len(rows), "K": {}}
    for k in map(str, KS):
        v = np.array([r["vae"][k] for r in rows])
        u = np.array([r["random"][k] for r in rows])
        d = v - u
        out["K"][k] = {
            "vae": [float(v.mean()), float(v.std())],
            "random": [float(u.mean()), float(u.std())],
            "diff": [float(d.mean()), float(d.std() / np.sqrt(len(d)))],  # mean, std error
            "vae_wins_runs": float((d > 0).mean()),
        }
    best = np.array([r["top_in_training"] for r in rows])  # what the uncounted set held
    out["best_of_random_set"] = [float(best.mean()), float(best.std())]
    out["validity"] = float(np.mean([r["validity"] for r in rows]))
    out["distinct_per_1000"] = float(np.mean([r["distinct_per_1000"] for r in rows]))
    return out


# -- budget-fair ---------------------------------------------------------------------------
def tune(runs: int, budget: int) -> dict:
    """Mean expected accuracy of ``vae`` at FAIR_MARKS per (n_init, retrain_every)."""
    path = OUT / "tune_cifar10-valid.json"
    if path.is_file():
        return json.loads(path.read_text())
    table = load_benchmark(TUNE)
    out: dict = {"benchmark": TUNE, "runs": runs, "budget": budget, "grid": {}}
    for n_init, every in TUNE_GRID:
        options = {"n_init": n_init, "retrain_every": every}
        curves = [
            run_once(table, "vae", 1000 + r, budget, options=options)["expected"]
            for r in range(runs)
        ]
        mean = np.mean(curves, axis=0)
        out["grid"][f"{n_init},{every}"] = {
            str(q): float(mean[q - 1]) for q in FAIR_MARKS if q <= budget
        }
        print("tune", n_init, every, out["grid"][f"{n_init},{every}"], flush=True)
    atomic_write_json(path, out)
    return out


def fair(dataset: str, strategy: str, runs: int, budget: int) -> dict:
    path = OUT / f"fair_{dataset}_{strategy}.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = compare(
        f"nas-bench-201:{dataset}", [strategy], budget, runs, workers=1, progress=False
    )
    atomic_write_json(path, result)
    return result


def fair_results(ds: str) -> dict[str, dict]:
    """Each strategy's result on ``ds``: vae, vae-re from this study, the rest from
    nb201_study.py's committed runs (the same harness, budget 500)."""
    out = {}
    for s in ("random", "re", "npred", "vae", "vae-re"):
        mine = OUT / f"fair_{ds}_{s}.json"
        path = mine if mine.is_file() else OUT.parent / "nb201" / f"{ds}_{s}.json"
        if path.is_file():
            out[s] = json.loads(path.read_text())
    return out


def plot_fair(ds: str, results: dict[str, dict]) -> None:
    """All strategies' curves up to the VAE runs' budget, in one figure."""
    budget = min(r["budget"] for r in results.values())
    first = next(iter(results.values()))
    merged = {k: first[k] for k in ("benchmark", "curves", "noisy_queries", "metric")}
    merged["runs"] = {s: r["runs"] for s, r in results.items()}
    merged["strategies"] = {
        s: {k: v[:budget] for k, v in r["strategies"][s].items() if isinstance(v, list)}
        for s, r in results.items()
    }
    plot_curves(merged, OUT / f"fair_{ds}.png")


def fair_summary() -> dict:
    """Marks of vae, vae-re (this study) and random, re, npred (nb201_study.py)."""
    out: dict = {}
    for ds in NB201_DATASETS:
        rows: dict = {}
        results = fair_results(ds)
        if "vae" in results:
            plot_fair(ds, results)
        for s, r in results.items():
            c = r["strategies"][s]
            rows[s] = {
                "runs": r["runs"],
                "marks": {
                    str(q): [c["expected_mean"][q - 1], c["expected_std"][q - 1]]
                    for q in FAIR_MARKS
                    if q <= r["budget"]
                },
            }
            if "stats" in c:
                rows[s]["validity"] = c["stats"]["vae_validity"]
        out[ds] = rows
    return out


# -- report --------------------------------------------------------------------------------
def report(summary: dict) -> dict[str, str]:
    """The BENCHMARKS.md tables, by marker name, from the summary JSON."""
    t4 = summary["table4"]
    rows = [
        "| benchmark | noise | "
        + " | ".join(f"K = {k}: VAE / random (diff ± s.e.)" for k in KS)
        + " | best of the uncounted set | valid | distinct / 1000 |",
        "|---|---|" + "---|" * len(KS) + "---|---|---|",
    ]
    wins = {str(n): 0 for n in NOISES}
    significant = {str(n): 0 for n in NOISES}
    counted = {str(n): 0 for n in NOISES}
    for bench, by_noise in t4.items():
        pct = bench.startswith("nas-bench-201")
        f = (lambda x: f"{x:.2f}") if pct else (lambda x: f"{100 * x:.2f}")
        for noise, s in by_noise.items():
            cells = []
            for k in map(str, KS):
                c = s["K"][k]
                cells.append(
                    f"{f(c['vae'][0])}±{f(c['vae'][1])} / {f(c['random'][0])}±"
                    f"{f(c['random'][1])} ({c['diff'][0] * (1 if pct else 100):+.2f} ± "
                    f"{c['diff'][1] * (1 if pct else 100):.2f})"
                )
            d10 = s["K"]["10"]["diff"]
            counted[noise] += 1
            wins[noise] += d10[0] > 0
            significant[noise] += d10[0] > 2 * d10[1]
            rows.append(
                f"| {bench.split(':')[1]} | {float(noise):g} | "
                + " | ".join(cells)
                + f" | {f(s['best_of_random_set'][0])} | {100 * s['validity']:.1f} % | "
                f"{s['distinct_per_1000']:.0f} |"
            )
    verdict = [
        "| noise (accuracy points) | VAE mean ahead at K = 10 | ahead by > 2 s.e. |",
        "|---|---|---|",
    ]
    for noise, n in counted.items():
        verdict.append(f"| {float(noise):g} | {wins[noise]} of {n} | {significant[noise]} of {n} |")
    tables = {"vae_table4": "\n".join(rows), "vae_table4_wins": "\n".join(verdict)}
    if "tune" in summary:
        tu = summary["tune"]
        lines = [
            "| n_init, retrain_every | " + " | ".join(f"q = {q}" for q in FAIR_MARKS) + " |",
            "|---|" + "---|" * len(FAIR_MARKS),
        ]
        for cfg, marks in tu["grid"].items():
            lines.append(
                f"| {cfg} | "
                + " | ".join(f"{marks.get(str(q), float('nan')):.2f}" for q in FAIR_MARKS)
                + " |"
            )
        lines.append(f"\n{tu['runs']} runs each on {tu['benchmark']}, expected accuracy (%).")
        tables["vae_tune"] = "\n".join(lines)
    if "fair" in summary:
        lines = [
            "| dataset | strategy | runs | " + " | ".join(f"q = {q}" for q in FAIR_MARKS) + " |",
            "|---|---|---|" + "---|" * len(FAIR_MARKS),
        ]
        for ds, rows_ in summary["fair"].items():
            for s, r in rows_.items():
                cells = [
                    f"{r['marks'][str(q)][0]:.2f}±{r['marks'][str(q)][1]:.2f}"
                    if str(q) in r["marks"]
                    else "—"
                    for q in FAIR_MARKS
                ]
                lines.append(f"| {ds} | {s} | {r['runs']} | " + " | ".join(cells) + " |")
        tables["vae_fair"] = "\n".join(lines)
    return tables


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100, help="Table 4 runs per setting")
    ap.add_argument("--n-iters", type=int, default=100, help="VAE steps per training")
    ap.add_argument("--tune-runs", type=int, default=20)
    ap.add_argument("--fair-runs", type=int, default=30)
    ap.add_argument("--fair-budget", type=int, default=200)
    ap.add_argument("--parts", nargs="+", default=["table4", "tune", "fair"])
    ap.add_argument("--benchmarks", nargs="+", default=BENCHMARKS)
    ap.add_argument("--report", action="store_true", help="rewrite BENCHMARKS.md's tables")
    args = ap.parse_args()
    torch.set_num_threads(1)
    summary_path = OUT.parent / "vae_summary.json"
    if args.report:
        summary = json.loads(summary_path.read_text())
        for name, table in report(summary).items():
            replace_table(name, table)
            print(table, end="\n\n")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    if "table4" in args.parts:
        for noise in NOISES:  # every benchmark at noise 0 first: the headline comes first
            for bench in args.benchmarks:
                part = table4_part(bench, noise, args.runs, args.n_iters)
                print(bench, noise, f"{part['wall_seconds']:.0f} s", flush=True)
    if "tune" in args.parts:
        tune(args.tune_runs, args.fair_budget)
    if "fair" in args.parts:
        for s in ("vae", "vae-re"):
            for ds in NB201_DATASETS:
                fair(ds, s, args.fair_runs, args.fair_budget)
                print("fair", ds, s, flush=True)
    write_summary(summary_path)


def write_summary(path: Path) -> None:
    """Collect every finished part's JSON into the summary the report reads."""
    summary: dict = {"table4": {}}
    for bench in BENCHMARKS:
        for noise in NOISES:
            part = OUT / f"table4_{stem(bench)}_noise{noise}.json"
            if part.is_file():
                s = summarise_table4(json.loads(part.read_text()))
                summary["table4"].setdefault(bench, {})[str(noise)] = s
    tune_path = OUT / "tune_cifar10-valid.json"
    if tune_path.is_file():
        summary["tune"] = json.loads(tune_path.read_text())
    summary["fair"] = fair_summary()
    atomic_write_json(path, summary)


if __name__ == "__main__":
    main()
