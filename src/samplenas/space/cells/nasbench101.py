"""The NAS-Bench-101 cell space: a DAG of up to 7 nodes and 9 edges.

Node 0 is the input and the last node the output; the others are conv1x1-bn-relu,
conv3x3-bn-relu or maxpool3x3. Nodes off every input-to-output path are pruned, and the
canonical form is the lexicographically smallest upper-triangular relabelling of the
pruned cell, so isomorphic cells are one Arch. Tables exported from NAS-Bench-101
(matrix + ops per row) plug in through ``samplenas.bench.table``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from samplenas.errors import UserError
from samplenas.space.arch import Arch
from samplenas.space.base import SearchSpace

INPUT, OUTPUT = "input", "output"
OPS = ("conv1x1-bn-relu", "conv3x3-bn-relu", "maxpool3x3")
MAX_NODES, MAX_EDGES = 7, 9
NODE_TYPES = (INPUT, *OPS, OUTPUT)


def prune(matrix: np.ndarray, ops: list[str]) -> tuple[np.ndarray, list[str]] | None:
    """Drop nodes not on an input->output path; None when the output is unreachable."""
    n = len(ops)
    forward, backward = {0}, {n - 1}
    for i in range(n):
        if i in forward:
            forward |= set(np.flatnonzero(matrix[i]).tolist())
    for j in range(n - 1, -1, -1):
        if j in backward:
            backward |= set(np.flatnonzero(matrix[:, j]).tolist())
    keep = sorted(forward & backward)
    if 0 not in keep or n - 1 not in keep:
        return None
    return matrix[np.ix_(keep, keep)], [ops[i] for i in keep]


def canonical_form(matrix: np.ndarray, ops: list[str]) -> tuple[tuple, tuple]:
    """Smallest (ops, matrix) over relabellings of the inner nodes that keep it a DAG order."""
    n = len(ops)
    best = None
    for perm in itertools.permutations(range(1, n - 1)):
        order = (0, *perm, n - 1)
        m = matrix[np.ix_(order, order)]
        if np.tril(m).any():
            continue
        key = (tuple(NODE_TYPES.index(ops[i]) for i in order), tuple(m.ravel().tolist()))
        if best is None or key < best:
            best = key
    assert best is not None
    return best


class NASBench101Space(SearchSpace):
    """Cells ``{"matrix": [[n x n 0/1]], "ops": ["input", ..., "output"]}``, n <= 7."""

    name = "nas-bench-101"

    def _parse(self, arch: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
        if not isinstance(arch, Mapping) or set(arch) != {"matrix", "ops"}:
            raise UserError('a nas-bench-101 cell is {"matrix": [[0/1 ...]], "ops": [...]}')
        ops = list(arch["ops"])
        try:
            matrix = np.array(arch["matrix"], dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise UserError("the cell's matrix must be a square 0/1 matrix") from exc
        n = len(ops)
        if matrix.shape != (n, n) or not 2 <= n <= MAX_NODES or not np.isin(matrix, (0, 1)).all():
            raise UserError(f"the cell's matrix must be {n}x{n} with 0/1 entries and 2-7 nodes")
        if np.tril(matrix).any():
            raise UserError("the cell's matrix must be upper triangular (a DAG in node order)")
        if ops[0] != INPUT or ops[-1] != OUTPUT or any(o not in OPS for o in ops[1:-1]):
            raise UserError(f"ops must be 'input', then any of {list(OPS)}, then 'output'")
        return matrix, ops

    def canonical(self, arch: Mapping[str, Any]) -> Arch:
        matrix, ops = self._parse(arch)
        pruned = prune(matrix, ops)
        if pruned is None:
            raise UserError("the cell's output is not reachable from its input")
        m, o = pruned
        if m.sum() > MAX_EDGES:
            raise UserError(f"the cell has {int(m.sum())} edges; NAS-Bench-101 allows {MAX_EDGES}")
        labels, flat = canonical_form(m, o)
        n = len(labels)
        return Arch(
            matrix=np.array(flat).reshape(n, n).tolist(), ops=[NODE_TYPES[i] for i in labels]
        )

    def validate(self, arch: Mapping[str, Any] | Arch) -> Arch:
        return self.canonical(arch)

    def _random_cell(self, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
        m = np.triu(rng.integers(0, 2, (MAX_NODES, MAX_NODES)), 1)
        ops = [INPUT, *[OPS[i] for i in rng.integers(0, len(OPS), MAX_NODES - 2)], OUTPUT]
        return m, ops

    def _try(self, m: np.ndarray, ops: list[str]) -> Arch | None:
        try:
            return self.canonical({"matrix": m.tolist(), "ops": ops})
        except UserError:
            return None

    def sample(self, rng: np.random.Generator) -> Arch:
        """A random valid cell (random edges with p = 0.5 and ops, as the benchmark's paper)."""
        while True:
            arch = self._try(*self._random_cell(rng))
            if arch is not None:
                return arch

    def size(self) -> int:
        return 423_624  # distinct cells, as counted by the NAS-Bench-101 paper

    def _padded(self, arch: Arch) -> tuple[np.ndarray, list[str]]:
        """The canonical cell padded to 7 nodes (unused inner nodes have no edges)."""
        arch = self.canonical(arch)
        m = np.array(arch["matrix"])
        n = len(arch["ops"])
        out = np.zeros((MAX_NODES, MAX_NODES), dtype=np.int64)
        out[: n - 1, : n - 1] = m[: n - 1, : n - 1]
        out[: n - 1, MAX_NODES - 1] = m[: n - 1, n - 1]
        ops = list(arch["ops"][:-1]) + [OPS[0]] * (MAX_NODES - n) + [OUTPUT]
        return out, ops

    def encode(self, arch: Arch) -> np.ndarray:
        """21 upper-triangle edges then 5 inner-node op indices (-1 for an unused node)."""
        m, ops = self._padded(arch)
        n = len(self.canonical(arch)["ops"])
        op_idx = [OPS.index(o) if i < n - 1 else -1 for i, o in enumerate(ops[1:-1], start=1)]
        return np.array(m[np.triu_indices(MAX_NODES, 1)].tolist() + op_idx)

    def encode_onehot(self, arch: Arch) -> np.ndarray:
        e = self.encode(arch)
        onehot = np.zeros((MAX_NODES - 2, len(OPS)), dtype=np.float32)
        for i, o in enumerate(e[21:]):
            if o >= 0:
                onehot[i, o] = 1
        return np.concatenate([e[:21].astype(np.float32), onehot.ravel()])

    def to_graph(self, arch: Arch) -> tuple[np.ndarray, np.ndarray]:
        arch = self.canonical(arch)
        feats = np.zeros((len(arch["ops"]), len(NODE_TYPES)), dtype=np.float32)
        for i, o in enumerate(arch["ops"]):
            feats[i, NODE_TYPES.index(o)] = 1
        return feats, np.array(arch["matrix"], dtype=np.float32)

    def mutate(self, arch: Arch, prob: float, rng: np.random.Generator) -> Arch:
        """Flip each of the 21 possible edges and change each inner op with probability ``prob``."""
        base_m, base_ops = self._padded(arch)
        for _ in range(200):
            m = base_m.copy()
            flips = np.triu(rng.random(m.shape) < prob, 1)
            m[flips] = 1 - m[flips]
            ops = list(base_ops)
            for i in range(1, MAX_NODES - 1):
                if rng.random() < prob:
                    ops[i] = OPS[(OPS.index(ops[i]) + 1 + int(rng.integers(2))) % 3]
            child = self._try(m, ops)
            if child is not None:
                return child
        return arch

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        (ma, oa), (mb, ob) = self._padded(a), self._padded(b)
        for _ in range(200):
            take = np.triu(rng.random(ma.shape) < 0.5, 1)
            m = np.where(take, mb, ma)
            ops = [x if rng.random() < 0.5 else y for x, y in zip(oa, ob, strict=True)]
            child = self._try(m, ops)
            if child is not None:
                return child
        return a
