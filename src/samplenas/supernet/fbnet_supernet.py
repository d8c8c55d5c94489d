"""FBNetSupernet: the shared weights of every architecture of an FBNetV2-style space.

The same dynamic MBConv block as ``MBConvSupernet`` (``DynamicMBConvBlock``), one per
block of the macro-architecture, each configured per block: width, kernel (0 = skip),
expansion, activation and attention. ``export(arch)`` returns the static ``FBNetNet``
with the shared weights copied in, computing the same function; module names match, so
export is a name-by-name slice of the state dict.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from samplenas.space import Arch, FBNetSpace
from samplenas.supernet.dynamic import DynamicBatchNorm2d, DynamicConv2d, DynamicLinear
from samplenas.supernet.layers import ConvBNAct, resize_input
from samplenas.supernet.mbconv_supernet import _ACT, DynamicMBConvBlock, _slice_like
from samplenas.supernet.static import FBNetNet, drop_path_rates


class FBNetSupernet(nn.Module):
    """Weight-sharing supernet over an FBNetSpace (coarse or fine: one block per block)."""

    def __init__(self, space: FBNetSpace, zero_init_last_bn: bool = True) -> None:
        super().__init__()
        self.space = space
        cfg = space.config
        self.act = _ACT[cfg.activation]
        self.stem = ConvBNAct(
            cfg.in_channels, cfg.stem_width, cfg.stem_kernel, cfg.stem_stride, act=cfg.activation
        )
        blocks: list[DynamicMBConvBlock] = []
        prev: tuple[int, ...] = (cfg.stem_width,)
        for g in cfg.groups:
            for b in range(g.repeat):
                blocks.append(
                    DynamicMBConvBlock(
                        prev,
                        g.width,
                        g.kernel,
                        tuple(e / 100 for e in g.expand_pct),
                        g.stride if b == 0 else 1,
                        g.attention,
                        tuple(cfg.act(s) for s in g.swish),
                    )
                )
                prev = g.width
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(
            DynamicConv2d(max(prev), cfg.head_width, 1), DynamicBatchNorm2d(cfg.head_width)
        )
        self.classifier = DynamicLinear(cfg.head_width, cfg.num_classes)
        if zero_init_last_bn:
            for block in self.blocks:
                if block.project is not None:
                    nn.init.zeros_(block.project[1].weight)
        self.dropout = 0.0
        self.set_arch(space.largest())

    @property
    def active_arch(self) -> Arch:
        return self._arch

    def set_arch(
        self, arch: Arch | dict[str, Any], dropout: float = 0.0, drop_path_rate: float = 0.0
    ) -> None:
        """Activate one sub-network; regularisation applies to it alone."""
        arch = self.space.validate(arch)
        self._arch, self.dropout = arch, dropout
        self.resolution = int(arch["resolution"])
        specs = self.space.blocks(arch)
        for block, spec, rate in zip(
            self.blocks, specs, drop_path_rates(specs, drop_path_rate), strict=True
        ):
            block.configure(
                spec["c_out"],
                spec["kernel"],
                spec["expand_ratio"],
                rate,
                act=spec["act"],
                attention=spec["attention"],
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = resize_input(x, self.resolution, self.space.config.resize_mode)
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        x = self.act(self.head[1](self.head[0](x)))
        x = torch.flatten(torch.mean(x, dim=(2, 3)), 1)
        if self.dropout > 0:
            x = F.dropout(x, self.dropout, self.training)
        return self.classifier(x)

    def export(self, arch: Arch | dict[str, Any] | None = None) -> FBNetNet:
        """A standalone static model of ``arch`` (default: the active one) with copied weights."""
        arch = self.space.validate(arch) if arch is not None else self.active_arch
        model = FBNetNet(self.space, arch)
        shared = self.state_dict()
        state = {name: _slice_like(shared[name], t.shape) for name, t in model.state_dict().items()}
        model.load_state_dict(state)
        return model.to(next(self.parameters()).device)
