"""NAS-Bench-Graph study: strategies on all 9 datasets, N vs K, predictor rank quality,
harness speed.

Run: python benchmarks/tabular_study.py [--runs 50] [--datasets cora ...]
Writes to benchmarks/results/tabular/: <dataset>.json + .png (random, RE and the Neural
Predictor, budget 500), nvsk_<dataset>.json + .png (Figure 7: N vs K on the three tuning
datasets), predictors_tau.json (Kendall tau at N = 172), harness_walltime.json; and
benchmarks/results/tabular_summary.json. Finished parts are skipped, so a killed study
resumes. ``--report`` rebuilds the BENCHMARKS.md tables from the JSON (and prints them).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from md_tables import replace_table

from samplenas.bench import load_benchmark
from samplenas.bench.harness import compare, plot_curves
from samplenas.bench.table import NB_GRAPH_DATASETS
from samplenas.io import atomic_write_json
from samplenas.predictors import kendall_tau
from samplenas.predictors.registry import make_predictor

OUT = Path(__file__).parent / "results" / "tabular"


def queries_to_reach(curve: list[float], target: float) -> int | None:
    """First query count whose mean best validation accuracy reaches ``target``."""
    for q, v in enumerate(curve, start=1):
        if v >= target - 1e-12:
            return q
    return None


def study(dataset: str, runs: int, budget: int) -> dict:
    path = OUT / f"{dataset}.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = compare(f"nas-bench-graph:{dataset}", ["random", "re", "npred"], budget, runs)
    re_500 = result["strategies"]["re"]["valid_mean"][budget - 1]
    result["re_final_valid_mean"] = re_500
    result["npred_queries_to_re_final"] = queries_to_reach(
        result["strategies"]["npred"]["valid_mean"], re_500
    )
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result)
    plot_curves(result, OUT / f"{dataset}.png")
    return result


def predictor_tau(dataset: str, n: int = 172, seed: int = 0, held_out: int = 5000) -> dict:
    table = load_benchmark(f"nas-bench-graph:{dataset}")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(table.archs))
    train, test = idx[:n], idx[n : n + held_out]
    out = {}
    for name in ("gcn", "rf", "mlp"):
        model = make_predictor(name, table.space, seed=seed)
        model.fit([table.archs[i] for i in train], table.valid[train])
        pred = model.predict([table.archs[i] for i in test])
        out[name] = kendall_tau(table.valid[test], pred)
    return out


def n_vs_k(dataset: str, ns: list[int], runs: int, budget: int) -> dict:
    """Figure 7: the Neural Predictor's curve for several N at a fixed total budget N + K."""
    path = OUT / f"nvsk_{dataset}.json"
    if path.is_file():
        return json.loads(path.read_text())
    out: dict = {"benchmark": f"nas-bench-graph:{dataset}", "budget": budget, "runs": runs}
    out["curves"] = {}
    for n in ns:
        r = compare(out["benchmark"], ["npred"], budget, runs, npred_n=n)
        out["curves"][str(n)] = r["strategies"]["npred"]
    atomic_write_json(path, out)
    plot_n_vs_k(out, OUT / f"nvsk_{dataset}.png")
    return out


