"""Search throughput with 1 and 2 processes under torchrun, and what it predicts for N GPUs.

Run:    python benchmarks/search_scaling.py [--run DIR] [--procs 1 2] [--population 16]
        [--iterations 2]
Report: python benchmarks/search_scaling.py --report   (rewrites the BENCHMARKS.md section)

Every process count searches its own fresh copy of one small trained run (the ``tiny``
recipe, trained for --epochs into --work unless --run names one) with one thread a
process (OMP_NUM_THREADS=1), so the evaluations are the same and only their split
differs. Each count writes benchmarks/results/scaling/procs-N.json and is skipped when
the file exists (a killed benchmark resumes; --force measures again). Other jobs share
this machine: os.getloadavg() is recorded before and after each timing, and the report
shows it beside the numbers.

Model for N devices: a search of E evaluations takes E * c / (N * e) seconds (E * c for
one device), where c is
the measured wall time per evaluation of the 1-process search (evaluation, archive
append) and e the measured parallel efficiency of the largest process count P measured,
rate(P) / (P * rate(1)) (what load balance by MFLOPs and the per-round gathers cost).
The model assumes e holds at larger N (generations of at least 8 x N candidates, so
every round splits) and that the devices are alike; c is this CPU's and must be
remeasured on the target device.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from md_tables import replace_table, sig

from samplenas.io import atomic_write_json

OUT = Path(__file__).parent / "results" / "scaling"
PAPER_EVALUATIONS = 5248  # AttentiveNAS: P = 512, 20 iterations of 128 + 128
PREDICT_FOR = (1, 2, 4, 8, 16, 64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trained_run(args: argparse.Namespace) -> Path:
    """The run searched: --run, or the tiny recipe trained into --work once."""
    if args.run:
        return Path(args.run)
    run = Path(args.work) / "trained"
    if not (run / "checkpoint.pt").is_file():
        shutil.rmtree(run, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "samplenas.cli", "train", "--config", "tiny"]
            + ["--out", str(run), "--epochs", str(args.epochs), "--no-progress"],
            check=True,
        )
    return run


def measure(procs: int, run: Path, args: argparse.Namespace) -> dict:
    """One timed search with ``procs`` processes on a fresh copy of ``run``."""
    path = OUT / f"procs-{procs}.json"
    if path.is_file() and not args.force:
        return json.loads(path.read_text())
    copy = Path(args.work) / f"procs-{procs}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("search", "predictor"))
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1"]
    command += ["--nproc_per_node", str(procs), "--master_addr", "127.0.0.1"]
    command += ["--master_port", str(free_port()), "-m", "samplenas.cli", "search"]
    command += ["--run-dir", str(copy), "--population", str(args.population)]
    command += ["--iterations", str(args.iterations), "--json"]
    load_before, start = os.getloadavg(), time.perf_counter()
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    wall = time.perf_counter() - start
    search = json.loads(proc.stdout)
    result = {
        "procs": procs,
        "threads_per_process": 1,
        "run": str(run),
        "population": args.population,
        "iterations": args.iterations,
        "command_seconds": wall,
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "cpus": os.cpu_count(),
        **{k: v for k, v in search.items() if k not in ("front", "archive", "plot")},
        "front_size": len(search["front"]),
        "archive_sha256": _sha(copy / "search" / "archive.jsonl"),
    }
    atomic_write_json(path, result)
    return result


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def prediction(results: dict[int, dict]) -> dict:
    """The model of the module docstring: c from 1 process, e from the most processes."""
    one, most = results[1], results[max(results)]
    c = one["evaluation_seconds"] / one["new_evaluations"]
    e = most["evaluations_per_minute"] / (most["devices"] * one["evaluations_per_minute"])
    return {
        "seconds_per_evaluation": c,
        "efficiency": e,
        "efficiency_from_processes": most["devices"],
        "devices": {
            str(n): {
                "evaluations_per_minute": 60.0 * n * eff / c,
                "paper_search_hours": PAPER_EVALUATIONS * c / (n * eff) / 3600,
            }
            for n, eff in ((n, 1.0 if n == 1 else e) for n in PREDICT_FOR)
        },
    }


def load_results() -> dict[int, dict]:
    return {
        int(p.stem.split("-")[1]): json.loads(p.read_text())
        for p in sorted(OUT.glob("procs-*.json"))
    }


def report(results: dict[int, dict]) -> str:
    """The BENCHMARKS.md tables: measured 1 vs 2 processes, then the model's prediction."""
    lines = [
        "| processes (1 thread each) | evaluations | evaluations/min | per process | "
        "busy | speed-up | load average (1 min) before / after | same archive |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = results[1]
    for n, r in sorted(results.items()):
        speedup = r["evaluations_per_minute"] / base["evaluations_per_minute"]
        lines.append(
            f"| {n} | {r['new_evaluations']} | {sig(r['evaluations_per_minute'])} | "
            f"{sig(r['evaluations_per_minute_per_device'])} | "
            f"{100 * r['device_busy_fraction']:.0f} % | {speedup:.2f}x | "
            f"{r['loadavg_before'][0]:.1f} / {r['loadavg_after'][0]:.1f} | "
            f"{'yes' if r['archive_sha256'] == base['archive_sha256'] else 'NO'} |"
        )
    model = prediction(results)
    lines += [
        "",
        f"Model: c = {model['seconds_per_evaluation']:.3f} s per evaluation (1 process), "
        f"parallel efficiency e = {100 * model['efficiency']:.0f} % "
        f"({model['efficiency_from_processes']} processes); on N devices the paper's "
        f"search ({PAPER_EVALUATIONS:,} evaluations) takes {PAPER_EVALUATIONS} c / (N e) "
        "for N > 1.",
        "",
        "| devices N | predicted evaluations/min | 5,248 evaluations (paper's count) at this c |",
        "|---|---|---|",
    ]
    for n, p in model["devices"].items():
        hours = p["paper_search_hours"]
        span = f"{hours:.2f} h" if hours >= 1 else f"{60 * hours:.1f} min"
        lines.append(f"| {n} | {sig(p['evaluations_per_minute'])} | {span} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", action="store_true", help="rebuild BENCHMARKS.md from the JSON")
    p.add_argument("--run", help="a trained run to search (default: tiny, trained into --work)")
    p.add_argument("--work", default="runs/scaling", help="scratch folder (run copies)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the tiny run")
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--force", action="store_true", help="measure again what has a JSON")
    args = p.parse_args()
    if args.report:
        table = report(load_results())
        replace_table("search_scaling", table)
        print(table)
        return
    if 1 not in args.procs:
        raise SystemExit("--procs needs 1: the model's per-evaluation cost comes from it")
    run = trained_run(args)
    for procs in args.procs:
        r = measure(procs, run, args)
        print(
            f"{procs} process(es): {r['evaluations_per_minute']:.0f} evaluations/min, "
            f"busy {100 * r['device_busy_fraction']:.0f} %, load {r['loadavg_before'][0]:.1f}",
            flush=True,
        )
    print(report(load_results()))


if __name__ == "__main__":
    main()
