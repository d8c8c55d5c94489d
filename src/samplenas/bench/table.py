"""Tabular benchmarks: every architecture of a space with its measured metrics.

An Evaluator answers a search strategy's queries by lookup. Strategies only ever get
``Evaluator.query`` (validation accuracy, counted against the budget); the test accuracy
is read by the harness for reporting through ``Evaluator.test``, never by a strategy.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samplenas.bench.nasbench201 import NB201_DATASETS, load_nas_bench_201, package_file
from samplenas.errors import UserError
from samplenas.io import load_restricted_pickle
from samplenas.space import Arch, SearchSpace, load_space
from samplenas.space.cost import TabulatedCost

NB_GRAPH_DATASETS = (
    "cora",
    "citeseer",
    "pubmed",
    "cs",
    "physics",
    "photo",
    "computers",
    "arxiv",
    "proteins",
)

# NAS-Bench-Graph's light tables hold NumPy scalars: allow exactly NumPy's scalar
# constructor (found through a scalar's own pickling, wherever the NumPy version keeps it)
# and ``numpy.dtype``, nothing else
_NUMPY_SCALARS = {
    ("numpy.core.multiarray", "scalar"): np.float64(0).__reduce__()[0],
    ("numpy._core.multiarray", "scalar"): np.float64(0).__reduce__()[0],
    ("numpy", "dtype"): np.dtype,
}


@dataclass
class Table:
    """Canonical architectures of ``space`` -> metrics: ``valid`` (the expected validation
    accuracy, a seed mean), ``test`` (a held-out score, when the benchmark has one), costs.

    With ``valid_seeds`` (one validation accuracy per training seed) a query returns one
    seed's value drawn at random, as a real evaluation is one noisy training run; the seed
    mean stays the "expected" score that reports use to separate noise from search quality.
    """

    name: str
    space: SearchSpace
    rows: dict[Arch, dict[str, float]]
    valid_seeds: dict[Arch, tuple[float, ...]] | None = None
    test_label: str | None = "test"
    unit: str = "fraction"
    npred_n: int = 50  # the Neural Predictor's N measured best on this benchmark (N vs K)
    archs: list[Arch] = field(init=False)

    def __post_init__(self) -> None:
        self.archs = list(self.rows)
        self.valid = np.array([self.rows[a]["valid"] for a in self.archs])
        self.has_test = self.test_label is not None and all("test" in r for r in self.rows.values())
        self.test = np.array([self.rows[a]["test"] for a in self.archs]) if self.has_test else None
        self.index = {a: i for i, a in enumerate(self.archs)}
        self.seeds = (
            [np.asarray(self.valid_seeds[a], dtype=float) for a in self.archs]
            if self.valid_seeds is not None
            else None
        )

    def valid_range(self) -> tuple[float, float]:
        """The range a query can return (every seed's value, not only the means)."""
        if self.seeds is None:
            return float(self.valid.min()), float(self.valid.max())
        flat = np.concatenate(self.seeds)
        return float(flat.min()), float(flat.max())

    def cost(self, key: str) -> np.ndarray:
        if any(key not in r for r in self.rows.values()):
            raise UserError(f"benchmark '{self.name}' has no '{key}' for every architecture")
        return np.array([self.rows[a][key] for a in self.archs])

    def cost_model(self, key: str) -> TabulatedCost:
        """The table's ``key`` (latency, params) as a ``CostModel``, like FLOPs elsewhere."""
        return TabulatedCost(self.space, dict(zip(self.archs, self.cost(key), strict=True)), key)


class BudgetExhausted(RuntimeError):
    """A strategy asked for more queries than its budget."""


class Evaluator:
    """Validation-accuracy lookups, counted; the budget is enforced here.

    ``seed`` drives which training seed a query of a per-seed table returns, so a run's
    measurements are reproducible and independent of the strategy's own randomness.
    """

    def __init__(self, table: Table, budget: int | None = None, seed: int = 0) -> None:
        self.table = table
        self.budget = budget
        self.queries = 0
        self.history: list[Arch] = []
        self._rng = np.random.default_rng([seed, 201])

    def query(self, arch: Arch) -> float:
        """Validation accuracy of ``arch`` (canonicalised); one query of the budget."""
        if self.budget is not None and self.queries >= self.budget:
            raise BudgetExhausted(f"budget of {self.budget} queries used up")
        arch = self.table.space.validate(arch)
        i = self.table.index.get(arch)
        if i is None:
            raise UserError(
                f"architecture {arch.to_json()} is not in benchmark '{self.table.name}'"
            )
        self.queries += 1
        self.history.append(arch)
        if self.table.seeds is not None:
            runs = self.table.seeds[i]
            return float(runs[self._rng.integers(len(runs))])
        return float(self.table.valid[i])

    def expected(self, arch: Arch) -> float:
        """Seed-mean validation accuracy, for reports only (never given to a strategy)."""
        return float(self.table.valid[self.table.index[self.table.space.validate(arch)]])

    def test(self, arch: Arch) -> float:
        """Held-out accuracy, for reports only (strategies are never given this method)."""
        if self.table.test is None:
            raise UserError(f"benchmark '{self.table.name}' has no held-out score")
        return float(self.table.test[self.table.index[self.table.space.validate(arch)]])


def load_nas_bench_graph(dataset: str) -> Table:
    """NAS-Bench-Graph's light tables (seed means of validation and test performance)."""
    if dataset not in NB_GRAPH_DATASETS:
        raise UserError(
            f"unknown NAS-Bench-Graph dataset '{dataset}'; choose one of {list(NB_GRAPH_DATASETS)}"
        )
    from samplenas.space.cells.nasbench_graph import nas_bench_graph_package

    nas_bench_graph_package()  # MissingExtra when the package is absent
    space = load_space("nas-bench-graph-proteins" if dataset == "proteins" else "nas-bench-graph")
    path = package_file("nas_bench_graph", "light", f"{dataset}.bench")
    bench = load_restricted_pickle(path, _NUMPY_SCALARS)  # the package itself uses pickle.load
    rows = {}
    for arch in space.archs:
        m = bench[space.key(arch)]
        rows[arch] = {
            "valid": float(m["valid_perf"]),
            "test": float(m["perf"]),
            "latency": float(m["latency"]),
            "params": float(m["para"]),
        }
    return Table(
        f"nas-bench-graph:{dataset}",
        space,
        rows,
        test_label="NAS-Bench-Graph's test accuracy (seed mean)",
    )


def load_table_file(path: str | Path, space_name: str | None = None) -> Table:
    """A user's table: JSON ``{"space": NAME, "rows": [{"arch": {...}, "valid": .., "test": ..}]}``
    or a list of rows, or CSV with an ``arch`` column holding JSON; ``space_name`` if absent."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read benchmark table '{path}': {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".csv":
        raw_rows: list[dict[str, Any]] = []
        for row in csv.DictReader(text.splitlines()):
            try:
                raw_rows.append({**row, "arch": json.loads(row["arch"])})
            except (KeyError, json.JSONDecodeError) as exc:
                raise UserError(f"'{path}' needs an 'arch' column of JSON objects") from exc
        declared = None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"benchmark table '{path}' is not valid JSON ({exc.msg})") from exc
        declared = data.get("space") if isinstance(data, dict) else None
        raw_rows = data.get("rows", []) if isinstance(data, dict) else data
    name = space_name or declared
    if not name:
        raise UserError(f"benchmark table '{path}' does not name its space; pass --space")
    space = load_space(name)
    rows: dict[Arch, dict[str, float]] = {}
    for i, row in enumerate(raw_rows):
        if (
            not isinstance(row, dict)
            or "arch" not in row
            or "valid" not in row
            or "test" not in row
        ):
            raise UserError(f"row {i} of '{path}' needs 'arch', 'valid' and 'test'")
        arch = space.validate(row["arch"])
        try:
            rows[arch] = {k: float(v) for k, v in row.items() if k != "arch"}
        except (TypeError, ValueError) as exc:
            raise UserError(f"row {i} of '{path}' has a non-numeric metric") from exc
    if len(rows) < 2:
        raise UserError(f"benchmark table '{path}' holds fewer than two architectures")
    return Table(f"table:{path.name}", space, rows, test_label="the file's 'test' column")


def load_benchmark(spec: str, space: str | None = None) -> Table:
    """``nas-bench-graph:DATASET``, ``nas-bench-201:DATASET`` or ``table:PATH``."""
    kind, _, arg = spec.partition(":")
    if kind == "nas-bench-graph" and arg:
        return load_nas_bench_graph(arg)
    if kind == "nas-bench-201" and arg:
        return load_nas_bench_201(arg)
    if kind == "table" and arg:
        return load_table_file(arg, space)
    raise UserError(
        f"unknown benchmark '{spec}'; use nas-bench-graph:DATASET "
        f"({', '.join(NB_GRAPH_DATASETS)}), nas-bench-201:DATASET "
        f"({', '.join(NB201_DATASETS)}) or table:PATH"
    )
