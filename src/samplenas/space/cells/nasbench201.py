"""The NAS-Bench-201 cell space: one of 5 ops on each of the 6 edges of a 4-node cell.

Node 0 is the cell's input, node j (1..3) the sum of its incoming edges ``i -> j`` (i < j),
node 3 the cell's output. An Arch is ``{"ops": [6 op names]}`` in the benchmark's edge
order ``EDGES``; every one of the 5^6 = 15,625 op lists is a cell of the benchmark, and
the tables hold each of them (isomorphic cells included), so ``validate`` applies no
canonicalisation; ``canonical_key`` names the benchmark's isomorphism class for those who
want to deduplicate. ``key`` is the tables' 6-digit key (digit i = index of edge i's op
in ``OPS``); ``to_string`` / ``from_string`` convert to and from the benchmark's string.

``cost`` is the exact analytic cost of the benchmark's CIFAR macro network (NAS-Bench-201
paper, Figure 1; xautodl's TinyNetwork): stem 3x3 conv (3->16, no bias) + BN; 5 cells at
C = 16; a ResNet basic block 16->32 with stride 2 (ReLU-conv3x3/2-BN, ReLU-conv3x3-BN, and
a 2x2 average pool + 1x1 conv shortcut); 5 cells at 32; the same block 32->64; 5 cells at
64; BN + ReLU; global average pool; linear classifier. In a cell, ``nor_conv_kxk`` is
ReLU -> kxk conv (no bias) -> BN, ``avg_pool_3x3`` a stride-1 average pool,
``skip_connect`` the identity and ``none`` the zero map.

* Parameters: every conv weight, every BN's affine weight and bias (not its running
  statistics) and the classifier's weight and bias -- what ``sum(p.numel())`` of the built
  network counts and what the tables' ``model_size`` holds (checked for all cells of the
  three datasets). A conv on an edge whose input is always zero still counts: the
  network holds its weights.
* MFLOPs: multiply-accumulates of every convolution and of the classifier (the convention
  of the MobileNet spaces, ``FlopCounterMode``'s count / 2); BN, ReLU, pooling and
  additions are free, and convs are counted whether or not their input is zero, as the
  built network runs them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np

from samplenas.errors import UserError
from samplenas.space.arch import Arch
from samplenas.space.base import Cost, SearchSpace

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
CELL_NODES = 4
CELLS_PER_STAGE = 5
STEM_CHANNELS = 16
STAGES = 3  # channels 16, 32, 64; a residual reduction block between stages
KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}
STRING_FORM = "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'"
ZERO = "#"  # the expression of a node that is always zero (canonical_key)


# -- the three textual forms: op list, NAS-Bench-201 string, table key -------------------
def _ops(arch: Mapping[str, Any] | Arch) -> tuple[str, ...]:
    return tuple(arch["ops"])


def to_string(arch: Mapping[str, Any] | Arch) -> str:
    """The NAS-Bench-201 string, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
    ops = _ops(arch)
    nodes = []
    for j in range(1, CELL_NODES):
        entries = [f"{ops[e]}~{i}" for e, (i, jj) in enumerate(EDGES) if jj == j]
        nodes.append("|" + "|".join(entries) + "|")
    return "+".join(nodes)


def from_string(text: str) -> Arch:
    """The Arch of a NAS-Bench-201 string; UserError (one sentence) when it is malformed."""
    nodes = text.strip().split("+")
    if len(nodes) != CELL_NODES - 1:
        raise UserError(
            f"a NAS-Bench-201 cell string has 3 nodes joined by '+' like {STRING_FORM}, "
            f"got {text!r}"
        )
    by_edge: dict[tuple[int, int], str] = {}
    for j, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")):
            raise UserError(f"node {j} of the cell string must be enclosed in '|', got {node!r}")
        entries = node[1:-1].split("|")
        expected = [f"~{i}" for i in range(j)]
        found = [e[e.rfind("~") :] if "~" in e else e for e in entries]
        if found != expected:
            raise UserError(
                f"node {j} of the cell string must list inputs {', '.join(expected)} in "
                f"order (as in {STRING_FORM}), got {node!r}"
            )
        for i, entry in enumerate(entries):
            op = entry[: entry.rfind("~")]
            if op not in OPS:
                raise UserError(
                    f"unknown op {op!r} on edge {i}->{j}; NAS-Bench-201 ops are {list(OPS)}"
                )
            by_edge[(i, j)] = op
    return Arch(ops=[by_edge[e] for e in EDGES])


def key(arch: Mapping[str, Any] | Arch) -> str:
    """The tables' 6-digit key: digit i is the index of edge i's op in ``OPS``."""
    return "".join(str(OPS.index(op)) for op in _ops(arch))


