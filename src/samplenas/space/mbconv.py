"""MobileNet-style spaces (AttentiveNAS / BigNAS / FBNetV3 family), declared in YAML.

Arch JSON: ``{"resolution": r, "width": [stem, stage1..stageS, head],
"depth": [S], "kernel_size": [S], "expand_ratio": [S]}``. All blocks of a stage
share its width, kernel size and expansion ratio; depth says how many run.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from samplenas.errors import UserError
from samplenas.space.base import Gene, GeneSpace
from samplenas.space.mbconv_cost import head_cost, mbconv_cost, stem_cost

ACTIVATIONS = ("swish", "relu", "hswish")
RESIZE_MODES = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class StageSpec:
    name: str
    width: tuple[int, ...]
    depth: tuple[int, ...]
    kernel_size: tuple[int, ...]
    expand_ratio: tuple[int, ...]
    stride: int
    se: bool


@dataclass(frozen=True)
class MBConvConfig:
    """The declaration of a MobileNet-style space (what its YAML file says)."""

    name: str
    in_channels: int
    num_classes: int
    resolution: tuple[int, ...]
    activation: str
    resize_mode: str
    stem_width: tuple[int, ...]
    stem_kernel: int
    stem_stride: int
    stages: tuple[StageSpec, ...]
    head_width: tuple[int, ...]
    head_expand: int
    flops_step: float | None  # bucket width of the FLOPs prior; None = about 70 buckets

    @staticmethod
    def from_dict(d: Mapping[str, Any], name: str) -> MBConvConfig:
        reader = _Reader(d, f"space '{name}'")
        stem = _Reader(reader.get("stem", dict), f"space '{name}' stem")
        head = _Reader(reader.get("head", dict), f"space '{name}' head")
        stages = []
        raw_stages = reader.get("stages", list)
        if not raw_stages:
            raise UserError(f"space '{name}' declares no stages")
        for i, raw in enumerate(raw_stages):
            s = _Reader(raw, f"space '{name}' stage {i + 1}")
            stages.append(
                StageSpec(
                    name=str(s.get("name", str, f"mb{i + 1}")),
                    width=s.choices("width"),
                    depth=s.choices("depth"),
                    kernel_size=s.choices("kernel_size"),
                    expand_ratio=s.choices("expand_ratio"),
                    stride=s.get("stride", int, 1),
                    se=bool(s.get("se", bool, False)),
                )
            )
            s.done()
            if any(k % 2 == 0 for k in stages[-1].kernel_size):
                raise UserError(f"space '{name}' stage {i + 1}: kernel sizes must be odd")
        cfg = MBConvConfig(
            name=name,
            in_channels=reader.get("in_channels", int, 3),
            num_classes=reader.get("num_classes", int, 1000),
            resolution=reader.choices("resolution"),
            activation=reader.get("activation", str, "swish"),
            resize_mode=reader.get("resize_mode", str, "bicubic"),
            stem_width=stem.choices("width"),
            stem_kernel=stem.get("kernel_size", int, 3),
            stem_stride=stem.get("stride", int, 2),
            stages=tuple(stages),
            head_width=head.choices("width"),
            head_expand=head.get("expand", int, 6),
            flops_step=reader.get("flops_step", (int, float), None),
        )
        stem.done()
        head.done()
        reader.get("kind", str, "mbconv")
        reader.get("description", str, "")
        reader.done()
        if cfg.activation not in ACTIVATIONS:
            raise UserError(f"space '{name}': activation must be one of {list(ACTIVATIONS)}")
        if cfg.resize_mode not in RESIZE_MODES:
            raise UserError(f"space '{name}': resize_mode must be one of {list(RESIZE_MODES)}")
        return cfg


class _Reader:
    """Reads one YAML mapping, naming the offending key in every error."""

    def __init__(self, d: Any, where: str) -> None:
        if not isinstance(d, Mapping):
            raise UserError(f"{where} must be a mapping")
        self.d, self.where, self.seen = d, where, set()

    def get(self, key: str, typ: Any, default: Any = ...) -> Any:
        self.seen.add(key)
        if key not in self.d:
            if default is ...:
                raise UserError(f"{self.where} lacks the key '{key}'")
            return default
        value = self.d[key]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise UserError(f"{self.where}: '{key}' has the wrong type ({value!r})")
        return value

    def choices(self, key: str) -> tuple[int, ...]:
        value = self.get(key, (int, list))
        values = value if isinstance(value, list) else [value]
        if not values or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
        ):
            raise UserError(f"{self.where}: '{key}' must be a positive integer or a list of them")
        if len(set(values)) != len(values):
            raise UserError(f"{self.where}: '{key}' lists a choice twice")
        return tuple(sorted(values))

    def done(self) -> None:
        extra = sorted(set(self.d) - self.seen)
        if extra:
            raise UserError(f"{self.where} has unknown key(s) {extra}")


class MBConvSpace(GeneSpace):
    """A MobileNet-style space with exact analytic cost from per-stage lookup tables."""

    def __init__(self, config: MBConvConfig) -> None:
        self.config = config
        self.name = config.name
        c = config
        genes = [Gene("resolution", None, c.resolution, "input")]
        genes.append(Gene("width", 0, c.stem_width, "stem"))
        genes += [Gene("width", i + 1, s.width, s.name) for i, s in enumerate(c.stages)]
        genes.append(Gene("width", len(c.stages) + 1, c.head_width, "head"))
        for field in ("depth", "kernel_size", "expand_ratio"):
            genes += [Gene(field, i, getattr(s, field), s.name) for i, s in enumerate(c.stages)]
        self._init_genes(genes)
        self._build_cost_tables()

    # Gene positions in the index row.
    @property
    def n_stages(self) -> int:
        return len(self.config.stages)

    def _gene(self, field: str, i: int | None = None) -> int:
        for j, g in enumerate(self.genes):
            if g.field == field and g.index == i:
                return j
        raise KeyError((field, i))

    def spatial_sizes(self, resolution: int) -> list[int]:
        """Input spatial size of each stage (index 0 = first stage) and of the head (last)."""
        from samplenas.space.mbconv_cost import conv_out

        size = conv_out(resolution, self.config.stem_stride)
        sizes = []
        for s in self.config.stages:
            sizes.append(size)
            size = conv_out(size, s.stride)
        sizes.append(size)
        return sizes

    def _build_cost_tables(self) -> None:
        """Tabulate cost per stage over (resolution, in width, width, depth, kernel, expand).

        A stage's cost depends only on those, so the cost of any arch is a sum of
        S + 2 table lookups: millions of archs per second, exactly equal to the formula.
        """
        c = self.config
        R = len(c.resolution)
        self._stem = np.zeros((2, R, len(c.stem_width)))
        for (ri, r), (wi, w) in itertools.product(enumerate(c.resolution), enumerate(c.stem_width)):
            cost, _ = stem_cost(r, c.in_channels, w, c.stem_kernel, c.stem_stride)
            self._stem[:, ri, wi] = cost.macs, cost.params
        self._stage_tables = []
        prev_widths = c.stem_width
        for si, s in enumerate(c.stages):
            shape = (
                2,
                R,
                len(prev_widths),
                len(s.width),
                len(s.depth),
                len(s.kernel_size),
                len(s.expand_ratio),
            )
            table = np.zeros(shape)
            for ri, r in enumerate(c.resolution):
                size_in = self.spatial_sizes(r)[si]
                for (pi, cp), (wi, w), (ki, k), (ei, e) in itertools.product(
                    enumerate(prev_widths),
                    enumerate(s.width),
                    enumerate(s.kernel_size),
                    enumerate(s.expand_ratio),
                ):
                    macs = params = 0
                    size, c_in = size_in, cp
                    cum = {}
                    for b in range(max(s.depth)):
                        cost, size = mbconv_cost(
                            size, c_in, w, k, e, s.stride if b == 0 else 1, s.se
                        )
                        macs += cost.macs
                        params += cost.params
                        c_in = w
                        cum[b + 1] = (macs, params)
                    for di, d in enumerate(s.depth):
                        table[:, ri, pi, wi, di, ki, ei] = cum[d]
            self._stage_tables.append(table)
            prev_widths = s.width
        last = c.stages[-1]
        self._head = np.zeros((2, R, len(last.width), len(c.head_width)))
        for ri, r in enumerate(c.resolution):
            size = self.spatial_sizes(r)[-1]
            for (wi, w), (hi, h) in itertools.product(
                enumerate(last.width), enumerate(c.head_width)
            ):
                cost = head_cost(size, w, c.head_expand, h, c.num_classes)
                self._head[:, ri, wi, hi] = cost.macs, cost.params
        S = self.n_stages
        self._g_res = self._gene("resolution")
        self._g_width = [self._gene("width", i) for i in range(S + 2)]
        self._g_stage = [
            (self._gene("depth", i), self._gene("kernel_size", i), self._gene("expand_ratio", i))
            for i in range(S)
        ]

    def cost_indices(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.atleast_2d(idx)
        r = idx[:, self._g_res]
        w = [idx[:, j] for j in self._g_width]
        total = self._stem[:, r, w[0]]
        for si, (gd, gk, ge) in enumerate(self._g_stage):
            total = (
                total
                + self._stage_tables[si][:, r, w[si], w[si + 1], idx[:, gd], idx[:, gk], idx[:, ge]]
            )
        total = total + self._head[:, r, w[-2], w[-1]]
        return total[0] / 1e6, total[1] / 1e6

    def variable_groups(self) -> list[list[int]]:
        """One group per stage (its width, depth, kernel and expansion genes); the input
        resolution, the stem and the head are groups of their own."""
        return self.genes_by_label()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["kind"] = "mbconv"
        return info
