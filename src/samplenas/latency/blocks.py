"""The block inventory of a MobileNet-style space: every distinct block an Arch can contain.

A network of ``MBConvSpace`` is stem -> MBConv blocks -> head (``supernet.static``). What a
block computes is fixed by its input size, widths, kernel, expansion, stride, SE and
activation; this module lists every such configuration the space's declaration allows,
each once under a stable key, names the blocks of one Arch by the same keys, and builds
each block with the static model's own layer classes, so timing a block times what the
whole network runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from samplenas.errors import UserError
from samplenas.space import Arch, MBConvSpace, SearchSpace
from samplenas.space.mbconv_cost import conv_out
from samplenas.supernet.layers import ConvBNAct
from samplenas.supernet.static import MBConvBlock, MBConvHead


@dataclass(frozen=True)
class Block:
    """One block configuration: what it computes on an input of ``size`` x ``size`` pixels.

    ``kind`` is ``stem``, ``mbconv`` or ``head``. For the head, ``kernel`` is unused and
    ``expand`` is the head's expansion; ``c_out`` is the last feature width.
    """

    kind: str
    size: int
    c_in: int
    c_out: int
    kernel: int = 1
    expand: int = 1
    stride: int = 1
    se: bool = False

    def key(self, space: MBConvSpace) -> str:
        """A stable string naming the configuration (the latency table's entry name)."""
        act = space.config.activation
        head = f"{self.kind}:{self.size}px:{self.c_in}>{self.c_out}"
        if self.kind == "head":
            return f"{head}:x{self.expand}:{space.config.num_classes}cls:{act}"
        parts = [head, f"k{self.kernel}", f"e{self.expand}", f"s{self.stride}"]
        if self.se:
            parts.append("se")
        return ":".join(parts + [act])


def require_mbconv(space: SearchSpace) -> MBConvSpace:
    """Latency tables are built per block, which only MobileNet-style spaces declare."""
    if not isinstance(space, MBConvSpace):
        raise UserError(
            f"space '{space.name}' is not a MobileNet-style space; latency tables need one "
            "(e.g. tiny, attentive-fashion, attentive)"
        )
    return space


def arch_blocks(space: MBConvSpace, arch: Arch) -> list[Block]:
    """The blocks of ``arch`` in the order the static model runs them."""
    arch = space.validate(arch)
    c = space.config
    r = int(arch["resolution"])
    widths = list(arch["width"])
    sizes = space.spatial_sizes(r)
    blocks = [Block("stem", r, c.in_channels, widths[0], c.stem_kernel, 1, c.stem_stride)]
    c_in = widths[0]
    for i, stage in enumerate(c.stages):
        size = sizes[i]
        for b in range(arch["depth"][i]):
            stride = stage.stride if b == 0 else 1
            k, e = arch["kernel_size"][i], arch["expand_ratio"][i]
            blocks.append(Block("mbconv", size, c_in, widths[i + 1], k, e, stride, stage.se))
            size, c_in = conv_out(size, stride), widths[i + 1]
    blocks.append(Block("head", sizes[-1], c_in, widths[-1], 1, c.head_expand))
    return blocks


def inventory(space: MBConvSpace, resolutions: tuple[int, ...] | None = None) -> list[Block]:
    """Every distinct block any Arch of the space (at ``resolutions``) contains, each once.

    A stage's first block sees every (previous width, width, kernel, expansion) at the
    stage's stride; its later blocks are stride 1 at the stage's width. Equal
    configurations met in two stages are one entry (they compute the same thing).
    """
    c = space.config
    found: dict[Block, None] = {}
    for r in resolutions or c.resolution:
        sizes = space.spatial_sizes(r)
        for w in c.stem_width:
            found[Block("stem", r, c.in_channels, w, c.stem_kernel, 1, c.stem_stride)] = None
        prev = c.stem_width
        for i, s in enumerate(c.stages):
            after = conv_out(sizes[i], s.stride)
            for k in s.kernel_size:
                for e in s.expand_ratio:
                    for w in s.width:
                        for cp in prev:
                            found[Block("mbconv", sizes[i], cp, w, k, e, s.stride, s.se)] = None
                        if max(s.depth) > 1:
                            found[Block("mbconv", after, w, w, k, e, 1, s.se)] = None
            prev = s.width
        for cp in prev:
            for h in c.head_width:
                found[Block("head", sizes[-1], cp, h, 1, c.head_expand)] = None
    return list(found)


def build_block(space: MBConvSpace, block: Block) -> nn.Module:
    """The block as a module of the static model's own layer classes (eval mode)."""
    c = space.config
    act = c.activation
    if block.kind == "stem":
        module: nn.Module = ConvBNAct(block.c_in, block.c_out, block.kernel, block.stride, act=act)
    elif block.kind == "mbconv":
        module = MBConvBlock(
            block.c_in, block.c_out, block.kernel, block.expand, block.stride, block.se, act
        )
    else:
        module = MBConvHead(block.c_in, block.expand, block.c_out, c.num_classes, act)
    return module.eval()


def input_shape(block: Block, batch: int) -> tuple[int, int, int, int]:
    """The NCHW shape of the block's input."""
    return (batch, block.c_in, block.size, block.size)