def from_key(k: str) -> Arch:
    """The Arch of a 6-digit table key."""
    if not (isinstance(k, str) and len(k) == len(EDGES) and all(c in "01234" for c in k)):
        raise UserError(f"a NAS-Bench-201 key is 6 digits 0-4 (one op index per edge), got {k!r}")
    return Arch(ops=[OPS[int(c)] for c in k])


def unique_expression(arch: Mapping[str, Any] | Arch) -> str:
    """The NAS-Bench-201 API's isomorphism rule (``to_unique_str(consider_zero=True)``).

    Each node is the '+'-join of its sorted incoming terms: a 'none' edge, or an edge out
    of a node whose expression is the zero term itself, is the zero term; 'skip_connect'
    passes its source's expression on; any other op is ``(source)@op``. The rule is
    syntactic -- a zero term still counts in a sum (so only node 1 can be zero), a sum a
    skip passes on is sorted as one string, and one conv whose output reaches two nodes
    (through a skip) is not told apart from two convs of the same input, whose parameter
    counts differ -- and it is how the benchmark's authors count 6,466 unique cells among
    the 15,625 (the tables reuse a few seed records within such a class: see
    tests/test_nasbench201_space.py).
    """
    ops = _ops(arch)
    nodes = ["0"]
    for j in range(1, CELL_NODES):
        terms = []
        for e, (i, jj) in enumerate(EDGES):
            if jj != j:
                continue
            if ops[e] == "none" or nodes[i] == ZERO:
                terms.append(ZERO)
            elif ops[e] == "skip_connect":
                terms.append(nodes[i])
            else:
                terms.append(f"({nodes[i]})@{ops[e]}")
        nodes.append("+".join(sorted(terms)))
    return nodes[-1]


# -- cost --------------------------------------------------------------------------------
def _conv(size: int, c_in: int, c_out: int, k: int, bn: bool) -> tuple[int, int]:
    """(MACs, params) of a bias-free kxk conv producing ``size``x``size``, plus its BN."""
    return size * size * k * k * c_in * c_out, k * k * c_in * c_out + (2 * c_out if bn else 0)


def edge_cost(op: str, c: int, size: int) -> tuple[int, int]:
    """(MACs, params) of one cell edge at width ``c`` and resolution ``size``."""
    if op in KERNEL:
        return _conv(size, c, c, KERNEL[op], bn=True)
    return 0, 0  # none, skip_connect, avg_pool_3x3


def reduction_cost(c_in: int, size_out: int) -> tuple[int, int]:
    """The residual block between stages: two 3x3 ReLU-conv-BN and a pooled 1x1 shortcut."""
    c_out = 2 * c_in
    parts = (
        _conv(size_out, c_in, c_out, 3, bn=True),
        _conv(size_out, c_out, c_out, 3, bn=True),
        _conv(size_out, c_in, c_out, 1, bn=False),
    )
    return sum(m for m, _ in parts), sum(p for _, p in parts)


