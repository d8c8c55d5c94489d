"""Analytic cost of the MobileNet-style blocks, counted as the papers count it.

Multiply-accumulates of every convolution and linear layer (SE, Split-Attention and 1x1
shortcut projections included; BN, activations, pooling, softmax, products and additions
are free). Parameters
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


def sa_channels(mid: int, radix: int) -> int:
    """Hidden width of a Split-Attention block's attention MLP: ResNeSt's
    ``channels * radix // 4``, rounded like SE's (without ResNeSt's floor of 32, which
    would dominate the narrow blocks of the small spaces)."""
    return make_divisible(mid * radix // 4, 8)


def radix_of(attention: int) -> int:
    """Depthwise outputs per hidden channel: the split count for Split-Attention (2, 4),
    else 1 (attention 0 = none, 1 = SE, as FP-NAS Table 2 numbers them)."""
    return attention if attention >= 2 else 1


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
    size: int,
    c_in: int,
    c_out: int,
    kernel: int,
    expand_ratio: float,
    stride: int,
    attention: int,
) -> tuple[LayerCost, int]:
    """One MBConv block: [1x1 expand] -> kxk depthwise -> [SE | Split-Attention] -> 1x1
    project, plus shortcut. ``attention``: 0 none, 1 SE (``True`` / ``False`` work), r >= 2
    Split-Attention over r depthwise splits. ``kernel`` 0 is a skipped block: the shortcut
    alone (identity, or average pooling and/or a 1x1 projection)."""
    out = conv_out(size, stride)
    macs = params = 0
    if kernel:
        mid = expanded_channels(c_in, expand_ratio)
        radix = radix_of(attention)
        if expand_ratio != 1:
            macs += size * size * c_in * mid
            params += c_in * mid + 2 * mid
        macs += out * out * radix * mid * kernel * kernel
        params += radix * mid * kernel * kernel + 2 * radix * mid
        if attention == 1:
            sm = se_channels(mid)
            macs += 2 * mid * sm
            params += 2 * mid * sm + sm + mid
        elif attention >= 2:
            sm = sa_channels(mid, radix)
            macs += mid * sm + sm * radix * mid
            params += mid * sm + sm + sm * radix * mid + radix * mid
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
