"""MBConvSupernet: the shared weights of every architecture of a MobileNet-style space.

``set_arch(arch)`` activates one sub-network (elastic resolution, width, depth, kernel
size and expansion ratio); ``export(arch)`` returns the static ``MBConvNet`` of that
arch with the shared weights copied in, computing the same function. Module names match
``MBConvNet`` so export is a name-by-name slice of the state dict.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from samplenas.space import Arch, MBConvSpace
from samplenas.space.mbconv_cost import expanded_channels
from samplenas.supernet.dynamic import (
    DynamicBatchNorm2d,
    DynamicConv2d,
    DynamicDepthwiseConv2d,
    DynamicLinear,
    DynamicSplitAttention,
    DynamicSqueezeExcite,
    centre,
)
from samplenas.supernet.layers import drop_path, resize_input
from samplenas.supernet.static import MBConvNet

_ACT = {"swish": F.silu, "relu": F.relu, "hswish": F.hardswish}


class DynamicMBConvBlock(nn.Module):
    """An MBConv block at its largest; ``configure`` picks width, kernel (0 = skip),
    expansion, activation and attention (0 none, 1 SE, r >= 2 Split-Attention).

    Every choice slices the same weights except the split count: each r >= 2 has its own
    r-split depthwise conv and attention MLP (``sa[str(r)]``), as FP-NAS section 4 says.
    """

    def __init__(
        self,
        in_widths: tuple[int, ...],
        out_widths: tuple[int, ...],
        kernels: tuple[int, ...],
        expands: tuple[float, ...],
        stride: int,
        attentions: tuple[int, ...],
        acts: tuple[str, ...],
    ) -> None:
        super().__init__()
        max_in, max_out, max_k = max(in_widths), max(out_widths), max(kernels)
        max_mid = max(expanded_channels(c, e) for c in in_widths for e in expands)
        self.expand = self.depthwise = self.se = self.sa = self.project = None
        if max_k > 0:
            if any(e != 1 for e in expands):
                self.expand = nn.Sequential(
                    DynamicConv2d(max_in, max_mid, 1), DynamicBatchNorm2d(max_mid)
                )
            if any(a < 2 for a in attentions):
                self.depthwise = nn.Sequential(
                    DynamicDepthwiseConv2d(max_mid, max_k, stride), DynamicBatchNorm2d(max_mid)
                )
            if 1 in attentions:
                self.se = DynamicSqueezeExcite(max_mid)
            radices = [a for a in attentions if a >= 2]
            if radices:
                self.sa = nn.ModuleDict(
                    {str(r): DynamicSplitAttention(max_mid, r, max_k, stride) for r in radices}
                )
            self.project = nn.Sequential(
                DynamicConv2d(max_mid, max_out, 1), DynamicBatchNorm2d(max_out)
            )
        needs_proj = any(c != o for c in in_widths for o in out_widths)
        self.shortcut = nn.Module()
        self.shortcut.proj = DynamicConv2d(max_in, max_out, 1) if needs_proj else None
        self.stride = stride
        self.act = _ACT[acts[-1]]
        self.out_channels, self.expand_ratio, self.drop_path_rate = max_out, max(expands), 0.0
        self.kernel, self.attention = max_k, max(attentions)

    def configure(
        self,
        out_channels: int,
        kernel: int,
        expand_ratio: float,
        drop_path_rate: float,
        act: str | None = None,
        attention: int | None = None,
    ) -> None:
        """Activate one choice; ``act`` / ``attention`` None keep the block's own."""
        self.out_channels, self.expand_ratio, self.kernel = out_channels, expand_ratio, kernel
        self.drop_path_rate = drop_path_rate
        if act is not None:
            self.act = _ACT[act]
        if attention is not None:
            self.attention = attention
        if kernel:
            conv = self.sa[str(self.attention)].conv if self.attention >= 2 else self.depthwise
            conv[0].active_kernel = kernel
            self.project[0].active_out = out_channels
        if self.shortcut.proj is not None:
            self.shortcut.proj.active_out = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_in = x.shape[1]
        shortcut = x
        if self.stride > 1:
            shortcut = F.avg_pool2d(
                shortcut, self.stride, self.stride, ceil_mode=True, count_include_pad=False
            )
        if c_in != self.out_channels:
            shortcut = self.shortcut.proj(shortcut)
        if not self.kernel:
            return shortcut
        y = x
        if self.expand_ratio != 1:
            self.expand[0].active_out = expanded_channels(c_in, self.expand_ratio)
            y = self.act(self.expand[1](self.expand[0](y)))
        if self.attention >= 2:
            unit = self.sa[str(self.attention)]
            y = unit.attend(self.act(unit.conv[1](unit.conv[0](y))))
        else:
            y = self.act(self.depthwise[1](self.depthwise[0](y)))
            if self.attention == 1:
                y = self.se(y)
        y = self.project[1](self.project[0](y))
        return shortcut + drop_path(y, self.drop_path_rate, self.training)


