"""How many BN-calibration batches a trained supernet needs before accuracy is stable.

Run: python benchmarks/bn_calibration.py runs/fashion  ->  benchmarks/results/bn_calibration.json
For the smallest, a median and the largest arch: validation top-1 after calibrating on
1, 2, 4, 8, 16 and 20 batches of 256 search-validation images.
``python benchmarks/bn_calibration.py --report`` rebuilds the BENCHMARKS.md table from the JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from md_tables import replace_table

from samplenas.io import atomic_write_json

OUT = Path(__file__).parent / "results" / "bn_calibration.json"


def report(result: dict) -> str:
    """The BENCHMARKS.md table: top-1 per arch and number of calibration batches."""
    counts = list(next(iter(result["archs"].values()))["val_top1"])
    lines = ["| N batches | " + " | ".join(counts) + " |", "|---" * (len(counts) + 1) + "|"]
    for label, row in result["archs"].items():
        name = f"median ({row['mflops']:.1f} MFLOPs)" if label == "median" else label
        lines.append(
            f"| {name} | " + " | ".join(f"{v:.2f}" for v in row["val_top1"].values()) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:] == ["--report"]:
        table = report(json.loads(OUT.read_text()))
        replace_table("bn_calibration", table)
        print(table)
        return
    from samplenas.train.runs import load_run

    run = load_run(sys.argv[1] if len(sys.argv) > 1 else "runs/fashion")
    space = run.space
    archs = space.sample_many(np.random.default_rng(0), 1001)
    median = sorted(archs, key=space.mflops)[500]
    val = run.eval_loader("val")
    calib = run.calibration(20)
    result: dict = {"run": str(run.path), "batch_size": 256, "archs": {}}
    for label, arch in (
        ("smallest", space.smallest()),
        ("median", median),
        ("largest", space.largest()),
    ):
        rows = {}
        for n in (1, 2, 4, 8, 16, 20):
            rows[n] = run.score(arch, calib[:n], val)["top1"]
            print(label, n, rows[n], flush=True)
        result["archs"][label] = {"mflops": space.mflops(arch), "val_top1": rows}
    atomic_write_json(OUT, result)


if __name__ == "__main__":
    main()
