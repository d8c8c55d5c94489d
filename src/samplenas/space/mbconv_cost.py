"""Analytic cost of the MobileNet-style blocks, counted as the papers count it.

Multiply-accumulates of every convolution and linear layer (SE and 1x1 shortcut
projections included; BN, activations, pooling and additions are free). Parameters
include BN affine weights and conv/linear biases, so they equal ``sum(p.numel())`` of
the model that ``samplenas.supernet.static.build_model`` builds.
"""

from __future__ import annotations

from dataclasses import dataclass


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor``, never below 90% of ``value``."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def conv_out(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded odd-kernel convolution with this stride."""
    return -(-size // stride)


def expanded_channels(c_in: int, expand_ratio: float) -> int:
    """Hidden width of an MBConv block (no expansion layer when the ratio is 1)."""
    return c_in if expand_ratio == 1 else make_divisible(round(c_in * expand_ratio), 8)


def se_channels(mid: int) -> int:
    return make_divisible(mid // 4, 8)


@dataclass(frozen=True)
class LayerCost:
    macs: int
    params: int


def stem_cost(size: int, c_in: int, c_out: int, kernel: int, stride: int) -> tuple[LayerCost, int]:
    out = conv_out(size, stride)
    return LayerCost(
        out * out * kernel * kernel * c_in * c_out, kernel * kernel * c_in * c_out + 2 * c_out
    ), out


def mbconv_cost(
    size: int, c_in: int, c_out: int, kernel: int, expand_ratio: float, stride: int, se: bool
) -> tuple[LayerCost, int]:
    """One MBConv block: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project, plus shortcut."""
    out = conv_out(size, stride)
    mid = expanded_channels(c_in, expand_ratio)
    macs = params = 0
    if expand_ratio != 1:
        macs += size * size * c_in * mid
        params += c_in * mid + 2 * mid
    macs += out * out * mid * kernel * kernel
    params += mid * kernel * kernel + 2 * mid
    if se:
        sm = se_channels(mid)
        macs += 2 * mid * sm
        params += 2 * mid * sm + sm + mid
    macs += out * out * mid * c_out
    params += mid * c_out + 2 * c_out
    if c_in != c_out:  # 1x1 projection shortcut (after average pooling when strided)
        macs += out * out * c_in * c_out
        params += c_in * c_out
    return LayerCost(macs, params), out


def head_cost(size: int, c_in: int, expand: int, c_last: int, classes: int) -> LayerCost:
    """1x1 conv to expand*c_in (+BN) -> global pool -> 1x1 conv to c_last -> linear classifier."""
    mid = expand * c_in
    macs = size * size * c_in * mid + mid * c_last + c_last * classes
    params = c_in * mid + 2 * mid + mid * c_last + c_last * classes + classes
    return LayerCost(macs, params)
