"""The default recipe end to end: train on Fashion-MNIST, then test top-1 of the extremes.

Run: python benchmarks/default_run.py [RUN_DIR] [--out JSON]
(default runs/fashion-gemm -> benchmarks/results/default_run_gemm.json; the same recipe
before 1x1 convolutions became GEMMs is runs/fashion-nr1 -> default_run_nr1.json, the
earlier recipe's 9-epoch run runs/fashion -> default_run.json). Trains the `fashion` recipe
into RUN_DIR (resumes an interrupted run, reuses a finished one, whatever recipe it was
started with), then reports the wall time and the held-out test top-1 of the smallest and
largest sub-networks after BN calibration: of the trained weights, and also of their
moving average when the run kept one (`train.ema_decay`).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from samplenas.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "default_run_gemm.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="runs/fashion-gemm")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    run = Path(args.run)
    started = time.perf_counter()
    if not (run / "run.json").is_file():
        argv = (
            ["train", "--resume", str(run)]
            if (run / "checkpoint.pt").is_file()
            else ["train", "--config", "fashion", "--out", str(run)]
        )
        subprocess.run([sys.executable, "-m", "samplenas.cli", *argv, "--no-progress"], check=True)
    summary = json.loads((run / "run.json").read_text())
    seconds = summary.get("train_seconds")
    log = run.parent / f"{run.name}.log"
    if seconds is None and log.is_file():  # runs started before train_seconds was recorded
        match = re.search(r"wall_seconds=(\d+)", log.read_text())
        seconds = float(match.group(1)) if match else None
    result = {
        "run": str(run),
        "config": "fashion",
        "recipe": yaml.safe_load((run / "config.yaml").read_text())["train"],
        "train_wall_seconds": seconds,
        "history": summary["history"],
    }
    weights = ["trained", "ema"] if result["recipe"].get("ema_decay") else ["trained"]
    for arch, kind in [(a, w) for a in ("smallest", "largest") for w in weights]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "samplenas.cli",
                "eval",
                "--run",
                str(run),
                "--arch",
                arch,
                "--split",
                "test",
                "--weights",
                kind,
                "--json",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        key = f"test_{arch}" if kind == "trained" else f"test_{arch}_ema"
        result[key] = json.loads(proc.stdout)
    result["benchmark_seconds"] = time.perf_counter() - started
    atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("history", "recipe")}, indent=2))


if __name__ == "__main__":
    main()
