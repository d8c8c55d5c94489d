"""Cell spaces of tabular benchmarks: NAS-Bench-Graph and NAS-Bench-101."""

from samplenas.space.cells.nasbench101 import NASBench101Space
from samplenas.space.cells.nasbench_graph import NASBenchGraphSpace
from samplenas.space.registry import register_space

register_space("nas-bench-graph", lambda: NASBenchGraphSpace(proteins=False))
register_space("nas-bench-graph-proteins", lambda: NASBenchGraphSpace(proteins=True))
register_space("nas-bench-101", NASBench101Space)

__all__ = ["NASBench101Space", "NASBenchGraphSpace"]
