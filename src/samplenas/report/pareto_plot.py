"""``pareto.png``: the evaluated sub-networks and the Pareto front, framed on what matters.

A search evaluates a few sub-networks at chance level (10 % on ten classes) next to a front
at 85-92 %; scaling the y-axis to every point squashes the front into a flat line at the
top. The axis is framed on the front and the bulk of the points instead, and points far
below the bulk are drawn as markers on the bottom edge with a count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samplenas.io import atomic_write

Row = Mapping[str, Any]

OUTLIER_IQRS = 3.0  # how many interquartile ranges below the lower quartile is "far"
MIN_IQR = 1.0  # top-1 points: an IQR narrower than this would call ordinary noise far


def y_frame(values: Sequence[float], keep: Sequence[float] = ()) -> tuple[float, float, float]:
    """(bottom, top, threshold): the y-limits framing ``values`` without their low outliers.

    A value below ``threshold`` (lower quartile minus 3 IQRs, the IQR at least one point)
    is an outlier; the limits span the rest and every value of ``keep`` (the front, which
    is what the plot is for) plus a 5 % margin (at least half a point).
    """
    v = np.asarray(values, dtype=float)
    q25, q75 = np.percentile(v, [25, 75])
    threshold = float(q25 - OUTLIER_IQRS * max(q75 - q25, MIN_IQR))
    kept = np.concatenate([v[v >= threshold], np.asarray(keep, dtype=float)])
    lo, hi = float(kept.min()), float(kept.max())
    margin = max(0.05 * (hi - lo), 0.5)
    return lo - margin, hi + margin, threshold


def front_figure(
    points: Sequence[Row],
    front: Sequence[Row],
    title: str,
    cost_key: str = "mflops",
    cost_label: str = "MFLOPs",
):
    """The figure of ``points`` (every evaluated sub-network) and ``front`` (Pareto members,
    with ``test_top1`` when measured); rows carry ``cost_key`` and ``val_top1``. Front
    members timed end to end (``measured_ms``) are drawn at their measured ms too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    x = np.array([r[cost_key] for r in points], dtype=float)
    y = np.array([r["val_top1"] for r in points], dtype=float)
    fx = np.array([m[cost_key] for m in front], dtype=float)
    fy = np.array([m["val_top1"] for m in front], dtype=float)
    tested = bool(front) and all("test_top1" in m for m in front)
    ty = np.array([m["test_top1"] for m in front], dtype=float) if tested else np.zeros(0)
    values = np.concatenate([y, fy, ty])
    if not len(values):
        values = np.zeros(1)
    bottom, top, _ = y_frame(values, keep=np.concatenate([fy, ty]))
    low = y < bottom  # only points outside the frame; every front member is inside it
    ax.scatter(x[~low], y[~low], s=6, alpha=0.35, label=f"evaluated ({len(points)})")
    ax.plot(fx, fy, "o-", color="C3", label="Pareto front (val)")
    if tested:
        ax.plot(fx, ty, "s--", color="C2", label="front on test")
    if front and all("measured_ms" in m for m in front):
        mx = np.array([m["measured_ms"] for m in front], dtype=float)
        ax.plot(mx, fy, "x", color="C4", label="front at its measured ms (val)")
    if low.any():
        ax.scatter(
            x[low],
            np.full(int(low.sum()), bottom),
            marker="v",
            s=24,
            color="C1",
            clip_on=False,
            zorder=3,
            gid="outliers",
            label=f"{int(low.sum())} below {bottom:.1f} % (drawn at the edge)",
        )
        ax.annotate(
            f"{int(low.sum())} below",
            (0.01, 0.02),
            xycoords="axes fraction",
            fontsize=8,
            color="C1",
            gid="outlier-count",
        )
    ax.set_ylim(bottom, top)
    ax.set_xlabel(cost_label)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_front(
    points: Sequence[Row], front: Sequence[Row], path: Path, title: str, **axis: str
) -> None:
    """Write ``front_figure`` to ``path`` (PNG), atomically like every file of a run;
    ``axis``: ``cost_key`` and ``cost_label`` of the x-axis (MFLOPs by default)."""
    import matplotlib.pyplot as plt

    fig = front_figure(points, front, title, **axis)
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)
