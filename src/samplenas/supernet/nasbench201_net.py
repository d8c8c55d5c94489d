"""``build_nasbench201(space, arch)``: the NAS-Bench-201 CIFAR macro network of one cell.

The network the benchmark trained (xautodl's TinyNetwork with InferCells), built so that
its parameters and ``FlopCounterMode`` count equal ``NASBench201Space.cost`` exactly; the
layout and what is counted are in ``samplenas.space.cells.nasbench201``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from samplenas.space import Arch
from samplenas.space.cells.nasbench201 import (
    CELL_NODES,
    CELLS_PER_STAGE,
    EDGES,
    KERNEL,
    STAGES,
    STEM_CHANNELS,
    NASBench201Space,
)


class ReLUConvBN(nn.Sequential):
    """ReLU -> kxk conv without bias ('same' padding) -> BN: the benchmark's conv unit."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


def edge_op(op: str, c: int) -> nn.Module | None:
    """The module of one cell edge; None for 'none' (the edge adds nothing)."""
    if op in KERNEL:
        return ReLUConvBN(c, c, KERNEL[op])
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    if op == "skip_connect":
        return nn.Identity()
    return None


class Cell(nn.Module):
    """Node j = sum of its incoming edges' ops; a node with only 'none' edges is zero."""

    def __init__(self, ops: tuple[str, ...], c: int) -> None:
        super().__init__()
        modules = {str(e): edge_op(op, c) for e, op in enumerate(ops)}
        self.edges = nn.ModuleDict({e: m for e, m in modules.items() if m is not None})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, CELL_NODES):
            terms = [
                self.edges[str(e)](nodes[i])
                for e, (i, jj) in enumerate(EDGES)
                if jj == j and str(e) in self.edges
            ]
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return nodes[-1]


class ResidualReduction(nn.Module):
    """ResNet basic block c -> 2c, stride 2, with a 2x2 average pool + 1x1 conv shortcut."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c, 2 * c, 3, stride=2)
        self.conv_b = ReLUConvBN(2 * c, 2 * c, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c, 2 * c, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NASBench201Net(nn.Module):
    """Stem -> 3 stages of 5 cells with residual reductions between -> BN, ReLU, pool, linear."""

    def __init__(self, ops: tuple[str, ...], num_classes: int) -> None:
        super().__init__()
        c = STEM_CHANNELS
        layers: list[nn.Module] = [
            nn.Conv2d(3, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
        ]
        for stage in range(STAGES):
            if stage:
                layers.append(ResidualReduction(c))
                c *= 2
            layers.extend(Cell(ops, c) for _ in range(CELLS_PER_STAGE))
        layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_nasbench201(space: NASBench201Space, arch: Arch | Mapping[str, Any] | str) -> nn.Module:
    """A randomly initialised network of ``arch`` (an op list or a NAS-Bench-201 string)."""
    if not isinstance(space, NASBench201Space):
        raise TypeError(f"build_nasbench201 needs a NAS-Bench-201 space, not '{space.name}'")
    return NASBench201Net(tuple(space.validate(arch)["ops"]), space.num_classes)
