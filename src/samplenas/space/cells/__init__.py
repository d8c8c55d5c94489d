"""Cell spaces of tabular benchmarks: NAS-Bench-Graph, NAS-Bench-101 and NAS-Bench-201."""

from samplenas.space.cells.nasbench101 import NASBench101Space
from samplenas.space.cells.nasbench201 import NASBench201Space
from samplenas.space.cells.nasbench_graph import NASBenchGraphSpace
from samplenas.space.registry import register_space

register_space("nas-bench-graph", lambda: NASBenchGraphSpace(proteins=False))
register_space("nas-bench-graph-proteins", lambda: NASBenchGraphSpace(proteins=True))
register_space("nas-bench-101", NASBench101Space)
register_space("nas-bench-201", lambda: NASBench201Space(10, 32, "nas-bench-201"))
register_space(
    "nas-bench-201-cifar100", lambda: NASBench201Space(100, 32, "nas-bench-201-cifar100")
)
register_space(
    "nas-bench-201-imagenet16-120",
    lambda: NASBench201Space(120, 16, "nas-bench-201-imagenet16-120"),
)

__all__ = ["NASBench101Space", "NASBench201Space", "NASBenchGraphSpace"]
