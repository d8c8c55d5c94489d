"""Latency as a ``CostModel``: a table's prediction, as a sum along the chain.

The table holds one entry per block; a stage's cost is the sum of its first ``depth``
blocks' entries, so the table turns into ``ChainTables`` of the space's own shape (stem,
stage and head tables per resolution), scaled and offset per resolution by the table's
correction (or offset by its constant). Every sampler and search that takes a cost model
— the exact conditional sampler's dynamic programme included — then runs on latency.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from samplenas.errors import UserError
from samplenas.latency.blocks import Block, require_mbconv
from samplenas.latency.table import LatencyTable, load_table
from samplenas.space import Arch, MBConvSpace, SearchSpace
from samplenas.space.cost import ChainTables, CostModel
from samplenas.space.mbconv_cost import conv_out


class LatencyCost(CostModel):
    """Predicted milliseconds of a latency table (corrected when it carries a correction)."""

    name, unit, label = "latency_ms", "ms", "latency"

    def __init__(self, space: MBConvSpace, table: LatencyTable, path: str | None = None) -> None:
        super().__init__(space)
        self.table, self.path = table, path
        table.require_usable(space)
        missing = sorted(set(space.config.resolution) - set(table.resolutions))
        if missing:
            where = f"'{path}'" if path else "the latency table"
            raise UserError(
                f"{where} lacks resolution(s) {missing} of space '{space.name}'; a latency "
                "cost over the whole space needs a table built for every resolution"
            )
        self._chain = _chain_of(space, table)

    @classmethod
    def of(cls, space: SearchSpace, table: LatencyTable | str | Path) -> LatencyCost:
        """From a table or the path of one."""
        path = None
        if not isinstance(table, LatencyTable):
            path, table = str(table), load_table(table)
        return cls(require_mbconv(space), table, path)

    def __call__(self, arch: Arch) -> float:
        return self.table.predict(self.space, arch)  # type: ignore[arg-type]

    def values(self, idx: np.ndarray) -> np.ndarray:
        return self._chain.total(self.space, idx)

    def chain(self) -> ChainTables:
        return self._chain

    def key(self) -> str:
        """The table's entries and correction identify the values."""
        t = self.table
        return repr((self.name, sorted(t.entries.items()), t.constant_ms, _affines(t)))

    def settings(self) -> dict[str, Any]:
        """The table's timing settings (what a measurement beside it must use)."""
        return self.table.settings_json()


def _affines(table: LatencyTable) -> list[tuple[float, float]]:
    return [table.affine(r) for r in sorted(table.resolutions)]


def _entry(space: MBConvSpace, table: LatencyTable, block: Block) -> float:
    key = block.key(space)
    if key not in table.entries:
        raise UserError(
            f"the latency table lacks block '{key}'; build it again for space '{space.name}'"
        )
    return table.entries[key]


def _chain_of(space: MBConvSpace, table: LatencyTable) -> ChainTables:
    """The table's entries in the shape of the space's cost tables (module docstring)."""
    c = space.config
    R = len(c.resolution)
    stem = np.zeros((R, len(c.stem_width)))
    stages = []
    prev = c.stem_width
    for s in c.stages:
        choices = (prev, s.width, s.depth, s.kernel_size, s.expand_ratio)
        stages.append(np.zeros((R, *map(len, choices))))
        prev = s.width
    head = np.zeros((R, len(prev), len(c.head_width)))
    for ri, r in enumerate(c.resolution):
        scale, offset = table.affine(r)
        sizes = space.spatial_sizes(r)
        for wi, w in enumerate(c.stem_width):
            block = Block("stem", r, c.in_channels, w, c.stem_kernel, 1, c.stem_stride)
            stem[ri, wi] = scale * _entry(space, table, block) + offset
        prev = c.stem_width
        for si, s in enumerate(c.stages):
            cells = (prev, s.width, s.kernel_size, s.expand_ratio)
            for (pi, cp), (wi, w), (ki, k), (ei, e) in itertools.product(*map(enumerate, cells)):
                size, c_in, total, cum = sizes[si], cp, 0.0, {}
                for b in range(max(s.depth)):
                    stride = s.stride if b == 0 else 1
                    block = Block("mbconv", size, c_in, w, k, e, stride, s.se)
                    total += _entry(space, table, block)
                    cum[b + 1] = total
                    size, c_in = conv_out(size, stride), w
                for di, d in enumerate(s.depth):
                    stages[si][ri, pi, wi, di, ki, ei] = scale * cum[d]
            prev = s.width
        for (wi, w), (hi, h) in itertools.product(enumerate(prev), enumerate(c.head_width)):
            block = Block("head", sizes[-1], w, h, 1, c.head_expand)
            head[ri, wi, hi] = scale * _entry(space, table, block)
    return ChainTables(stem, tuple(stages), head)
