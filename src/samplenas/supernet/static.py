"""``build_model(space, arch)``: a plain nn.Module for one Arch, no weight sharing.

Used to retrain found architectures from scratch and as the target of supernet
export; its FLOPs and parameters equal the space's analytic cost exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from samplenas.space import Arch, FBNetSpace, MBConvSpace, SearchSpace
from samplenas.space.mbconv_cost import expanded_channels, se_channels
from samplenas.supernet.layers import (
    ConvBNAct,
    PointwiseConv2d,
    Shortcut,
    SplitAttention,
    SqueezeExcite,
    activation,
    drop_path,
    resize_input,
)


class MBConvBlock(nn.Module):
    """Inverted residual: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project, + shortcut.

    ``attention`` (FP-NAS Table 2): 0 none, 1 SE (a bool works), r >= 2 Split-Attention,
    whose r-split depthwise conv (``sa[str(r)]``, named as the supernet's per-split-count
    weights) replaces the plain one. ``kernel`` 0 skips the block: the shortcut alone.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        expand_ratio: float,
        stride: int,
        attention: int,
        act: str,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.expand = self.depthwise = self.se = self.sa = self.project = None
        if kernel:
            mid = expanded_channels(c_in, expand_ratio)
            self.expand = ConvBNAct(c_in, mid, 1, act=act) if expand_ratio != 1 else None
            if attention >= 2:
                self.sa = nn.ModuleDict(
                    {str(attention): SplitAttention(mid, attention, kernel, stride, act)}
                )
            else:
                self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid, act=act)
            self.se = SqueezeExcite(mid, se_channels(mid)) if attention == 1 else None
            self.project = ConvBNAct(mid, c_out, 1, act=None)
        self.shortcut = Shortcut(c_in, c_out, stride)
        self.drop_path_rate = drop_path_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.project is None:
            return self.shortcut(x)
        y = self.expand(x) if self.expand is not None else x
        y = next(iter(self.sa.values()))(y) if self.sa is not None else self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return self.shortcut(x) + drop_path(y, self.drop_path_rate, self.training)


def add_head_layers(
    module: nn.Module, c_in: int, expand: int, c_last: int, classes: int, act: str, dropout: float
) -> None:
    """Give ``module`` the head's layers under the names MBConvNet's state dict uses."""
    mid = expand * c_in
    module.final_expand = ConvBNAct(c_in, mid, 1, act=act)
    module.feature_mix = nn.Sequential(PointwiseConv2d(mid, c_last), activation(act))
    module.dropout = nn.Dropout(dropout)
    module.classifier = nn.Linear(c_last, classes)


def head_features(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The head up to the classifier: 1x1 expand -> global pool -> 1x1 mix."""
    x = module.final_expand(x)
    x = torch.mean(x, dim=(2, 3), keepdim=True)
    return torch.flatten(module.feature_mix(x), 1)


class MBConvHead(nn.Module):
    """The head of an MBConvNet on its own (what a per-block latency table times).

    MBConvNet holds the same layers as its own attributes, so its state dict keeps the
    names exported models and checkpoints use.
    """

    def __init__(
        self, c_in: int, expand: int, c_last: int, classes: int, act: str, dropout: float = 0.0
    ) -> None:
        super().__init__()
        add_head_layers(self, c_in, expand, c_last, classes, act, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(head_features(self, x)))


class MBConvNet(nn.Module):
    """Resize -> stem -> MBConv stages -> head (1x1 expand, pool, 1x1 mix, dropout, linear)."""

    def __init__(
        self, space: MBConvSpace, arch: Arch, dropout: float = 0.0, drop_path_rate: float = 0.0
    ) -> None:
        super().__init__()
        arch = space.validate(arch)
        cfg = space.config
        act = cfg.activation
        self.arch = arch
        self.resolution = int(arch["resolution"])
        self.resize_mode = cfg.resize_mode
        widths = list(arch["width"])
        self.stem = ConvBNAct(cfg.in_channels, widths[0], cfg.stem_kernel, cfg.stem_stride, act=act)
        blocks: list[nn.Module] = []
        total_blocks = sum(arch["depth"])
        c_in = widths[0]
        for i, stage in enumerate(cfg.stages):
            for b in range(arch["depth"][i]):
                rate = drop_path_rate * len(blocks) / max(total_blocks - 1, 1)
                blocks.append(
                    MBConvBlock(
                        c_in,
                        widths[i + 1],
                        arch["kernel_size"][i],
                        arch["expand_ratio"][i],
                        stage.stride if b == 0 else 1,
                        stage.se,
                        act,
                        rate,
                    )
                )
                c_in = widths[i + 1]
        self.blocks = nn.Sequential(*blocks)
        add_head_layers(self, c_in, cfg.head_expand, widths[-1], cfg.num_classes, act, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = resize_input(x, self.resolution, self.resize_mode)
        return head_features(self, self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.forward_features(x)))


class FBNetNet(nn.Module):
    """An FBNetV2-style network (FP-NAS Table 1): resize -> stem -> every block (a skipped
    one is its shortcut alone) -> 1x1 conv to the head width -> pool -> dropout -> linear."""

    def __init__(
        self, space: FBNetSpace, arch: Arch, dropout: float = 0.0, drop_path_rate: float = 0.0
    ) -> None:
        super().__init__()
        arch = space.validate(arch)
        cfg = space.config
        self.arch = arch
        self.resolution = int(arch["resolution"])
        self.resize_mode = cfg.resize_mode
        self.stem = ConvBNAct(
            cfg.in_channels, cfg.stem_width, cfg.stem_kernel, cfg.stem_stride, act=cfg.activation
        )
        specs = space.blocks(arch)
        rates = drop_path_rates(specs, drop_path_rate)
        self.blocks = nn.Sequential(
            *(
                MBConvBlock(**spec, drop_path_rate=rate)
                for spec, rate in zip(specs, rates, strict=True)
            )
        )
        self.head = ConvBNAct(specs[-1]["c_out"], cfg.head_width, 1, act=cfg.activation)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(cfg.head_width, cfg.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = resize_input(x, self.resolution, self.resize_mode)
        x = self.head(self.blocks(self.stem(x)))
        return torch.flatten(torch.mean(x, dim=(2, 3)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.forward_features(x)))


def drop_path_rates(specs: list[dict[str, Any]], rate: float) -> list[float]:
    """Stochastic depth rising linearly to ``rate`` over the blocks that run convolutions
    (a skipped block has no residual branch to drop)."""
    convs = sum(1 for s in specs if s["kernel"])
    out, seen = [], 0
    for s in specs:
        out.append(rate * seen / max(convs - 1, 1) if s["kernel"] else 0.0)
        seen += bool(s["kernel"])
    return out


def build_model(space: SearchSpace, arch: Arch | dict[str, Any], **options: Any) -> nn.Module:
    """A randomly initialised standalone model of ``arch`` (options: dropout, drop_path_rate)."""
    if isinstance(space, FBNetSpace):
        return FBNetNet(space, space.validate(arch), **options)
    if not isinstance(space, MBConvSpace):
        raise TypeError(f"no model builder for space '{space.name}'")
    return MBConvNet(space, space.validate(arch), **options)
