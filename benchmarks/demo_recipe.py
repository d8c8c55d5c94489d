"""What `make demo` spends its minutes on: the recipe probes and the fresh-clone timings.

    python benchmarks/demo_recipe.py probe NAME    # train one probe, score its extremes
    python benchmarks/demo_recipe.py fresh-clone   # time `make demo` in a fresh clone
    python benchmarks/demo_recipe.py --report      # rebuild BENCHMARKS.md's two tables

Each probe is the shipped ``demo`` recipe with a few overrides, trained in
``runs/demo-probes/NAME`` (a killed probe resumes) and scored on the 5,000
search-validation images after BN calibration on training images: the recipe was chosen
on validation. The held-out test numbers come only from the fresh-clone runs of the
chosen recipe. Results: ``benchmarks/results/demo_recipe.json``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import date
from pathlib import Path

from md_tables import replace_table

from samplenas.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "demo_recipe.json"
RUNS = ROOT / "runs" / "demo-probes"

# One epoch of 55,000 training images is 429 steps of 128. Every probe trains with uniform
# sampling, no label smoothing, dropout, stochastic depth or augmentation, and distillation
# ramped in over the first epoch, as the shipped recipe does.
ALL = {"data.train_subset": "null"}  # the probes ran on all 55,000 training images
PROBES: dict[str, dict[str, str]] = {
    "1 epoch, 2 sampled, batch 64": {
        **ALL,
        "train.epochs": "1",
        "train.num_random": "2",
        "train.batch_size": "64",
    },
    "1 epoch, 2 sampled, labels only": {
        **ALL,
        "train.epochs": "1",
        "train.num_random": "2",
        "train.distill": "false",
    },
    "2 epochs of 40,000, 1 sampled": {"train.num_random": "1", "data.train_subset": "40000"},
    "2 epochs, extremes only": {**ALL},
}


def load() -> dict:
    return json.loads(OUT.read_text()) if OUT.is_file() else {"probes": {}, "fresh_clone": []}


def samplenas(*argv: str) -> str:
    exe = Path(sys.executable).with_name("samplenas")
    return subprocess.run([str(exe), *argv], check=True, capture_output=True, text=True).stdout


def probe(name: str) -> dict:
    """Train probe ``name`` (resuming a killed one) and score its extremes on validation."""
    run = RUNS / re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    overrides = [arg for k, v in PROBES[name].items() for arg in ("--set", f"{k}={v}")]
    start = time.perf_counter()
    if (run / "checkpoint.pt").is_file():
        samplenas("train", "--resume", str(run), "--no-progress")
    else:
        samplenas("train", "--config", "demo", "--out", str(run), "--no-progress", *overrides)
    seconds = time.perf_counter() - start
    row = {"overrides": PROBES[name], "train_seconds": round(seconds, 1)}
    row["steps"] = json.loads((run / "run.json").read_text())["steps"]
    for arch in ("largest", "smallest"):
        scored = json.loads(samplenas("eval", "--run", str(run), "--arch", arch, "--json"))
        row[f"val_top1_{arch}"] = scored["top1"]
    return row


def spread(values: Iterable[float]) -> list[float]:
    values = list(values)
    return [min(values), max(values)]


def fresh_clone() -> dict:
    """`make demo` from a fresh clone of this checkout's HEAD, timed end to end."""
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "samplenas"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
        ).stdout.strip()
        start = time.perf_counter()
        done = subprocess.run(["make", "demo"], cwd=clone, capture_output=True, text=True)
        minutes = (time.perf_counter() - start) / 60
        if done.returncode:
            raise SystemExit(f"make demo failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        front = json.loads((clone / "runs" / "demo" / "search" / "pareto.json").read_text())
    members = front["front"]
    best = max(members, key=lambda m: m["val_top1"])
    timing = re.search(r"time:\s+([\d.]+) min training, ([\d.]+) min in all", done.stdout)
    return {
        "date": date.today().isoformat(),
        "commit": head,
        "make_demo_minutes": round(minutes, 1),
        "training_minutes": float(timing.group(1)) if timing else None,
        "samplenas_demo_minutes": float(timing.group(2)) if timing else None,
        "best_by_val": {k: best[k] for k in ("mflops", "val_top1", "test_top1")},
        "front_test_top1": spread(m["test_top1"] for m in members),
        "front_mflops": spread(m["mflops"] for m in members),
        "front_size": len(members),
    }


def report(result: dict) -> dict[str, str]:
    lines = [
        "| probe (`demo` recipe with …) | steps | validation top-1 largest | smallest |",
        "|---|---|---|---|",
    ]
    for name, row in result["probes"].items():
        sets = ", ".join(f"`{k}={v}`" for k, v in row["overrides"].items()) or "nothing"
        lines.append(
            f"| {name} ({sets}) | {row['steps']} | {row['val_top1_largest']:.2f} | "
            f"{row['val_top1_smallest']:.2f} |"
        )
    runs = [
        "| date | commit | `make demo` (min) | training | `samplenas demo` | best by validation: "
        "MFLOPs, val / **test** top-1 | front: test top-1, MFLOPs |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["fresh_clone"]:
        b = r["best_by_val"]
        lo, hi = r["front_test_top1"]
        runs.append(
            f"| {r['date']} | {r['commit']} | {r['make_demo_minutes']:.1f} | "
            f"{r['training_minutes']:.1f} | {r['samplenas_demo_minutes']:.1f} | "
            f"{b['mflops']:.1f}, {b['val_top1']:.2f} / **{b['test_top1']:.2f}** | "
            f"{lo:.2f}–{hi:.2f}, {r['front_mflops'][0]:.1f}–{r['front_mflops'][1]:.1f} "
            f"({r['front_size']} members) |"
        )
    return {"demo_probes": "\n".join(lines), "demo_runs": "\n".join(runs)}


def main(argv: list[str]) -> None:
    result = load()
    if argv[:1] == ["probe"] and len(argv) == 2 and argv[1] in PROBES:
        result["probes"][argv[1]] = probe(argv[1])
    elif argv == ["fresh-clone"]:
        result["fresh_clone"].append(fresh_clone())
    elif argv != ["--report"]:
        names = "; ".join(PROBES)
        raise SystemExit(f"usage: demo_recipe.py probe NAME | fresh-clone | --report ({names})")
    atomic_write_json(OUT, result)
    for name, table in report(result).items():
        replace_table(name, table)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
