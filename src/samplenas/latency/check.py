"""How well a latency table predicts end-to-end time, next to FLOPs as a predictor, and the
correction fitted where the sum of blocks misses.

Random architectures are timed whole, as the static models ``export`` writes, under the
table's own settings; the table's predictions are scored by Kendall tau and mean absolute
percentage error, and analytic MFLOPs by Kendall tau (FLOPs have no millisecond scale,
so only their ranking is comparable).

The sum of blocks timed one by one misses systematically where a whole network runs
differently (caches warm from the previous block, larger feature maps spilling out of
them): on ``attentive`` measured/predicted grew with the input resolution (0.90, 1.02,
1.13, 1.08 at 192-288). ``fit`` times a balanced set of networks per resolution and
scales the prediction at each resolution r by the MEDIAN measured/predicted ratio of its
networks there: one number per resolution, robust to a preempted timing (a least-squares
scale and offset per resolution, tried first, turned negative on 3 networks timed on the
loaded 2-core VM). The table stores it with the networks it was fitted on, and ``check``
then scores the table with and without it on networks drawn to exclude those — so the
corrected figures are held-out figures. A scale per resolution keeps the prediction a
sum over blocks, so latency-conditioned sampling stays exact with the correction.
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
from samplenas.space import Arch, MBConvSpace

MIN_PER_RESOLUTION = 3  # a median of at least three networks per resolution
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


def _timed(
    space: MBConvSpace, table: LatencyTable, archs: list[Arch], progress: bool
) -> np.ndarray:
    return np.array(
        [
            time_arch(space, a, table.settings)
            for a in tqdm(archs, disable=not progress, unit="net", desc="networks")
        ]
    )


def fit_correction(
    space: MBConvSpace, table: LatencyTable, n: int, seed: int = 0, progress: bool = True
) -> dict[str, Any]:
    """Time ``n`` networks (the table's resolutions in turn), fit a scale per resolution
    (module docstring), and store it in ``table`` (the caller saves it); returns it."""
    here_matches(table)
    table.require_usable(space)
    need = MIN_PER_RESOLUTION * len(table.resolutions)
    if n < need:
        raise UserError(
            f"--n {n} is too few to fit a scale for each of the table's "
            f"{len(table.resolutions)} resolutions; use --n {need} or more"
        )
    archs = sample_archs(space, n, table.resolutions, seed, balanced=True)
    table.correction = None  # what is fitted is the uncorrected prediction's miss
    blocks = np.array([table.blocks_ms(space, a) for a in archs])
    before = np.array([table.predict(space, a) for a in archs])
    measured = _timed(space, table, archs, progress)
    res = np.array([int(a["resolution"]) for a in archs])
    scale, offset = {}, {}
    for r in table.resolutions:
        a = float(np.median(measured[res == r] / before[res == r]))
        scale[str(r)], offset[str(r)] = a, a * float(table.constant_ms or 0.0)
    table.correction = {"scale": scale, "offset_ms": offset}
    after = np.array([table.predict(space, a) for a in archs])
    table.correction["fitted_on"] = {
        "n": len(archs),
        "seed": seed,
        "in_sample_mape_before": mape(measured, before),
        "in_sample_mape_after": mape(measured, after),
        "archs": [a.to_json() for a in archs],
        "measured_ms": measured.tolist(),
        "blocks_ms": blocks.tolist(),
    }
    return table.correction


def fitted_archs(table: LatencyTable) -> list[Arch]:
    """The networks the table's correction was fitted on (none without a correction)."""
    if table.correction is None:
        return []
    return [Arch(a) for a in table.correction.get("fitted_on", {}).get("archs", [])]


def _scores(measured: np.ndarray, predicted: np.ndarray, archs: list[Arch]) -> dict[str, Any]:
    """Kendall tau, MAPE, and the median measured/predicted ratio per resolution."""
    res = np.array([int(a["resolution"]) for a in archs])
    ratio = measured / predicted
    return {
        "kendall_tau": kendall_tau(measured, predicted),
        "mape": mape(measured, predicted),
        "ratio_by_resolution": {
            str(r): float(np.median(ratio[res == r])) for r in sorted(set(res.tolist()))
        },
    }


def check_table(
    space: MBConvSpace, table: LatencyTable, n: int, seed: int = 1, progress: bool = True
) -> dict[str, Any]:
    """Time ``n`` random archs end to end (none the correction was fitted on); score the
    table without and with its correction, and FLOPs, as predictors of that."""
    here_matches(table)
    table.require_usable(space)
    fitted = fitted_archs(table)
    archs = sample_archs(space, n, table.resolutions, seed, exclude=fitted)
    raw = np.array([table.predict(space, a, corrected=False) for a in archs])
    mflops = np.array([space.cost(a).mflops for a in archs])
    measured = _timed(space, table, archs, progress)
    err = np.abs(raw - measured) / measured * 100.0
    rows = [
        {
            "arch": a.to_json(),
            "measured_ms": float(m),
            "predicted_ms": float(p),
            "mflops": float(f),
            "error_pct": float(e),
        }
        for a, m, p, f, e in zip(archs, measured, raw, mflops, err, strict=True)
    ]
    corrected = None
    if table.correction is not None:
        after = np.array([table.predict(space, a) for a in archs])
        for row, p in zip(rows, after, strict=True):
            row["corrected_ms"] = float(p)
        corrected = {
            **_scores(measured, after, archs),
            "fitted_on": len(fitted),
            "held_out": len(archs),  # every checked network is outside the fit
        }
    return {
        "space": space.name,
        "n": len(archs),
        **_scores(measured, raw, archs),
        "flops_tau": kendall_tau(measured, mflops),
        "worst": sorted(rows, key=lambda r: -r["error_pct"])[:WORST],
        "corrected": corrected,
        "settings": table.settings_json(),
        "networks": rows,
    }
