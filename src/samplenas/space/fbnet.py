"""FBNetV2-style spaces with per-block choices (FP-NAS section 4, Tables 1-2), in YAML.

A space is a fixed macro-architecture (FP-NAS Table 1): stem conv -> block groups of
``repeat`` MBConv blocks (stride on the first) -> 1x1 conv to the head width -> global
pool -> linear classifier. Every block group chooses, for all of its blocks at once,

- ``kernel``: 0 (skip: the block is its shortcut alone, so depth varies), 3 or 5;
- ``swish``: 0 = ReLU, 1 = swish;
- ``attention``: 0 none, 1 Squeeze-Excite, 2 / 4 Split-Attention with that many splits
  (Table 2's numbering);
- ``expand_pct``: the expansion rate in percent (Table 1's (min, max, step), e.g.
  0.75-4.5 -> 75, 150, ..., 450);
- ``width``: the blocks' output channels (Table 1's (min, max, step)).

With ``fine: true`` every block is its own group and chooses on its own (FBNetV2-F-Fine).

Arch JSON: ``{"resolution": r, "kernel": [U], "swish": [U], "attention": [U],
"expand_pct": [U], "width": [U]}`` with one entry per group (U = number of groups, or of
blocks when fine). Genes are ordered resolution, then group by group (kernel, swish,
attention, expand_pct, width), and labelled with their group's name, so
``variable_groups()`` is ``[[0], [1..5], [6..10], ...]``: what FP-NAS's factorized (one
categorical per gene) and joint (one categorical over a group's genes) distributions are
over.

Size: ``size()`` is the product of the choices, as GeneSpace counts; a skipped block's
activation, attention and expansion change nothing, so ``distinct_size()`` (the number of
different networks) is smaller.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import astuple, dataclass
from typing import Any

import numpy as np

from samplenas.errors import UserError
from samplenas.space.base import Gene, GeneSpace
from samplenas.space.mbconv import ACTIVATIONS, RESIZE_MODES, _Reader
from samplenas.space.mbconv_cost import LayerCost, conv_out, mbconv_cost, stem_cost

ALLOWED = {"kernel": (0, 3, 5, 7), "swish": (0, 1), "attention": (0, 1, 2, 4)}
DEFAULTS = {"kernel": (0, 3, 5), "swish": (0, 1), "attention": (0, 1)}  # FBNetV2, Table 2
BLOCK_FIELDS = ("kernel", "swish", "attention", "expand_pct", "width")


@dataclass(frozen=True)
class BlockGroup:
    """One row of Table 1 (or, in a fine space, one block of it): its choices."""

    name: str
    repeat: int
    stride: int
    kernel: tuple[int, ...]
    swish: tuple[int, ...]
    attention: tuple[int, ...]
    expand_pct: tuple[int, ...]
    width: tuple[int, ...]

    def choices(self, field: str) -> tuple[int, ...]:
        return getattr(self, field)


@dataclass(frozen=True)
class FBNetConfig:
    """The declaration of an FBNetV2-style space (what its YAML file says)."""

    name: str
    in_channels: int
    num_classes: int
    resolution: tuple[int, ...]
    activation: str  # of the stem and the head; blocks choose their own
    resize_mode: str
    stem_width: int
    stem_kernel: int
    stem_stride: int
    groups: tuple[BlockGroup, ...]  # as searched: one per block when fine
    head_width: int
    fine: bool
    flops_step: float | None

    @staticmethod
    def from_dict(d: Mapping[str, Any], name: str) -> FBNetConfig:
        reader = _Reader(d, f"space '{name}'")
        defaults = {
            f: _int_choices(reader, f, default, ALLOWED[f]) for f, default in DEFAULTS.items()
        }
        fine = bool(reader.get("fine", bool, False))
        rows = reader.get("groups", list)
        if not rows:
            raise UserError(f"space '{name}' declares no block groups")
        groups: list[BlockGroup] = []
        for i, raw in enumerate(rows):
            g = _Reader(raw, f"space '{name}' group {i + 1}")
            label = str(g.get("name", str, f"g{i + 1}"))
            repeat = g.get("repeat", int, 1)
            if repeat < 1:
                raise UserError(f"space '{name}' group {i + 1}: 'repeat' must be >= 1")
            row = {f: _int_choices(g, f, defaults[f], ALLOWED[f]) for f in defaults}
            stride = g.get("stride", int, 1)
            expand = _range(g, "expand", scale=100)
            width = _range(g, "width", scale=1)
            g.done()
            if fine:
                groups += [
                    BlockGroup(
                        f"{label}.{b}",
                        1,
                        stride if b == 0 else 1,
                        **row,
                        expand_pct=expand,
                        width=width,
                    )
                    for b in range(repeat)
                ]
            else:
                groups.append(
                    BlockGroup(label, repeat, stride, **row, expand_pct=expand, width=width)
                )
        stem = _Reader(reader.get("stem", dict), f"space '{name}' stem")
        head = _Reader(reader.get("head", dict), f"space '{name}' head")
        cfg = FBNetConfig(
            name=name,
            in_channels=reader.get("in_channels", int, 3),
            num_classes=reader.get("num_classes", int, 1000),
            resolution=reader.choices("resolution"),
            activation=reader.get("activation", str, "hswish"),
            resize_mode=reader.get("resize_mode", str, "bicubic"),
            stem_width=stem.get("width", int),
            stem_kernel=stem.get("kernel_size", int, 3),
            stem_stride=stem.get("stride", int, 2),
            groups=tuple(groups),
            head_width=head.get("width", int),
            fine=fine,
            flops_step=reader.get("flops_step", (int, float), None),
        )
        stem.done()
        head.done()
        reader.get("kind", str)
        reader.get("description", str, "")
        reader.done()
        if cfg.activation not in ACTIVATIONS:
            raise UserError(f"space '{name}': activation must be one of {list(ACTIVATIONS)}")
        if cfg.resize_mode not in RESIZE_MODES:
            raise UserError(f"space '{name}': resize_mode must be one of {list(RESIZE_MODES)}")
        return cfg

    def act(self, swish: int) -> str:
        return "swish" if swish else "relu"


def _int_choices(
    reader: _Reader, key: str, default: tuple[int, ...], allowed: tuple[int, ...]
) -> tuple[int, ...]:
    """A list of choices from ``allowed`` (``default`` when the key is absent)."""
    value = reader.get(key, (int, list), list(default))
    values = value if isinstance(value, list) else [value]
    if (
        not values
        or len(set(values)) != len(values)
        or not all(isinstance(v, int) and not isinstance(v, bool) and v in allowed for v in values)
    ):
        raise UserError(
            f"{reader.where}: '{key}' must list distinct choices among {list(allowed)}, "
            f"got {value!r}"
        )
    return tuple(sorted(values))


def _range(reader: _Reader, key: str, scale: int) -> tuple[int, ...]:
    """A number, or Table 1's [min, max, step], as integer choices times ``scale``
    (expansion 0.75 -> 75 percent), so that Archs stay integer-valued."""
    value = reader.get(key, (int, float, list))
    spec = value if isinstance(value, list) else [value, value, 1]
    bad = UserError(
        f"{reader.where}: '{key}' must be a positive number or [min, max, step], got {value!r}"
    )
    if len(spec) != 3 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in spec
    ):
        raise bad
    lo, hi, step = (v * scale for v in spec)
    if any(abs(v - round(v)) > 1e-9 for v in (lo, hi, step)) or hi < lo:
        raise bad
    return tuple(range(round(lo), round(hi) + 1, round(step)))


class FBNetSpace(GeneSpace):
    """An FBNetV2-style space (FP-NAS Tables 1-2) with exact analytic cost."""

    def __init__(self, config: FBNetConfig) -> None:
        self.config = config
        self.name = config.name
        genes = [Gene("resolution", None, config.resolution, "resolution")]
        for u, g in enumerate(config.groups):
            genes += [Gene(f, u, g.choices(f), g.name) for f in BLOCK_FIELDS]
        self._init_genes(genes)
        self._build_cost_tables()

    @property
    def n_groups(self) -> int:
        return len(self.config.groups)

    def gene_index(self, field: str, unit: int | None = None) -> int:
        """Position of a gene in the index row: resolution first, then 5 per group."""
        if field == "resolution":
            return 0
        return 1 + unit * len(BLOCK_FIELDS) + BLOCK_FIELDS.index(field)

    def blocks(self, arch: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every block of ``arch`` in order: c_in, c_out, kernel, expansion, stride,
        attention, activation (what the static model and the supernet build)."""
        c = self.config
        out, c_in = [], c.stem_width
        for u, g in enumerate(c.groups):
            for b in range(g.repeat):
                c_out = arch["width"][u]
                out.append(
                    {
                        "c_in": c_in,
                        "c_out": c_out,
                        "kernel": arch["kernel"][u],
                        "expand_ratio": arch["expand_pct"][u] / 100,
                        "stride": g.stride if b == 0 else 1,
                        "attention": arch["attention"][u],
                        "act": c.act(arch["swish"][u]),
                    }
                )
                c_in = c_out
        return out

    def distinct_size(self) -> int:
        """Different networks: a skipped group's activation, attention and expansion
        choices give one network (up to expansion rates that round to the same width)."""
        total = len(self.config.resolution)
        for g in self.config.groups:
            convs = sum(1 for k in g.kernel if k) * len(g.swish) * len(g.attention)
            total *= len(g.width) * (int(0 in g.kernel) + convs * len(g.expand_pct))
        return total

    # -- cost ---------------------------------------------------------------------------
    def spatial_sizes(self, resolution: int) -> list[int]:
        """Input size of each group, and (last) of the head."""
        size = conv_out(resolution, self.config.stem_stride)
        sizes = []
        for g in self.config.groups:
            sizes.append(size)
            size = conv_out(size, g.stride)
        return sizes + [size]

    def _build_cost_tables(self) -> None:
        """Tabulate each group's cost over (resolution, its input width, its width,
        kernel, attention, expansion); the activation costs nothing. An arch's cost is a
        sum of lookups, exactly the formula's."""
        c = self.config
        self._stem = np.array(
            [
                astuple(stem_cost(r, c.in_channels, c.stem_width, c.stem_kernel, c.stem_stride)[0])
                for r in c.resolution
            ],
            dtype=np.float64,
        ).T
        self._tables = []
        prev = (c.stem_width,)
        for u, g in enumerate(c.groups):
            table = np.zeros(
                (
                    2,
                    len(c.resolution),
                    len(prev),
                    len(g.width),
                    len(g.kernel),
                    len(g.attention),
                    len(g.expand_pct),
                )
            )
            for ri, r in enumerate(c.resolution):
                size_in = self.spatial_sizes(r)[u]
                for (pi, cp), (wi, w), (ki, k), (ai, a), (ei, e) in itertools.product(
                    enumerate(prev),
                    enumerate(g.width),
                    enumerate(g.kernel),
                    enumerate(g.attention),
                    enumerate(g.expand_pct),
                ):
                    macs = params = 0
                    size, c_in = size_in, cp
                    for b in range(g.repeat):
                        cost, size = mbconv_cost(
                            size, c_in, w, k, e / 100, g.stride if b == 0 else 1, a
                        )
                        macs, params, c_in = macs + cost.macs, params + cost.params, w
                    table[:, ri, pi, wi, ki, ai, ei] = macs, params
            self._tables.append(table)
            prev = g.width
        self._head = np.zeros((2, len(c.resolution), len(prev)))
        for (ri, r), (pi, cp) in itertools.product(enumerate(c.resolution), enumerate(prev)):
            cost = head_cost(self.spatial_sizes(r)[-1], cp, c.head_width, c.num_classes)
            self._head[:, ri, pi] = cost.macs, cost.params

    def cost_indices(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.atleast_2d(idx)
        r = idx[:, 0]
        macs, params = self._stem[:, r]
        prev = np.zeros(len(idx), dtype=np.int64)
        for u, table in enumerate(self._tables):
            k, _, a, e, w = (idx[:, self.gene_index(f, u)] for f in BLOCK_FIELDS)
            part = table[:, r, prev, w, k, a, e]
            macs, params, prev = macs + part[0], params + part[1], w
        head = self._head[:, r, prev]
        return (macs + head[0]) / 1e6, (params + head[1]) / 1e6

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["kind"] = "fbnet"
        return info


def head_cost(size: int, c_in: int, width: int, classes: int) -> LayerCost:
    """1x1 conv to ``width`` (+BN) -> global pool -> linear classifier (Table 1's last rows)."""
    macs = size * size * c_in * width + width * classes
    params = c_in * width + 2 * width + width * classes + classes
    return LayerCost(macs, params)
