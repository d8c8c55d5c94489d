"""pareto.png frames the front and the bulk of the points; chance-level outliers sit at the edge."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from samplenas.report import front_figure, plot_front, y_frame  # noqa: E402
from samplenas.search.pareto import pareto_front  # noqa: E402


def synthetic_archive(outliers: int = 4) -> tuple[list[dict], list[dict]]:
    """200 sub-networks at 84-91 % rising with FLOPs, plus ``outliers`` at chance (10 %)."""
    rng = np.random.default_rng(0)
    mflops = rng.uniform(3, 30, 200)
    top1 = 84 + 6 * (mflops - 3) / 27 + rng.normal(0, 0.4, 200)
    points = [{"mflops": float(m), "val_top1": float(t)} for m, t in zip(mflops, top1, strict=True)]
    points += [{"mflops": 10.0 + i, "val_top1": 10.0} for i in range(outliers)]
    idx = pareto_front([p["mflops"] for p in points], [p["val_top1"] for p in points])
    front = [{**points[i], "test_top1": points[i]["val_top1"] - 0.3} for i in idx]
    return points, front


def test_axes_frame_the_front_and_outliers_sit_on_the_edge():
    points, front = synthetic_archive(outliers=4)
    fig = front_figure(points, front, "synthetic")
    try:
        ax = fig.axes[0]
        bottom, top = ax.get_ylim()
        bulk = [p["val_top1"] for p in points if p["val_top1"] > 50]
        every_front_value = [m[k] for m in front for k in ("val_top1", "test_top1")]
        assert bottom <= min(bulk) and bottom <= min(every_front_value)
        assert top >= max(every_front_value)
        assert bottom > 80 and top - bottom < 12  # the 10 % points no longer set the scale
        marks = [c for c in ax.collections if c.get_gid() == "outliers"]
        assert len(marks) == 1
        offsets = marks[0].get_offsets()
        assert len(offsets) == 4 and np.allclose(offsets[:, 1], bottom)
        assert sorted(offsets[:, 0]) == [10.0, 11.0, 12.0, 13.0]
        assert not marks[0].get_clip_on()  # drawn on the edge, not cut off by it
        counts = [t.get_text() for t in ax.texts if t.get_gid() == "outlier-count"]
        assert counts == ["4 below"]
        # the ordinary points are all drawn where they are
        drawn = [c for c in ax.collections if c.get_gid() != "outliers"]
        assert sum(len(c.get_offsets()) for c in drawn) == 200
    finally:
        plt.close(fig)


def test_no_outliers_no_edge_markers_and_nothing_cut_off():
    points, front = synthetic_archive(outliers=0)
    fig = front_figure(points, front, "synthetic")
    try:
        ax = fig.axes[0]
        bottom, top = ax.get_ylim()
        values = [p["val_top1"] for p in points]
        assert bottom < min(values) and top > max(values)
        assert not [c for c in ax.collections if c.get_gid() == "outliers"]
        assert not ax.texts
    finally:
        plt.close(fig)


def test_y_frame_needs_a_gap_of_three_iqrs():
    bottom, top, threshold = y_frame([88.0, 88.5, 89.0, 89.5, 90.0, 10.0])
    assert threshold == pytest.approx(88.125 - 3 * 1.25)  # quartiles 88.125 and 89.375
    assert bottom == pytest.approx(88.0 - 0.5) and top == pytest.approx(90.0 + 0.5)
    assert y_frame([70.0, 80.0, 90.0])[0] < 70.0  # a wide but even spread keeps every point
    assert y_frame([89.0, 89.0, 89.0, 88.2])[2] == pytest.approx(88.8 - 3 * 1.0)  # IQR >= 1


def test_plot_front_writes_a_png(tmp_path):
    points, front = synthetic_archive()
    path = tmp_path / "search" / "pareto.png"
    plot_front(points, front, path, "synthetic")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(path.parent.glob(".*tmp"))  # written atomically, no leftovers


def test_a_low_front_member_stays_in_the_frame_where_it_is():
    points, _ = synthetic_archive(outliers=3)
    points.append({"mflops": 1.0, "val_top1": 40.0})  # cheapest of all: on the front
    idx = pareto_front([p["mflops"] for p in points], [p["val_top1"] for p in points])
    front = [points[i] for i in idx]
    assert front[0]["val_top1"] == 40.0
    fig = front_figure(points, front, "synthetic")
    try:
        ax = fig.axes[0]
        bottom, _ = ax.get_ylim()
        assert 10.0 < bottom < 40.0  # the member is framed, the chance-level points are not
        line = next(ln for ln in ax.lines if ln.get_label() == "Pareto front (val)")
        assert list(line.get_ydata()) == [m["val_top1"] for m in front]
        marks = [c for c in ax.collections if c.get_gid() == "outliers"]
        assert len(marks[0].get_offsets()) == 3
    finally:
        plt.close(fig)