class NASBench201Space(SearchSpace):
    """NAS-Bench-201 cells ``{"ops": [6 of OPS]}`` in a macro network for one dataset."""

    def __init__(self, num_classes: int, resolution: int, name: str) -> None:
        if resolution % 4:
            raise ValueError(
                f"the resolution halves twice, so it must be a multiple of 4, not {resolution}"
            )
        self.num_classes = num_classes
        self.resolution = resolution
        self.name = name

    # -- forms ---------------------------------------------------------------------------
    def validate(self, arch: Mapping[str, Any] | Arch | str) -> Arch:
        """An Arch from ``{"ops": [...]}`` or a NAS-Bench-201 string."""
        if isinstance(arch, str):
            return from_string(arch)
        if not isinstance(arch, Mapping) or set(arch) != {"ops"}:
            raise UserError(
                f'a {self.name} architecture is {{"ops": [6 op names]}} or a NAS-Bench-201 '
                f"string like {STRING_FORM}"
            )
        ops = arch["ops"]
        if not isinstance(ops, (list, tuple)) or len(ops) != len(EDGES):
            raise UserError(f"'ops' must list 6 ops, one per edge {list(EDGES)}, got {ops!r}")
        bad = [o for o in ops if o not in OPS]
        if bad:
            raise UserError(f"unknown op(s) {bad}; NAS-Bench-201 ops are {list(OPS)}")
        return arch if isinstance(arch, Arch) else Arch(ops=list(ops))

    def arch_from_text(self, text: str) -> Arch | None:
        """A command-line argument in the NAS-Bench-201 string form (starts with '|')."""
        return from_string(text) if text.strip().startswith("|") else None

    to_string = staticmethod(to_string)
    from_string = staticmethod(from_string)
    key = staticmethod(key)
    from_key = staticmethod(from_key)

    @cached_property
    def archs(self) -> list[Arch]:
        """All 15,625 cells in table-key order ('000000', '000001', ...)."""
        return [Arch(ops=list(ops)) for ops in itertools.product(OPS, repeat=len(EDGES))]

    @cached_property
    def _canonical(self) -> dict[str, str]:
        """Each key -> the smallest key with the same ``unique_expression``."""
        first: dict[str, str] = {}
        out = {}
        for arch in self.archs:
            k = key(arch)
            out[k] = first.setdefault(unique_expression(arch), k)
        return out

    def canonical_key(self, arch: Mapping[str, Any] | Arch | str) -> str:
        """The smallest table key of ``arch``'s isomorphism class (6,466 classes).

        Optional deduplication for strategies; ``validate`` does not apply it, since the
        tables hold (and score separately) every one of the 15,625 cells.
        """
        return self._canonical[key(self.validate(arch))]

    # -- SearchSpace ---------------------------------------------------------------------
    def size(self) -> int:
        return len(OPS) ** len(EDGES)

    def sample(self, rng: np.random.Generator) -> Arch:
        return self.archs[int(rng.integers(self.size()))]

    def encode(self, arch: Arch) -> np.ndarray:
        """The 6 op indices in edge order."""
        return np.array([OPS.index(o) for o in self.validate(arch)["ops"]], dtype=np.int64)

    def encode_onehot(self, arch: Arch) -> np.ndarray:
        """30 floats: one block of 5 per edge."""
        out = np.zeros((len(EDGES), len(OPS)), dtype=np.float32)
        out[np.arange(len(EDGES)), self.encode(arch)] = 1
        return out.ravel()

    def to_graph(self, arch: Arch) -> tuple[np.ndarray, np.ndarray]:
        """The Neural Predictor's cell graph with ops as nodes.

        Nodes: 0 the input, 1..6 the ops of edges 0..5, 7 the output; features one-hot
        over (input, output, *OPS). The op of edge i->j reads the ops of the edges ending
        at node i (the input when i = 0); the ops of the edges ending at node 3 feed the
        output. A 'none' op outputs zero, so its node keeps its type but loses every
        connection: a cell whose output is reachable only through 'none' has no path
        from input to output.
        """
        ops = self.validate(arch)["ops"]
        n = len(EDGES) + 2
        feats = np.zeros((n, 2 + len(OPS)), dtype=np.float32)
        feats[0, 0] = feats[n - 1, 1] = 1
        adj = np.zeros((n, n), dtype=np.float32)
        for e, (i, j) in enumerate(EDGES):
            feats[e + 1, 2 + OPS.index(ops[e])] = 1
            if ops[e] == "none":
                continue
            sources = [0] if i == 0 else [f + 1 for f, (_, t) in enumerate(EDGES) if t == i]
            for s in sources:
                if s == 0 or ops[s - 1] != "none":
                    adj[s, e + 1] = 1
            if j == CELL_NODES - 1:
                adj[e + 1, n - 1] = 1
        return feats, adj

    def mutate(self, arch: Arch, prob: float, rng: np.random.Generator) -> Arch:
        """Each of the 6 edges moves to another op with probability ``prob``."""
        genes = self.encode(arch)
        flip = rng.random(len(genes)) < prob
        shift = 1 + rng.integers(len(OPS) - 1, size=len(genes))
        genes = np.where(flip, (genes + shift) % len(OPS), genes)
        return Arch(ops=[OPS[g] for g in genes])

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        take_b = rng.random(len(EDGES)) < 0.5
        ops = [y if t else x for x, y, t in zip(a["ops"], b["ops"], take_b, strict=True)]
        return Arch(ops=ops)

    # -- cost ----------------------------------------------------------------------------
    def cost(self, arch: Arch) -> Cost:
        """Exact MACs and parameters of the macro network (see the module docstring)."""
        ops = self.validate(arch)["ops"]
        r = self.resolution
        macs, params = _conv(r, 3, STEM_CHANNELS, 3, bn=True)
        c, size = STEM_CHANNELS, r
        for stage in range(STAGES):
            if stage:
                size //= 2
                m, p = reduction_cost(c, size)
                macs, params, c = macs + m, params + p, 2 * c
            for op in ops:
                m, p = edge_cost(op, c, size)
                macs, params = macs + CELLS_PER_STAGE * m, params + CELLS_PER_STAGE * p
        params += 2 * c  # the last BN
        macs += c * self.num_classes
        params += c * self.num_classes + self.num_classes
        return Cost(macs / 1e6, params / 1e6)

    @cached_property
    def _extremes(self) -> tuple[Arch, Arch]:
        costs = [(self.cost(a).mflops, self.cost(a).params_m) for a in self.archs]
        return self.archs[costs.index(min(costs))], self.archs[costs.index(max(costs))]

    def smallest(self) -> Arch:
        """The first cell (in key order) of least cost: all 'none'."""
        return self._extremes[0]

    def largest(self) -> Arch:
        """The first cell (in key order) of largest cost: all 'nor_conv_3x3'."""
        return self._extremes[1]