class MBConvSupernet(nn.Module):
    """Weight-sharing supernet over an MBConvSpace."""

    def __init__(self, space: MBConvSpace, zero_init_last_bn: bool = True) -> None:
        super().__init__()
        self.space = space
        cfg = space.config
        self.act = _ACT[cfg.activation]
        self.stem = nn.Sequential(
            DynamicConv2d(cfg.in_channels, max(cfg.stem_width), cfg.stem_kernel, cfg.stem_stride),
            DynamicBatchNorm2d(max(cfg.stem_width)),
        )
        blocks: list[DynamicMBConvBlock] = []
        self.stage_offsets: list[int] = []
        prev = cfg.stem_width
        for stage in cfg.stages:
            self.stage_offsets.append(len(blocks))
            for b in range(max(stage.depth)):
                blocks.append(
                    DynamicMBConvBlock(
                        prev if b == 0 else stage.width,
                        stage.width,
                        stage.kernel_size,
                        stage.expand_ratio,
                        stage.stride if b == 0 else 1,
                        (1,) if stage.se else (0,),
                        (cfg.activation,),
                    )
                )
            prev = stage.width
        self.blocks = nn.ModuleList(blocks)
        last = max(cfg.stages[-1].width)
        head_mid = cfg.head_expand * last
        self.final_expand = nn.Sequential(
            DynamicConv2d(last, head_mid, 1), DynamicBatchNorm2d(head_mid)
        )
        self.feature_mix = nn.Sequential(DynamicConv2d(head_mid, max(cfg.head_width), 1))
        self.classifier = DynamicLinear(max(cfg.head_width), cfg.num_classes)
        if zero_init_last_bn:
            for block in self.blocks:
                nn.init.zeros_(block.project[1].weight)
        self.dropout = 0.0
        self._active_blocks: list[DynamicMBConvBlock] = []
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
        width = arch["width"]
        self.stem[0].active_out = width[0]
        active: list[DynamicMBConvBlock] = []
        total = sum(arch["depth"])
        for s, offset in enumerate(self.stage_offsets):
            for b in range(arch["depth"][s]):
                block = self.blocks[offset + b]
                rate = drop_path_rate * len(active) / max(total - 1, 1)
                block.configure(width[s + 1], arch["kernel_size"][s], arch["expand_ratio"][s], rate)
                active.append(block)
        self._active_blocks = active
        self.final_expand[0].active_out = self.space.config.head_expand * width[-2]
        self.feature_mix[0].active_out = width[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = resize_input(x, self.resolution, self.space.config.resize_mode)
        x = self.act(self.stem[1](self.stem[0](x)))
        for block in self._active_blocks:
            x = block(x)
        x = self.act(self.final_expand[1](self.final_expand[0](x)))
        x = torch.mean(x, dim=(2, 3), keepdim=True)
        x = torch.flatten(self.act(self.feature_mix[0](x)), 1)
        if self.dropout > 0:
            x = F.dropout(x, self.dropout, self.training)
        return self.classifier(x)

    # -- export ---------------------------------------------------------------------------
    def _block_map(self, arch: Arch) -> dict[int, int]:
        """Static block index -> supernet block index for ``arch``."""
        out, j = {}, 0
        for s, offset in enumerate(self.stage_offsets):
            for b in range(arch["depth"][s]):
                out[j] = offset + b
                j += 1
        return out

    def export(self, arch: Arch | dict[str, Any] | None = None) -> MBConvNet:
        """A standalone static model of ``arch`` (default: the active one) with copied weights."""
        arch = self.space.validate(arch) if arch is not None else self.active_arch
        model = MBConvNet(self.space, arch)
        shared = self.state_dict()
        mapping = self._block_map(arch)
        state = {}
        for name, target in model.state_dict().items():
            state[name] = _slice_like(shared[shared_name(name, mapping)], target.shape)
        model.load_state_dict(state)
        return model.to(next(self.parameters()).device)


def shared_name(name: str, block_map: dict[int, int]) -> str:
    """The supernet tensor a static model's tensor ``name`` is cut from (``_block_map``)."""
    if not name.startswith("blocks."):
        return name
    _, j, rest = name.split(".", 2)
    return f"blocks.{block_map[int(j)]}.{rest}"


def _slice_like(src: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The leading channels (and the centre of the kernel) of ``src`` with ``shape``."""
    if src.ndim == 0:
        return src.clone()
    if src.ndim == 4:
        return centre(src[: shape[0], : shape[1]], shape[2]).clone()
    index = tuple(slice(0, n) for n in shape)
    return src[index].clone()
