"""NAS-Bench-201 study: the Neural Predictor against random search and regularized
evolution on cifar10-valid, cifar100 and ImageNet16-120, with noisy (one training seed per
query) evaluations, reported on the expected (seed-mean) accuracy of what each strategy
chose; plus the same "expected vs queried" split on NAS-Bench-Graph.

Run:    python benchmarks/nb201_study.py [--runs 50] [--parts tune final tau speed graph]
Report: python benchmarks/nb201_study.py --report   (rewrites the BENCHMARKS.md tables)

Settings are tuned on cifar10-valid only (``tune``: N vs K of the Neural Predictor); the
other two datasets run once with the final settings (``final``). Every part writes its JSON
under benchmarks/results/nb201/ and is skipped when its file exists, so a killed study
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from md_tables import replace_table
from tabular_study import plot_n_vs_k, queries_to_reach

from samplenas.bench import Evaluator, load_benchmark
from samplenas.bench.harness import compare, plot_curves
from samplenas.bench.nasbench201 import NB201_DATASETS
from samplenas.bench.table import NB_GRAPH_DATASETS
from samplenas.io import atomic_write_json
from samplenas.predictors import kendall_tau
from samplenas.predictors.registry import make_predictor

OUT = Path(__file__).parent / "results" / "nb201"
TUNE = "cifar10-valid"
STRATEGIES = ["random", "re", "npred", "npred-2stage", "bananas"]
MARKS = (50, 100, 200, 300, 500)


def bench_name(dataset: str) -> str:
    return f"nas-bench-201:{dataset}"


def stem(dataset: str) -> str:
    """File name part of a dataset ('cifar100:mean' -> 'cifar100-mean')."""
    return dataset.replace(":", "-")


def run_strategy(dataset: str, strategy: str, runs: int, budget: int, npred_n: int) -> dict:
    """One strategy's curves on one dataset (its own file: the unit a killed study redoes)."""
    path = OUT / f"{stem(dataset)}_{strategy}.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = compare(bench_name(dataset), [strategy], budget, runs, npred_n=npred_n)
    result["npred_n"] = npred_n
    atomic_write_json(path, result)
    return result


def merged(dataset: str, npred_n: int, strategies: list[str]) -> dict:
    """All strategies of a dataset (each run by ``run_strategy``) in one result, plotted."""
    parts = [json.loads((OUT / f"{stem(dataset)}_{s}.json").read_text()) for s in strategies]
    out = {k: v for k, v in parts[0].items() if k not in ("strategies", "wall_seconds", "runs")}
    out["runs"] = {s: p["runs"] for s, p in zip(strategies, parts, strict=True)}
    out["npred_n"] = npred_n
    out["strategies"] = {s: p["strategies"][s] for s, p in zip(strategies, parts, strict=True)}
    out["wall_seconds"] = {s: p["wall_seconds"] for s, p in zip(strategies, parts, strict=True)}
    plot_curves(out, OUT / f"{stem(dataset)}.png")
    return out


def n_vs_k(dataset: str, ns: list[int], runs: int, budget: int) -> dict:
    """Figure 7 of the paper on the tuning dataset: N training queries, K = budget - N."""
    path = OUT / f"nvsk_{dataset}.json"
    if path.is_file():
        return json.loads(path.read_text())
    out: dict = {"benchmark": bench_name(dataset), "budget": budget, "runs": runs, "curves": {}}
    for n in ns:
        r = compare(out["benchmark"], ["npred"], budget, runs, npred_n=n, progress=False)
        out["curves"][str(n)] = r["strategies"]["npred"]
    atomic_write_json(path, out)
    plot_n_vs_k(out, OUT / f"nvsk_{dataset}.png", key_names=("valid", "expected"))
    return out


def choose_n(nvsk: dict, at: int = 100) -> int:
    """The N whose mean expected accuracy at ``at`` queries is highest (ties: smaller N)."""
    scores = {int(n): c["expected_mean"][at - 1] for n, c in nvsk["curves"].items() if int(n) < at}
    return max(sorted(scores), key=lambda n: scores[n])


