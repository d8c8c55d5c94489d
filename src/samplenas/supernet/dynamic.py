"""Dynamic layers: one tensor holds the largest weight; each forward uses a slice of it.

Channel slicing takes the first channels (so small sub-networks share the most-trained
filters), kernel slicing takes the centre of the largest kernel. Slices are views, so
every sub-network trains the same shared weights. The 1x1 convolutions and the classifier
(most of the weights) take their block through ``sliced_linear``: a cheaper backward pass
than autograd's chain of slice nodes (``supernet/sliced_linear.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samplenas.space.mbconv_cost import sa_channels, se_channels
from samplenas.supernet.layers import split_attend
from samplenas.supernet.sliced_linear import sliced_linear, sliced_pointwise_conv


def centre(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """The centre ``kernel`` x ``kernel`` window of a conv weight."""
    full = weight.shape[-1]
    if kernel == full:
        return weight
    start = (full - kernel) // 2
    return weight[..., start : start + kernel, start : start + kernel]


class DynamicConv2d(nn.Module):
    """A dense conv whose output channels and kernel size are chosen per forward.

    Input channels follow the incoming tensor. ``active_out`` / ``active_kernel`` are set
    by the supernet's ``set_arch``.
    """

    def __init__(
        self, max_in: int, max_out: int, kernel: int = 1, stride: int = 1, bias: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(max_out)) if bias else None
        self.stride = stride
        self.active_out = max_out
        self.active_kernel = kernel
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_in, out, k = x.shape[1], self.active_out, self.active_kernel
        if k == 1 and self.stride == 1:  # no weight copy: the GEMM reads the slice in place
            return sliced_pointwise_conv(x, self.weight, self.bias, out)
        w = self.weight
        if out != w.shape[0] or c_in != w.shape[1]:
            w = w[:out, :c_in]
        w = centre(w, k)
        b = self.bias[:out] if self.bias is not None else None
        return F.conv2d(x, w, b, self.stride, k // 2)


class DynamicDepthwiseConv2d(nn.Module):
    """A depthwise conv: channels follow the input, the kernel is the active centre.

    ``multiplier`` filters per channel (Split-Attention's splits), laid out channel-major
    as ``groups=channels`` convolutions do, so C active channels use the first
    ``multiplier * C`` filters.
    """

    def __init__(
        self, max_channels: int, kernel: int, stride: int = 1, multiplier: int = 1
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(multiplier * max_channels, 1, kernel, kernel))
        self.stride = stride
        self.multiplier = multiplier
        self.active_kernel = kernel
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, k = x.shape[1], self.active_kernel
        rows = self.multiplier * c
        w = self.weight if rows == self.weight.shape[0] else self.weight[:rows]
        return F.conv2d(x, centre(w, k), None, self.stride, k // 2, 1, c)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first C channels: sliced affine weights and running statistics.

    Subclassing BatchNorm2d keeps ``reset_running_stats``, ``momentum=None`` cumulative
    averaging (BN calibration) and the state-dict layout of the static model.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            )
        use_batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean[:c] if not self.training or self.track_running_stats else None,
            self.running_var[:c] if not self.training or self.track_running_stats else None,
            self.weight[:c],
            self.bias[:c],
            use_batch_stats,
            factor,
            self.eps,
        )


class DynamicSqueezeExcite(nn.Module):
    """SE whose reduced width follows the active hidden width (``se_channels(mid)``)."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        max_reduced = se_channels(max_channels)
        self.reduce = DynamicConv2d(max_channels, max_reduced, 1, bias=True)
        self.expand = DynamicConv2d(max_reduced, max_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        self.reduce.active_out = se_channels(c)
        self.expand.active_out = c
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s


class DynamicSplitAttention(nn.Module):
    """``layers.SplitAttention`` over the first C hidden channels (C follows the input).

    The block applies ``conv`` and its activation, then ``attend``; the attention MLP's
    widths follow C as ``sa_channels`` says.
    """

    def __init__(self, max_channels: int, radix: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.radix = radix
        self.conv = nn.Sequential(
            DynamicDepthwiseConv2d(max_channels, kernel, stride, multiplier=radix),
            DynamicBatchNorm2d(radix * max_channels),
        )
        max_reduced = sa_channels(max_channels, radix)
        self.reduce = DynamicConv2d(max_channels, max_reduced, 1, bias=True)
        self.expand = DynamicConv2d(max_reduced, radix * max_channels, 1, bias=True)

    def attend(self, y: torch.Tensor) -> torch.Tensor:
        c = y.shape[1] // self.radix
        self.reduce.active_out = sa_channels(c, self.radix)
        self.expand.active_out = self.radix * c
        return split_attend(y, self.radix, self.reduce, self.expand)


class DynamicLinear(nn.Module):
    """A linear layer whose input features follow the incoming tensor."""

    def __init__(self, max_in: int, out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out, max_in))
        self.bias = nn.Parameter(torch.zeros(out))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sliced_linear(x, self.weight, self.bias, self.weight.shape[0])
