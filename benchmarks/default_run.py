"""The default recipe end to end: train on Fashion-MNIST, then test top-1 of the extremes.

Run: python benchmarks/default_run.py [RUN_DIR]  ->  benchmarks/results/default_run.json
Trains `configs/fashion.yaml` into RUN_DIR (default runs/fashion; resumes an interrupted
run, reuses a finished one), then reports the wall time and the held-out test top-1 of
the smallest and largest sub-networks after BN calibration.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "default_run.json"


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/fashion")
    started = time.perf_counter()
    if not (run / "run.json").is_file():
        argv = (
            ["train", "--resume", str(run)]
            if (run / "checkpoint.pt").is_file()
            else ["train", "--config", str(ROOT / "configs" / "fashion.yaml"), "--out", str(run)]
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
        "config": "configs/fashion.yaml",
        "train_wall_seconds": seconds,
        "history": summary["history"],
    }
    for arch in ("smallest", "largest"):
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
                "--json",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        result[f"test_{arch}"] = json.loads(proc.stdout)
    result["benchmark_seconds"] = time.perf_counter() - started
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
