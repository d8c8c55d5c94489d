"""A linear map through the top-left block of a larger weight, with a one-node backward.

Autograd slicing (``weight[:out, :c_in, 0, 0]``) costs a sub-network's step a chain of
backward nodes per weight, each zero-filling a bigger gradient and copying the smaller one
in, and the matrix product's backward returns the weight gradient transposed, so the
chain ends in a strided transposing copy. On the `attentive` space's smallest
sub-network those chains were most of the supernet's extra time over its static model
(ratio 1.08-1.09; with this function 1.03-1.04, benchmarks/supernet_overhead.py). Here
the backward pass writes the weight gradient once, with a BLAS call, straight into its
block of a full-size gradient, and zero-fills only the rest. Small weights, where that
Python backward costs more than it saves, are cut from their [out, in] view, which
leaves autograd at most two slice nodes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def _matrix(weight: torch.Tensor) -> torch.Tensor:
    """A [out, in] or [out, in, 1, 1] weight as its [out, in] matrix (a view)."""
    return weight.view(weight.shape[0], weight.shape[1])


FUNCTION_MIN_ELEMENTS = 2**18
"""Weights this large (1 MiB in float32) take ``SlicedLinear``; smaller ones an autograd
slice of their [out, in] view. Of 0, 2**14, 2**16, 2**18 and never, 2**18 gave the
smallest sub-network's step the lowest ratio on both MobileNet spaces
(benchmarks/sliced_linear.py)."""


class SlicedLinear(torch.autograd.Function):
    """``F.linear(x, W[:rows, :x.shape[1]], b[:rows])`` for a full-size parameter ``W``."""

    @staticmethod
    def forward(ctx, x, weight, bias, rows):  # type: ignore[override]
        block = _matrix(weight)[:rows, : x.shape[1]]
        ctx.save_for_backward(x, block)
        ctx.weight_shape, ctx.has_bias = weight.shape, bias is not None
        return F.linear(x, block, bias[:rows] if bias is not None else None)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):  # type: ignore[override]
        x, block = ctx.saved_tensors
        if grad_y.dtype != block.dtype:  # autocast ran the forward in half precision
            grad_y = grad_y.to(block.dtype)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_y.mm(block)
            if grad_x.dtype != x.dtype:
                grad_x = grad_x.to(x.dtype)
        if ctx.needs_input_grad[1]:
            # The block's gradient is written in place (beta=0: the zeros are not read);
            # only the rest of the full-size gradient needs zeros.
            rows, cols = block.shape
            full = grad_y.new_empty(ctx.weight_shape)
            matrix = _matrix(full)
            matrix[rows:].zero_()
            matrix[:rows, cols:].zero_()
            matrix[:rows, :cols].addmm_(
                grad_y.t(), x if x.dtype == block.dtype else x.to(block.dtype), beta=0
            )
            grad_weight = full
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_y.new_zeros(ctx.weight_shape[0])
            torch.sum(grad_y, 0, out=grad_bias[: block.shape[0]])
        return grad_x, grad_weight, grad_bias, None


def sliced_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, rows: int
) -> torch.Tensor:
    """The first ``rows`` outputs of a linear map over ``x``'s features (2-D ``x``).

    Below ``FUNCTION_MIN_ELEMENTS`` the Python backward costs more than the slice nodes
    it saves, so small weights keep autograd slicing.
    """
    sliced = (rows, x.shape[1]) != tuple(weight.shape[:2])
    if sliced and weight.numel() >= FUNCTION_MIN_ELEMENTS:
        return SlicedLinear.apply(x, weight, bias, rows)
    matrix = _matrix(weight)
    if not sliced:
        return F.linear(x, matrix, bias)
    return F.linear(x, matrix[:rows, : x.shape[1]], bias[:rows] if bias is not None else None)


def sliced_pointwise_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, rows: int
) -> torch.Tensor:
    """A 1x1 stride-1 conv with the first ``rows`` filters of a [out, in, 1, 1] ``weight``.

    A channels-last activation is the (N*H*W, C) matrix the GEMM wants; anything else
    goes through ``F.conv2d`` with an autograd slice.
    """
    if x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last):
        block = weight[:rows, : x.shape[1]]
        return F.conv2d(x, block, bias[:rows] if bias is not None else None)
    n, c, h, w = x.shape
    y = sliced_linear(x.permute(0, 2, 3, 1).reshape(n * h * w, c), weight, bias, rows)
    return y.view(n, h, w, -1).permute(0, 3, 1, 2)