def predictor_tau(dataset: str, n: int = 172, held_out: int = 5000, seeds: int = 3) -> dict:
    """Kendall τ on 5,000 held-out cells of predictors fit on N cells' single-seed scores
    (what a search sees), against the held-out cells' seed-mean accuracy; mean ± std over
    ``seeds`` draws of the training and held-out cells."""
    table = load_benchmark(bench_name(dataset))
    taus: dict[str, list[float]] = {"gcn": [], "rf": [], "mlp": []}
    for seed in range(seeds):
        idx = np.random.default_rng(seed).permutation(len(table.archs))
        train, test = idx[:n], idx[n : n + held_out]
        ev = Evaluator(table, seed=seed)
        archs = [table.archs[i] for i in train]
        y = [ev.query(a) for a in archs]
        for name in taus:
            model = make_predictor(name, table.space, seed=seed)
            model.fit(archs, y)
            pred = model.predict([table.archs[i] for i in test])
            taus[name].append(kendall_tau(table.valid[test], pred))
    return {k: [float(np.mean(v)), float(np.std(v))] for k, v in taus.items()}


def query_speed() -> dict:
    """The issue's speed goal, timed as a user runs it (a fresh process, all cores)."""
    command = [
        sys.executable,
        "-m",
        "samplenas.cli",
        "bench",
        "--benchmark",
        "nas-bench-201:cifar100",
        "--strategies",
        "random,re,npred",
        "--budget",
        "150",
        "--runs",
        "30",
        "--json",
        "--no-progress",
    ]
    t = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return {
        "command": "samplenas " + " ".join(command[3:]),
        "workers": os.cpu_count(),
        "wall_seconds": time.perf_counter() - t,
    }


def summarise(result: dict) -> dict:
    """Marks, RE's expected accuracy at the budget, queries each strategy needs to reach it."""
    budget = result["budget"]
    strategies = result["strategies"]
    re_final = strategies["re"]["expected_mean"][budget - 1]
    out: dict = {"re_final_expected": re_final, "queries_to_re_final": {}, "marks": {}}
    out["runs"] = result["runs"]
    for name, c in strategies.items():
        out["queries_to_re_final"][name] = queries_to_reach(c["expected_mean"], re_final)
        out["marks"][name] = {
            str(q): {
                key: [c[f"{key}_mean"][q - 1], c[f"{key}_std"][q - 1]]
                for key in ("valid", "expected", "test")
                if f"{key}_mean" in c
            }
            for q in MARKS
            if q <= len(c["queries"])
        }
    return out


def top_of_table(dataset: str, target: float) -> dict:
    """How narrow the top is: cells whose expected accuracy reaches ``target`` (RE's mean at
    500), the best cell, and the per-query noise (std over seeds) among the top 1%."""
    table = load_benchmark(bench_name(dataset))
    top = table.valid >= np.quantile(table.valid, 0.99)
    noise = [float(np.std(table.seeds[i])) for i in np.flatnonzero(top) if len(table.seeds[i]) > 1]
    return {
        "cells": len(table.archs),
        "cells_reaching_target": int((table.valid >= target - 1e-12).sum()),
        "best_expected": float(table.valid.max()),
        "top1pct_range": [float(table.valid[top].min()), float(table.valid.max())],
        "top1pct_seed_std_mean": float(np.mean(noise)),
    }


def graph_summary() -> dict:
    """NAS-Bench-Graph from the tabular study's committed curves: its light tables hold seed
    means only, so the queried and expected scores are one; the target is the seed-mean
    test accuracy of the best found (the paper's measure), beside the validation one."""
    out = {}
    for ds in NB_GRAPH_DATASETS:
        path = OUT.parent / "tabular" / f"{ds}.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        s = r["strategies"]
        b = r["budget"]
        re_test = s["re"]["test_mean"][b - 1]
        out[ds] = {
            "re_final_valid": s["re"]["valid_mean"][b - 1],
            "re_final_test": re_test,
            "npred_queries_to_re_final_valid": queries_to_reach(
                s["npred"]["valid_mean"], s["re"]["valid_mean"][b - 1]
            ),
            "npred_queries_to_re_final_test": queries_to_reach(s["npred"]["test_mean"], re_test),
            "at_100": {n: [c["valid_mean"][99], c["test_mean"][99]] for n, c in s.items()},
        }
    return out


