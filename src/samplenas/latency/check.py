"""How well a latency table predicts end-to-end time, next to FLOPs as a predictor.

Random architectures are timed whole, as the static models ``export`` writes, under the
table's own settings; the table's predictions are scored by Kendall tau and mean absolute
percentage error, and analytic MFLOPs by Kendall tau (FLOPs have no millisecond scale,
so only their ranking is comparable). Where the sum of blocks misses systematically, a
linear correction ``measured ~ a*predicted + b*MFLOPs + c`` is fitted on the first half of
the networks and scored on the other half, so what is reported is how it generalises.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from samplenas.errors import UserError
from samplenas.latency.measure import sample_archs, time_arch
from samplenas.latency.table import LatencyTable, differing_setting
from samplenas.predictors import kendall_tau
from samplenas.space import MBConvSpace

MIN_FOR_CORRECTION = 12  # 3 coefficients: fit on at least twice as many networks
WORST = 3


def here_matches(table: LatencyTable) -> None:
    """A check times on this machine: the table must have been measured on one like it."""
    s = table.settings
    # the table's settings with what this machine is in place of what it recorded
    here = dataclasses.replace(s, torch=torch.__version__, hardware="")
    diff = differing_setting(s.to_json(), here.to_json())
    if diff:
        raise UserError(
            f"the latency table was measured with {diff} (this machine); check it where "
            "it was built, or build a table here"
        )


def mape(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute percentage error of ``predicted`` against ``measured``."""
    return float(np.mean(np.abs(predicted - measured) / measured) * 100.0)


def check_table(
    space: MBConvSpace, table: LatencyTable, n: int, seed: int = 1, progress: bool = True
) -> dict[str, Any]:
    """Time ``n`` random archs end to end; score the table and FLOPs as predictors of that."""
    here_matches(table)
    archs = sample_archs(space, n, table.resolutions, seed)
    predicted = np.array([table.predict(space, a) for a in archs])
    mflops = np.array([space.cost(a).mflops for a in archs])
    measured = np.array(
        [
            time_arch(space, a, table.settings)
            for a in tqdm(archs, disable=not progress, unit="net", desc="networks")
        ]
    )
    err = np.abs(predicted - measured) / measured * 100.0
    rows = [
        {
            "arch": a.to_json(),
            "measured_ms": float(m),
            "predicted_ms": float(p),
            "mflops": float(f),
            "error_pct": float(e),
        }
        for a, m, p, f, e in zip(archs, measured, predicted, mflops, err, strict=True)
    ]
    return {
        "space": space.name,
        "n": len(archs),
        "kendall_tau": kendall_tau(measured, predicted),
        "mape": mape(measured, predicted),
        "flops_tau": kendall_tau(measured, mflops),
        "worst": sorted(rows, key=lambda r: -r["error_pct"])[:WORST],
        "correction": held_out_correction(measured, predicted, mflops),
        "settings": table.settings_json(),
        "networks": rows,
    }


def held_out_correction(
    measured: np.ndarray, predicted: np.ndarray, mflops: np.ndarray
) -> dict[str, Any] | None:
    """Fit ``measured ~ a*predicted + b*MFLOPs + c`` on the first half, score the second
    half before and after (None when there are too few networks to do both)."""
    n = len(measured)
    if n < MIN_FOR_CORRECTION:
        return None
    half = n // 2
    features = np.column_stack([predicted, mflops, np.ones(n)])
    coef, *_ = np.linalg.lstsq(features[:half], measured[:half], rcond=None)
    corrected = features[half:] @ coef
    return {
        "fitted_on": half,
        "scored_on": n - half,
        "coefficients": {
            "predicted": float(coef[0]),
            "mflops": float(coef[1]),
            "intercept_ms": float(coef[2]),
        },
        "held_out_mape_before": mape(measured[half:], predicted[half:]),
        "held_out_mape_after": mape(measured[half:], corrected),
        "held_out_tau_after": kendall_tau(measured[half:], corrected),
    }
