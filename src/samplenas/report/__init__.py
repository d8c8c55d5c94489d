"""Plots and reports drawn from a run's results (plain rows; nothing here evaluates)."""

from samplenas.report.pareto_plot import front_figure, plot_front, y_frame

__all__ = ["front_figure", "plot_front", "y_frame"]