def fmt_q(q: int | None) -> str:
    return str(q) if q is not None else "not reached"


def report(summary: dict) -> dict[str, str]:
    """The BENCHMARKS.md tables, by marker name, from the summary JSON."""
    head = [
        "| dataset | RE expected @500 | npred: queries to reach it | npred-2stage | bananas | "
        "random | npred @100 | RE @100 | τ GCN / RF / MLP (N = 172) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ds, s in summary["datasets"].items():
        q = s["queries_to_re_final"]
        m = s["marks"]
        t = summary["tau"][ds]
        head.append(
            f"| {ds} | {s['re_final_expected']:.2f} | {fmt_q(q['npred'])} | "
            f"{fmt_q(q.get('npred-2stage'))} | {fmt_q(q.get('bananas'))} | "
            f"{fmt_q(q.get('random'))} | "
            f"{m['npred']['100']['expected'][0]:.2f} ± {m['npred']['100']['expected'][1]:.2f} | "
            f"{m['re']['100']['expected'][0]:.2f} ± {m['re']['100']['expected'][1]:.2f} | "
            f"{t['gcn'][0]:.2f} / {t['rf'][0]:.2f} / {t['mlp'][0]:.2f} |"
        )
    curves = [
        "| dataset | strategy | " + " | ".join(f"q = {q}" for q in MARKS) + " |",
        "|---|---|" + "---|" * len(MARKS),
    ]
    for ds, s in summary["datasets"].items():
        for name, marks in s["marks"].items():
            cells = []
            for q in MARKS:
                if str(q) not in marks:
                    cells.append("—")
                    continue
                v = marks[str(q)]
                cell = f"{v['expected'][0]:.2f}±{v['expected'][1]:.2f} ({v['valid'][0]:.2f})"
                if "test" in v:
                    cell += f" [{v['test'][0]:.2f}]"
                cells.append(cell)
            curves.append(f"| {ds} | {name} | " + " | ".join(cells) + " |")
    graph = [
        "| dataset | RE valid @500 | npred queries to it | RE test @500 | "
        "npred queries to it (test) | npred / RE test @100 |",
        "|---|---|---|---|---|---|",
    ]
    for ds, g in summary.get("graph", {}).items():
        graph.append(
            f"| {ds} | {g['re_final_valid']:.4f} | {fmt_q(g['npred_queries_to_re_final_valid'])} "
            f"| {g['re_final_test']:.4f} | {fmt_q(g['npred_queries_to_re_final_test'])} | "
            f"{g['at_100']['npred'][1]:.4f} / {g['at_100']['re'][1]:.4f} |"
        )
    speed = summary.get("speed")
    tables = {
        "nb201": "\n".join(head),
        "nb201_curves": "\n".join(curves),
        "nb201_graph": "\n".join(graph),
    }
    if speed:
        tables["nb201_speed"] = (
            f"`{speed['command']}`: **{speed['wall_seconds']:.1f} s** "
            f"({speed['workers']} worker processes)"
        )
    if "noise_free" in summary:
        rows = [
            "| dataset | queries | RE @100 | npred @100 | RE @500 | npred: queries to RE @500 | "
            "cells ≥ RE @500 | top-1% seed std |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for ds, s in summary["datasets"].items():
            for label, part in (("one seed (real)", s), ("seed mean", summary["noise_free"][ds])):
                m = part["marks"]
                rows.append(
                    f"| {ds} | {label} | {m['re']['100']['expected'][0]:.2f} | "
                    f"{m['npred']['100']['expected'][0]:.2f} | {part['re_final_expected']:.2f} | "
                    f"{fmt_q(part['queries_to_re_final']['npred'])} | "
                    + (
                        f"{s['top']['cells_reaching_target']} | "
                        f"{s['top']['top1pct_seed_std_mean']:.2f} |"
                        if part is s and "top" in s
                        else "– | – |"
                    )
                )
        tables["nb201_noise"] = "\n".join(rows)
    if "nvsk" in summary:
        nv = summary["nvsk"]
        rows = ["| N | expected @100 | expected @500 |", "|---|---|---|"]
        for n, c in nv["curves"].items():
            rows.append(f"| {n} | {c['at_100']:.2f} | {c['at_500']:.2f} |")
        rows.append(f"\nChosen N = {nv['chosen']} (best expected accuracy at 100 queries).")
        tables["nb201_nvsk"] = "\n".join(rows)
    return tables


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    # a refit per 10 queries costs ~3-9 s here: the reference gets fewer runs and queries
    ap.add_argument("--bananas-runs", type=int, default=20)
    ap.add_argument("--bananas-budget", type=int, default=200)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--nvsk-n", nargs="+", type=int, default=[10, 20, 50, 90])
    parts = ["tune", "final", "noise-free", "tau", "speed", "graph"]
    ap.add_argument("--parts", nargs="+", default=parts)
    ap.add_argument("--report", action="store_true", help="rewrite BENCHMARKS.md's tables")
    args = ap.parse_args()
    summary_path = OUT.parent / "nb201_summary.json"
    if args.report:
        summary = json.loads(summary_path.read_text())
        for name, table in report(summary).items():
            replace_table(name, table)
            print(table, end="\n\n")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary.setdefault("datasets", {})
    summary.setdefault("tau", {})
    npred_n = summary.get("nvsk", {}).get("chosen", 20)
    if "tune" in args.parts:
        nv = n_vs_k(TUNE, args.nvsk_n, args.runs, args.budget)
        npred_n = choose_n(nv)
        summary["nvsk"] = {
            "chosen": npred_n,
            "curves": {
                n: {"at_100": c["expected_mean"][99], "at_500": c["expected_mean"][-1]}
                for n, c in nv["curves"].items()
            },
        }
        atomic_write_json(summary_path, summary)
    if "final" in args.parts:
        # the cheap strategies of every dataset first, the iterative refits last
        for s in STRATEGIES:
            for ds in NB201_DATASETS:
                if s == "bananas":
                    run_strategy(ds, s, args.bananas_runs, args.bananas_budget, npred_n)
                else:
                    run_strategy(ds, s, args.runs, args.budget, npred_n)
                print(ds, s, "done", flush=True)
        for ds in NB201_DATASETS:
            summary["datasets"][ds] = summarise(merged(ds, npred_n, STRATEGIES))
            summary["datasets"][ds]["top"] = top_of_table(
                ds, summary["datasets"][ds]["re_final_expected"]
            )
        atomic_write_json(summary_path, summary)
    if "noise-free" in args.parts:  # the same search with seed-mean queries
        for s in ("re", "npred"):
            for ds in NB201_DATASETS:
                run_strategy(f"{ds}:mean", s, args.runs, args.budget, npred_n)
        summary["noise_free"] = {
            ds: summarise(merged(f"{ds}:mean", npred_n, ["re", "npred"])) for ds in NB201_DATASETS
        }
        atomic_write_json(summary_path, summary)
    if "tau" in args.parts:
        for ds in NB201_DATASETS:
            if ds not in summary["tau"]:
                summary["tau"][ds] = predictor_tau(ds)
                atomic_write_json(summary_path, summary)
    if "speed" in args.parts and "speed" not in summary:
        summary["speed"] = query_speed()
    if "graph" in args.parts:
        summary["graph"] = graph_summary()
    atomic_write_json(summary_path, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "datasets"}, indent=1))


if __name__ == "__main__":
    main()
