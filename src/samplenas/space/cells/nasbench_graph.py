"""The NAS-Bench-Graph space: a 4-node DAG of GNN layers given by a link pattern and ops.

Node i (1..4) takes its input from node ``link[i-1]`` (0 = the input); every node that
feeds no other node goes to the output. Many (link, ops) pairs compute the same function
(isomorphic DAGs, and 'skip' nodes that can move); the benchmark package defines which
pair represents each class, and we use its canonicalisation so that our architectures
are exactly the 26,206 (proteins: 2,021) that the tables hold.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np

from samplenas.errors import MissingExtra, UserError
from samplenas.space.arch import Arch
from samplenas.space.base import SearchSpace

LINKS: tuple[tuple[int, int, int, int], ...] = (
    (0, 0, 0, 0),
    (0, 0, 0, 1),
    (0, 0, 1, 1),
    (0, 0, 1, 2),
    (0, 0, 1, 3),
    (0, 1, 1, 1),
    (0, 1, 1, 2),
    (0, 1, 2, 2),
    (0, 1, 2, 3),
)
OPS = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
OPS_PROTEINS = ("gcn", "sage", "arma", "fc", "skip")


def nas_bench_graph_package():
    """The optional ``nas_bench_graph`` package, or MissingExtra naming the extra."""
    try:
        import nas_bench_graph
    except ImportError as exc:
        raise MissingExtra("NAS-Bench-Graph", "bench") from exc
    return nas_bench_graph


def _package():
    return nas_bench_graph_package().architecture


class NASBenchGraphSpace(SearchSpace):
    """Canonical NAS-Bench-Graph architectures ``{"link": [4], "ops": [4]}``."""

    def __init__(self, proteins: bool = False) -> None:
        self.proteins = proteins
        self.name = "nas-bench-graph-proteins" if proteins else "nas-bench-graph"
        self.ops = OPS_PROTEINS if proteins else OPS

    # -- canonical architectures -------------------------------------------------------
    @cached_property
    def _canonical(self) -> tuple[list[Arch], dict[int, int]]:
        pkg = _package()
        archs, by_key = [], {}
        for ops in itertools.product(self.ops, repeat=4):
            if all(o == "skip" for o in ops):
                continue
            for link in LINKS:
                candidate = pkg.Arch(list(link), list(ops))
                if candidate.check_isomorph():
                    by_key[candidate.hash_arch()] = len(archs)
                    archs.append(Arch(link=list(link), ops=list(ops)))
        return archs, by_key

    @property
    def archs(self) -> list[Arch]:
        """Every distinct architecture, in a fixed order."""
        return self._canonical[0]

    def key(self, arch: Arch) -> int:
        """The benchmark tables' key of (the class of) ``arch``."""
        pkg = _package()
        return int(pkg.Arch(list(arch["link"]), list(arch["ops"])).valid_hash())

    @cached_property
    def _position(self) -> dict[Arch, int]:
        return {a: i for i, a in enumerate(self.archs)}

    @cached_property
    def _codes(self) -> np.ndarray:
        """Gene codes (link pattern, four ops) of every canonical architecture."""
        return np.array(
            [
                [LINKS.index(tuple(a["link"]))] + [self.ops.index(o) for o in a["ops"]]
                for a in self.archs
            ]
        )

    def canonical(self, arch: Mapping[str, Any]) -> Arch:
        """The representative of ``arch``'s isomorphism class."""
        if isinstance(arch, Arch) and arch in self._position:
            return arch  # already canonical: the common case, kept O(1)
        arch = self._check(arch)
        index = self._canonical[1].get(self.key(arch))
        if index is None:
            raise UserError(f"architecture {arch.to_json()} is not in {self.name}")
        return self.archs[index]

    def _check(self, arch: Mapping[str, Any]) -> Arch:
        if not isinstance(arch, Mapping) or set(arch) != {"link", "ops"}:
            raise UserError(f'a {self.name} architecture is {{"link": [4 ints], "ops": [4 names]}}')
        link, ops = list(arch["link"]), list(arch["ops"])
        if len(link) != 4 or any(
            not isinstance(v, int) or not 0 <= v <= i for i, v in enumerate(link)
        ):
            raise UserError(f"link must be 4 integers with link[i] <= i (0 = input), got {link}")
        if len(ops) != 4 or any(o not in self.ops for o in ops):
            raise UserError(f"ops must be 4 of {list(self.ops)}, got {ops}")
        if all(o == "skip" for o in ops):
            raise UserError("an architecture of only 'skip' ops is not in the benchmark")
        return Arch(link=link, ops=ops)

    # -- SearchSpace -------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        return self.archs[int(rng.integers(len(self.archs)))]

    def size(self) -> int:
        return len(self.archs)

    def validate(self, arch: Mapping[str, Any] | Arch) -> Arch:
        return self.canonical(arch)

    def encode(self, arch: Arch) -> np.ndarray:
        """Link-pattern index followed by the four op indices (of the canonical form)."""
        return self._codes[self._position[self.canonical(arch)]].copy()

    def encode_onehot(self, arch: Arch) -> np.ndarray:
        e = self.encode(arch)
        out = np.zeros(len(LINKS) + 4 * len(self.ops), dtype=np.float32)
        out[e[0]] = 1
        for i, o in enumerate(e[1:]):
            out[len(LINKS) + i * len(self.ops) + o] = 1
        return out

    def to_graph(self, arch: Arch) -> tuple[np.ndarray, np.ndarray]:
        """Nodes: input, the four layers, output; features one-hot over (input, output, ops)."""
        arch = self.canonical(arch)
        link, ops = arch["link"], arch["ops"]
        n_types = 2 + len(self.ops)
        feats = np.zeros((6, n_types), dtype=np.float32)
        feats[0, 0] = feats[5, 1] = 1
        adj = np.zeros((6, 6), dtype=np.float32)
        for i, (parent, op) in enumerate(zip(link, ops, strict=True)):
            feats[i + 1, 2 + self.ops.index(op)] = 1
            adj[parent, i + 1] = 1
        for i in range(4):
            if (i + 1) not in link:
                adj[i + 1, 5] = 1
        return feats, adj

    def _genes(self, arch: Arch) -> list[int]:
        return list(self.encode(arch))

    def _from_genes(self, genes: list[int]) -> Arch | None:
        ops = [self.ops[g] for g in genes[1:]]
        if all(o == "skip" for o in ops):
            return None
        return self.canonical({"link": list(LINKS[genes[0]]), "ops": ops})

    def mutate(self, arch: Arch, prob: float, rng: np.random.Generator) -> Arch:
        """Each gene (link pattern, four ops) moves to another value with probability ``prob``."""
        sizes = [len(LINKS)] + [len(self.ops)] * 4
        base = self._genes(arch)
        for _ in range(100):
            genes = [
                (g + 1 + int(rng.integers(n - 1))) % n if rng.random() < prob else g
                for g, n in zip(base, sizes, strict=True)
            ]
            child = self._from_genes(genes)
            if child is not None:
                return child
        return arch

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        ga, gb = self._genes(a), self._genes(b)
        for _ in range(100):
            child = self._from_genes(
                [x if rng.random() < 0.5 else y for x, y in zip(ga, gb, strict=True)]
            )
            if child is not None:
                return child
        return a
