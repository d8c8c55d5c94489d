"""One cost abstraction for everything that is constrained or traded against accuracy.

FLOPs, parameters and measured latency are instances of ``CostModel``: a name (the key
a result row carries it under), a unit, ``model(arch) -> float``, a vectorised
``values(idx)`` over index rows, and — where the cost is a sum along the MobileNet chain
stem -> stages -> head — that additive decomposition (``ChainTables``), which is what the
exact conditional sampler's dynamic programme needs. Samplers, search, Pareto fronts and
the bench harness take a ``CostModel``; nothing downstream knows which cost it is.

A ``CostModel`` is a plain callable ``Arch -> float``, so it can also be given wherever a
cost function is expected (e.g. a hinge penalty ``max(0, cost(arch) / target - 1)``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from samplenas.errors import UserError
from samplenas.space.arch import Arch
from samplenas.space.base import SearchSpace


@dataclass(frozen=True)
class ChainTables:
    """An additive cost of a MobileNet-style space, in the cost's unit:

    ``cost = stem[r, w0] + sum_s stages[s][r, w_{s-1}, w_s, d_s, k_s, e_s] + head[r, w_S, w_h]``
    (index positions, not values), the shape of ``MBConvSpace``'s own cost tables.
    """

    stem: np.ndarray
    stages: tuple[np.ndarray, ...]
    head: np.ndarray

    def total(self, space: Any, idx: np.ndarray) -> np.ndarray:
        """The cost of each index row of ``space`` (an ``MBConvSpace``)."""
        return space.chain_sum(self.stem, self.stages, self.head, np.atleast_2d(idx))

    def bounds(self) -> tuple[float, float]:
        """The exact smallest and largest cost over the space (min-/max-plus over the
        chain): a measured cost need not be monotone in the genes as FLOPs are."""
        return self._extreme(np.min), self._extreme(np.max)

    def _extreme(self, pick: Any) -> float:
        best = self.stem  # [R, W]: best partial cost ending in each width
        for t in self.stages:  # [R, Wp, W, D, K, E]
            cell = pick(t.reshape(t.shape[:3] + (-1,)), axis=3)  # [R, Wp, W]
            best = pick(best[:, :, None] + cell, axis=1)
        return float(pick(best[:, :, None] + self.head))


class CostModel(ABC):
    """A cost of an architecture: ``name`` (its key in result rows), ``unit``, ``label``."""

    name: str = "cost"
    unit: str = ""
    label: str = "cost"

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, arch: Arch) -> float:
        """The cost of one architecture."""
        return float(self.values(self.space.indices_of(arch)[None])[0])  # type: ignore[attr-defined]

    @abstractmethod
    def values(self, idx: np.ndarray) -> np.ndarray:
        """The cost of each index row (GeneSpaces)."""

    def chain(self) -> ChainTables | None:
        """The additive decomposition along the MobileNet chain, or None."""
        return None

    def bounds(self) -> tuple[float, float]:
        """(smallest, largest) cost over the space."""
        chain = self.chain()
        if chain is not None:
            return chain.bounds()
        return self(self.space.smallest()), self(self.space.largest())

    def key(self) -> str:
        """What identifies this cost's values (for cache keys)."""
        return self.name

    def describe(self, value: float) -> str:
        """``12.3 MFLOPs`` / ``4.56 ms``: a value with its unit, for messages."""
        return f"{value:.4g} {self.unit}"


class FlopsCost(CostModel):
    """Multiply-accumulates in millions, the papers' FLOPs (``space.cost``)."""

    name, unit, label = "mflops", "MFLOPs", "FLOPs"
    row = 0  # which of cost_indices' two arrays

    def __call__(self, arch: Arch) -> float:
        cost = self.space.cost(arch)
        return float(cost.mflops if self.row == 0 else cost.params_m)

    def values(self, idx: np.ndarray) -> np.ndarray:
        return self.space.cost_indices(idx)[self.row]

    def chain(self) -> ChainTables | None:
        from samplenas.space.mbconv import MBConvSpace

        if not isinstance(self.space, MBConvSpace):
            return None
        return ChainTables(*self.space.cost_chain(self.row))

    def bounds(self) -> tuple[float, float]:
        """FLOPs and params grow with every gene: the smallest and largest archs."""
        return self(self.space.smallest()), self(self.space.largest())


class ParamsCost(FlopsCost):
    """Parameters in millions."""

    name, unit, label = "params_m", "M params", "params"
    row = 1


class TabulatedCost(CostModel):
    """A cost looked up per architecture (a tabular benchmark's latency or params)."""

    def __init__(
        self, space: SearchSpace, values: Mapping[Arch, float], name: str, unit: str = ""
    ) -> None:
        super().__init__(space)
        self.table = dict(values)
        self.name, self.label, self.unit = name, name, unit

    def __call__(self, arch: Arch) -> float:
        value = self.table.get(arch)  # the table's own Archs: no validation needed
        return float(self.table[self.space.validate(arch)] if value is None else value)

    def values(self, idx: np.ndarray) -> np.ndarray:
        space: Any = self.space
        return np.array([self(space.arch_from_indices(r)) for r in np.atleast_2d(idx)])

    def bounds(self) -> tuple[float, float]:
        return min(self.table.values()), max(self.table.values())


COSTS = ("mflops", "params", "latency")


def make_cost(space: SearchSpace, name: str = "mflops", latency_table: Any = None) -> CostModel:
    """The cost called ``name``: ``mflops``, ``params`` or ``latency`` (needs a table,
    a ``LatencyTable`` or the path of one)."""
    if name in ("mflops", "flops"):
        return FlopsCost(space)
    if name in ("params", "params_m"):
        return ParamsCost(space)
    if name in ("latency", "latency_ms"):
        if latency_table is None:
            raise UserError("a latency cost needs a latency table (samplenas latency build)")
        from samplenas.latency.cost import LatencyCost

        return LatencyCost.of(space, latency_table)
    raise UserError(f"unknown cost '{name}'; use one of {list(COSTS)}")
