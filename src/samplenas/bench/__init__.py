"""Tabular benchmarks and the sampler-comparison harness."""

from samplenas.bench.table import Evaluator, Table, load_benchmark

__all__ = ["Evaluator", "Table", "load_benchmark"]
