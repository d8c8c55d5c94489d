"""Plain building blocks shared by the static model (and the supernet's exported form)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from samplenas.space.mbconv_cost import sa_channels

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "swish": nn.SiLU,
    "relu": nn.ReLU,
    "hswish": nn.Hardswish,
}


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def pointwise_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """A 1x1, stride-1 convolution of the static model; ``weight`` is [out, in].

    On a channels-last activation it is one matrix product over the (N*H*W, C) view, which
    BLAS reads in place. Interleaved on this 2-core CPU that made a
    default-recipe training step 0.89x as long as oneDNN's 1x1 convolution
    (benchmarks/overhead_alternatives.py).
    """
    if x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last):
        return F.conv2d(x, weight[:, :, None, None], bias)
    n, c, h, w = x.shape
    y = F.linear(x.permute(0, 2, 3, 1).reshape(n * h * w, c), weight, bias)
    return y.view(n, h, w, -1).permute(0, 3, 1, 2)


class PointwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(c_in, c_out, 1)`` (same parameters and state dict) through ``pointwise_conv``."""

    def __init__(self, c_in: int, c_out: int, bias: bool = False) -> None:
        super().__init__(c_in, c_out, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pointwise_conv(x, self.weight[:, :, 0, 0], self.bias)


def conv2d(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free 'same' conv; 1x1 stride-1 dense ones take the matrix-product path."""
    if kernel == 1 and stride == 1 and groups == 1:
        return PointwiseConv2d(c_in, c_out)
    return nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)


class ConvBNAct(nn.Sequential):
    """conv (no bias) -> BatchNorm -> optional activation, 'same' padding for odd kernels."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "swish",
    ) -> None:
        layers: list[nn.Module] = [
            conv2d(c_in, c_out, kernel, stride, groups),
            nn.BatchNorm2d(c_out),
        ]
        if act:
            layers.append(activation(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: pool -> 1x1 reduce -> ReLU -> 1x1 expand -> hard-sigmoid -> scale."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = PointwiseConv2d(channels, reduced, bias=True)
        self.expand = PointwiseConv2d(reduced, channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s


def split_attend(
    y: torch.Tensor,
    radix: int,
    reduce: Callable[[torch.Tensor], torch.Tensor],
    expand: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """ResNeSt radix attention: ``y`` holds ``radix`` splits per channel (channel-major,
    as a depthwise conv with ``radix`` filters per channel lays them out); the pooled sum
    of the splits -> 1x1 ``reduce`` -> ReLU -> 1x1 ``expand`` to one logit per split ->
    softmax over the splits -> the splits' weighted sum. Shared by the static and the
    dynamic module, so that the supernet computes what its export computes."""
    splits = y.unflatten(1, (y.shape[1] // radix, radix))  # a view, also channels-last
    pooled = torch.mean(splits.sum(2), dim=(2, 3), keepdim=True)
    logits = expand(F.relu(reduce(pooled)))
    weights = torch.softmax(logits.unflatten(1, (logits.shape[1] // radix, radix)), dim=2)
    return (splits * weights).sum(2)


class SplitAttention(nn.Module):
    """Split-Attention in an MBConv block (FP-NAS Fig. 2): a kxk depthwise conv with
    ``radix`` filters per channel (+BN, activation), then radix attention over the splits.
    It replaces the block's depthwise conv and SE; each split count has its own weights."""

    def __init__(self, channels: int, radix: int, kernel: int, stride: int, act: str) -> None:
        super().__init__()
        self.radix = radix
        self.conv = ConvBNAct(channels, radix * channels, kernel, stride, groups=channels, act=act)
        reduced = sa_channels(channels, radix)
        self.reduce = PointwiseConv2d(channels, reduced, bias=True)
        self.expand = PointwiseConv2d(reduced, radix * channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return split_attend(self.conv(x), self.radix, self.reduce, self.expand)


class Shortcut(nn.Module):
    """Identity, or average pooling (when strided) and/or a 1x1 projection (when widths differ)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.proj = PointwiseConv2d(c_in, c_out) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True, count_include_pad=False)
        return self.proj(x) if self.proj is not None else x


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the residual branch per sample with probability ``rate``."""
    if rate <= 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


def resize_input(x: torch.Tensor, resolution: int, mode: str) -> torch.Tensor:
    """Elastic resolution: the loader yields one size, each arch sees its own."""
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    align = False if mode in ("bilinear", "bicubic") else None
    return F.interpolate(x, size=(resolution, resolution), mode=mode, align_corners=align)
