"""Two supernet recipes on the same sub-networks: paired validation top-1.

Run (after ``samplenas predictor fit --run RUN --n 64`` on each run, which scores the
same seeded uniform sub-networks on the search-validation split after BN calibration):

    python benchmarks/recipe_compare.py \
        benchmarks/results/predictor_fashion_full/dataset_n1024.json runs/fashion-nr1 \
        --out benchmarks/results/recipe_compare_nr1.json

Each side is a run directory (its ``predictor/dataset.json``) or such a dataset file.

Reports the mean paired difference (second run minus first) over all shared
sub-networks and per FLOPs third, with a paired t-test, so that a recipe which helps the
extremes can be checked for what it does to the middle of the space.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

from samplenas.io import atomic_write_json


def load_scores(source: Path) -> dict[str, tuple[float, float]]:
    """Arch JSON -> (MFLOPs, val top-1) from a run's predictor dataset (or the file)."""
    path = source / "predictor" / "dataset.json" if source.is_dir() else source
    rows = json.loads(path.read_text())
    return {json.dumps(r["arch"], sort_keys=True): (r["mflops"], r["val_top1"]) for r in rows}


def paired(diff: np.ndarray) -> dict[str, float]:
    test = stats.ttest_1samp(diff, 0.0) if len(diff) > 1 else None
    return {
        "n": int(len(diff)),
        "mean_gain": round(float(diff.mean()), 3),
        "std": round(float(diff.std(ddof=1)), 3) if len(diff) > 1 else 0.0,
        "p": round(float(test.pvalue), 4) if test is not None else 1.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("base", type=Path)
    ap.add_argument("other", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    base, other = load_scores(args.base), load_scores(args.other)
    shared = sorted(set(base) & set(other), key=lambda k: base[k][0])
    if not shared:
        raise SystemExit("the two runs' predictor datasets share no sub-network")
    mflops = np.array([base[k][0] for k in shared])
    diff = np.array([other[k][1] - base[k][1] for k in shared])
    thirds = np.array_split(np.arange(len(shared)), 3)
    result = {
        "base": str(args.base),
        "other": str(args.other),
        "all": paired(diff),
        "by_flops_third": [
            {
                "mflops_range": [round(float(mflops[i[0]]), 2), round(float(mflops[i[-1]]), 2)],
                **paired(diff[i]),
            }
            for i in thirds
            if len(i)
        ],
        "base_mean_top1": round(float(np.mean([base[k][1] for k in shared])), 3),
        "other_mean_top1": round(float(np.mean([other[k][1] for k in shared])), 3),
    }
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