def plot_n_vs_k(result: dict, path: Path, key_names: tuple[str, str] = ("valid", "test")) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, (n, c) in enumerate(result["curves"].items()):
        q = np.array(c["queries"])
        color = f"C{i}"
        for ax, key in zip(axes, key_names, strict=True):
            m, s = np.array(c[f"{key}_mean"]), np.array(c[f"{key}_std"])
            ax.plot(q, m, color=color, label=f"N = {n}")
            ax.fill_between(q, m - s, m + s, color=color, alpha=0.1)
            ax.axvline(int(n), color=color, ls=":", lw=1)
    labels = {"valid": "validation", "expected": "expected (seed-mean)", "test": "test"}
    for ax, key in zip(axes, key_names, strict=True):
        key = labels[key]
        ax.set_xlabel("total queries N + K")
        ax.set_ylabel(f"{key} accuracy of the best found")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{result['benchmark']}: Neural Predictor, N vs K ({result['runs']} runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table_noise() -> dict:
    """How much of each table's top is measurement noise: Kendall tau between validation
    and test accuracy over all architectures and over the top 1% by validation."""
    path = OUT / "table_noise.json"
    if path.is_file():
        return json.loads(path.read_text())
    out = {}
    for ds in NB_GRAPH_DATASETS:
        table = load_benchmark(f"nas-bench-graph:{ds}")
        v, t = table.valid, table.test
        top = v >= np.quantile(v, 0.99)
        out[ds] = {
            "tau_valid_test_all": kendall_tau(v, t),
            "tau_valid_test_top1pct": kendall_tau(v[top], t[top]),
            "valid_std": float(v.std()),
            "top1pct_valid_range": [float(v[top].min()), float(v.max())],
        }
    atomic_write_json(path, out)
    return out


def report(summary: dict, noise: dict) -> dict[str, str]:
    """The BENCHMARKS.md tables, from the study's JSON, by their marker names."""
    lines = [
        "| dataset | RE mean valid @500 | npred queries to reach it | npred @500 | "
        "τ GCN | τ RF | τ MLP | τ(valid, test) all / top 1% |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ds, s in summary.items():
        q = s["npred_queries_to_re_final"]
        npred500 = s["marks"]["npred"]["500"][0]
        t = s["tau_n172"]
        lines.append(
            f"| {ds} | {s['re_final_valid_mean']:.4f} | {q if q else 'not reached'} | "
            f"{npred500:.4f} | {t['gcn']:.2f} | {t['rf']:.2f} | {t['mlp']:.2f} | "
            f"{noise[ds]['tau_valid_test_all']:.2f} / {noise[ds]['tau_valid_test_top1pct']:.2f} |"
        )
    curves = ["| dataset | strategy | q = 50 | q = 100 | q = 200 | q = 300 | q = 500 |"]
    curves.append("|---|---|---|---|---|---|---|")
    for ds, s in summary.items():
        for name, marks in s["marks"].items():
            cells = [f"{v[0]:.4f}±{v[1]:.4f} ({v[2]:.4f})" for v in marks.values()]
            curves.append(f"| {ds} | {name} | " + " | ".join(cells) + " |")
    return {"tabular": "\n".join(lines), "tabular_curves": "\n".join(curves)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--datasets", nargs="+", default=list(NB_GRAPH_DATASETS))
    ap.add_argument("--skip-walltime", action="store_true")
    ap.add_argument(
        "--report", action="store_true", help="rewrite the BENCHMARKS.md tables from the JSON"
    )
    ap.add_argument("--nvsk-datasets", nargs="*", default=["cora", "citeseer", "pubmed"])
    ap.add_argument("--nvsk-n", nargs="+", type=int, default=[20, 50, 100, 172, 300])
    args = ap.parse_args()
    if args.report:
        summary = json.loads((OUT.parent / "tabular_summary.json").read_text())
        walltime = json.loads((OUT / "harness_walltime.json").read_text())
        for name, table in report(summary, table_noise()).items():
            replace_table(name, table)
            print(table, end="\n\n")
        print(f"harness wall time: {walltime['wall_seconds']:.1f} s")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for ds in args.nvsk_datasets:
        n_vs_k(ds, args.nvsk_n, args.runs, args.budget)
    if not args.skip_walltime and not (OUT / "harness_walltime.json").is_file():
        t = time.perf_counter()
        compare("nas-bench-graph:cora", ["random", "re", "npred"], 300, 100)
        atomic_write_json(
            OUT / "harness_walltime.json",
            {
                "command": "samplenas bench --benchmark nas-bench-graph:cora --runs 100 "
                "--budget 300 --strategies random,re,npred",
                "workers": os.cpu_count(),
                "wall_seconds": time.perf_counter() - t,
            },
        )
    summary = {}
    tau_path = OUT / "predictors_tau.json"
    taus = json.loads(tau_path.read_text()) if tau_path.is_file() else {}
    for ds in args.datasets:
        r = study(ds, args.runs, args.budget)
        if ds not in taus:
            taus[ds] = predictor_tau(ds)
            atomic_write_json(tau_path, taus)
        marks = {}
        for name, c in r["strategies"].items():
            marks[name] = {
                q: [
                    c["valid_mean"][q - 1],
                    c["valid_std"][q - 1],
                    c["test_mean"][q - 1],
                    c["test_std"][q - 1],
                ]
                for q in (50, 100, 200, 300, 500)
                if q <= r["budget"]
            }
        summary[ds] = {
            "re_final_valid_mean": r["re_final_valid_mean"],
            "npred_queries_to_re_final": r["npred_queries_to_re_final"],
            "marks": marks,
            "tau_n172": taus[ds],
        }
        print(ds, json.dumps(summary[ds]["npred_queries_to_re_final"]), taus[ds], flush=True)
    atomic_write_json(OUT.parent / "tabular_summary.json", summary)
    table_noise()


if __name__ == "__main__":
    main()
