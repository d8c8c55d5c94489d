"""Latency study (issue 22): table build time, table vs FLOPs as predictors of measured
latency (with and without the fitted correction, on held-out networks), and a search on
the default supernet under a latency budget beside one under a FLOPs budget.

Run:    python benchmarks/latency_study.py [--parts build-fashion check-fashion ...]
Report: python benchmarks/latency_study.py --report   (rewrites the BENCHMARKS.md tables)

Every part writes its own JSON under benchmarks/results/latency/ and is skipped when that
file exists, so a killed study resumes where it stopped (a table build itself resumes
from its table file). Timing needs a quiet machine: every timed part records
``os.getloadavg()`` before, during (every 10 s) and after, and the report prints the
highest load seen next to each figure.

The search part needs the default supernet run (``python benchmarks/default_run.py``,
about an hour here): ``--run runs/fashion-gemm``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from md_tables import replace_table

from samplenas.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "latency"
SPACES = {"fashion": "attentive-fashion", "attentive": "attentive"}
# attentive: the smallest resolution (the minimum) unless --all-resolutions
BUILD_GOAL_S = 600.0
LOAD_QUIET = 1.5


@contextmanager
def load_watch(every_s: float = 10.0) -> Iterator[dict[str, Any]]:
    """The 1-minute load average before, every ``every_s`` during, and after a block."""
    rec: dict[str, Any] = {"load_before": os.getloadavg()[0], "load_during": []}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every_s):
            rec["load_during"].append(os.getloadavg()[0])

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        stop.set()
        thread.join()
        rec["load_after"] = os.getloadavg()[0]
        rec["load_max"] = max([rec["load_before"], rec["load_after"], *rec["load_during"]])


def cli(*argv: str) -> Any:
    """``samplenas ARGV --json`` in a child process, its JSON output."""
    proc = subprocess.run(
        [sys.executable, "-m", "samplenas.cli", *argv, "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout)


def table_path(key: str) -> Path:
    return OUT / f"{SPACES[key]}.table.json"


def part(name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The part's JSON, computed (and written) only when its file does not exist yet."""
    path = OUT / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = run()
    atomic_write_json(path, result)
    print(name, json.dumps({k: v for k, v in result.items() if k != "networks"})[:600])
    return result


def build(key: str, resolutions: list[int]) -> dict[str, Any]:
    """Time ``latency build`` of a space (1 thread, batch 1, channels-last)."""
    path = table_path(key)
    resumed = path.is_file()
    argv = ["latency", "build", "--space", SPACES[key], "--out", str(path), "--no-progress"]
    for r in resolutions:
        argv += ["--resolution", str(r)]
    with load_watch() as load:
        t0 = time.perf_counter()
        summary = cli(*argv)
        seconds = time.perf_counter() - t0
    return {
        "space": SPACES[key],
        "seconds": seconds,
        "resumed": resumed,  # True: the time is of the rest only, not a whole build
        "entries": summary["entries"],
        "resolutions": resolutions,
        "settings": summary["settings"],
        **load,
    }


def check(key: str, n: int, fit_n: int) -> dict[str, Any]:
    """Fit the correction on ``fit_n`` networks, then check on ``n`` other (held-out) ones."""
    path = str(table_path(key))
    with load_watch() as load:
        fit = cli("latency", "fit", "--space", SPACES[key], "--table", path, "--n", str(fit_n))
        report = cli(
            "latency", "check", "--space", SPACES[key], "--table", path, "--n", str(n),
            "--seed", "2", "--no-progress",
        )  # fmt: skip
    return {"fit": fit, "check": report, **load}


def main() -> None:
    ap = argparse.ArgumentParser()
    parts = ["build-fashion", "build-attentive", "check-fashion", "check-attentive", "search"]
    ap.add_argument("--parts", nargs="+", default=parts, choices=parts)
    ap.add_argument("--report", action="store_true", help="rewrite BENCHMARKS.md's tables")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for key in ("fashion", "attentive"):
        if f"build-{key}" in args.parts:
            part(f"build-{key}", lambda key=key: build(key, []))


if __name__ == "__main__":
    main()
