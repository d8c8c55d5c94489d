"""SearchSpace: the set of all Archs, and GeneSpace, a product of discrete choices.

Every sampler, predictor and search strategy talks to this interface only, so a new
space (a MobileNet-style supernet space, a cell space, a tabular benchmark's space)
plugs into all of them at once.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from samplenas.errors import MissingExtra, UserError
from samplenas.space.arch import Arch


@dataclass(frozen=True)
class Cost:
    """Analytic cost of one Arch: multiply-accumulates (millions) and parameters (millions)."""

    mflops: float
    params_m: float


class SearchSpace(ABC):
    """The set of all architectures of one kind, declared as named discrete dimensions."""

    name: str

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch:
        """One architecture drawn uniformly at random."""

    def sample_many(self, rng: np.random.Generator, n: int) -> list[Arch]:
        return [self.sample(rng) for _ in range(n)]

    def sample_distinct(
        self, rng: np.random.Generator, n: int, seen: set[Arch] | None = None
    ) -> list[Arch]:
        """n uniform draws not in ``seen`` (which gains them), in draw order.

        Rejection needs a bound: asking for more than the space holds would loop forever,
        so it raises ValueError (callers check user input against ``size()`` first).
        """
        seen = set() if seen is None else seen
        if n > self.size() - len(seen):
            raise ValueError(
                f"{n} new architectures asked of space '{self.name}', "
                f"which has {self.size() - len(seen)} left"
            )
        out: list[Arch] = []
        while len(out) < n:
            arch = self.sample(rng)
            if arch not in seen:
                seen.add(arch)
                out.append(arch)
        return out

    @abstractmethod
    def size(self) -> int:
        """How many distinct architectures the space holds."""

    @abstractmethod
    def validate(self, arch: Mapping[str, Any] | Arch) -> Arch:
        """Return ``arch`` as an Arch of this space, or raise UserError saying what is wrong."""

    def arch_from_text(self, text: str) -> Arch | None:
        """An Arch written in the space's own notation on the command line (e.g. a
        NAS-Bench-201 cell string), or None when ``text`` is JSON or a JSON file."""
        return None

    def contains(self, arch: Mapping[str, Any] | Arch) -> bool:
        try:
            self.validate(arch)
        except UserError:
            return False
        return True

    def __contains__(self, arch: object) -> bool:
        return isinstance(arch, Mapping) and self.contains(arch)

    @abstractmethod
    def encode(self, arch: Arch) -> np.ndarray:
        """A fixed-length integer vector (the predictors' default input)."""

    @abstractmethod
    def encode_onehot(self, arch: Arch) -> np.ndarray:
        """A fixed-length 0/1 float vector, one block per dimension."""

    @abstractmethod
    def to_graph(self, arch: Arch) -> tuple[np.ndarray, np.ndarray]:
        """(node features [nodes, features], adjacency [nodes, nodes]) for graph predictors."""

    @abstractmethod
    def mutate(self, arch: Arch, prob: float, rng: np.random.Generator) -> Arch:
        """A copy where each dimension changes, with probability ``prob``, to another value."""

    @abstractmethod
    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """A child taking each dimension from ``a`` or ``b`` with equal probability."""

    def cost(self, arch: Arch) -> Cost:
        """Analytic cost; spaces without a cost model raise UserError."""
        raise UserError(f"space '{self.name}' has no analytic cost model")

    def mflops(self, arch: Arch) -> float:
        return self.cost(arch).mflops

    def smallest(self) -> Arch:
        raise UserError(f"space '{self.name}' has no smallest architecture")

    def largest(self) -> Arch:
        raise UserError(f"space '{self.name}' has no largest architecture")

    def describe(self) -> dict[str, Any]:
        """Name, size and (when the space has a cost model) the FLOPs range, for listings."""
        info: dict[str, Any] = {"name": self.name}
        try:
            info["size"] = self.size()
        except MissingExtra as exc:  # listed all the same, with what it needs
            return {
                **info,
                "size": None,
                "min_mflops": None,
                "max_mflops": None,
                "needs": exc.install,
            }
        try:
            info["min_mflops"] = self.cost(self.smallest()).mflops
            info["max_mflops"] = self.cost(self.largest()).mflops
        except UserError:
            info["min_mflops"] = info["max_mflops"] = None
        return info


@dataclass(frozen=True)
class Gene:
    """One discrete dimension: the JSON field it lives in, its position there, its choices."""

    field: str
    index: int | None  # position inside a list field, None for a scalar field
    choices: tuple[int, ...]
    group: str = ""  # a human label, e.g. the stage name

    @property
    def label(self) -> str:
        return self.field if self.index is None else f"{self.field}[{self.index}]"


class GeneSpace(SearchSpace):
    """A space that is the Cartesian product of its genes' choices.

    Archs map to rows of choice indices, which makes uniform sampling, mutation,
    crossover and batched cost evaluation plain array operations.
    """

    genes: tuple[Gene, ...]
    field_lengths: dict[str, int | None]  # list length per field, None for scalars

    def _init_genes(self, genes: Sequence[Gene]) -> None:
        self.genes = tuple(genes)
        self.field_lengths = {}
        for g in self.genes:
            if g.index is None:
                self.field_lengths[g.field] = None
            else:
                self.field_lengths[g.field] = max(self.field_lengths.get(g.field) or 0, g.index + 1)
        self.n_choices = np.array([len(g.choices) for g in self.genes], dtype=np.int64)
        self._choice_pos = [{v: i for i, v in enumerate(g.choices)} for g in self.genes]
        self._values = [np.asarray(g.choices, dtype=np.int64) for g in self.genes]
        self.mutable = np.flatnonzero(self.n_choices > 1)

    # -- index rows <-> Archs ---------------------------------------------------------
    def arch_from_indices(self, idx: Sequence[int] | np.ndarray) -> Arch:
        fields: dict[str, Any] = {}
        for g, i in zip(self.genes, idx, strict=True):
            value = g.choices[int(i)]
            if g.index is None:
                fields[g.field] = value
            else:
                fields.setdefault(g.field, [0] * self.field_lengths[g.field])[g.index] = value
        return Arch(fields)

    def indices_of(self, arch: Arch) -> np.ndarray:
        arch = self.validate(arch)
        out = np.empty(len(self.genes), dtype=np.int64)
        for j, g in enumerate(self.genes):
            value = arch[g.field] if g.index is None else arch[g.field][g.index]
            out[j] = self._choice_pos[j][value]
        return out

    def values_from_indices(self, idx: np.ndarray) -> np.ndarray:
        """Gene values for a batch [n, genes] of index rows."""
        idx = np.atleast_2d(idx)
        return np.stack([self._values[j][idx[:, j]] for j in range(len(self.genes))], axis=1)

    def sample_indices(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n uniform index rows, shape [n, genes]."""
        return (rng.random((n, len(self.genes))) * self.n_choices).astype(np.int64)

    # -- SearchSpace ------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        return self.arch_from_indices(self.sample_indices(rng, 1)[0])

    def sample_many(self, rng: np.random.Generator, n: int) -> list[Arch]:
        return [self.arch_from_indices(row) for row in self.sample_indices(rng, n)]

    def size(self) -> int:
        return math.prod(int(n) for n in self.n_choices)

    def smallest(self) -> Arch:
        return self.arch_from_indices(np.zeros(len(self.genes), dtype=np.int64))

    def largest(self) -> Arch:
        return self.arch_from_indices(self.n_choices - 1)

    def validate(self, arch: Mapping[str, Any] | Arch) -> Arch:
        if not isinstance(arch, Mapping):
            raise UserError(
                f"an architecture must be a JSON object with fields "
                f"{sorted(self.field_lengths)}, got {type(arch).__name__}"
            )
        missing = [f for f in self.field_lengths if f not in arch]
        if missing:
            raise UserError(f"architecture for space '{self.name}' lacks field(s) {missing}")
        extra = [f for f in arch if f not in self.field_lengths]
        if extra:
            raise UserError(
                f"architecture for space '{self.name}' has unknown field(s) {extra}; "
                f"expected {list(self.field_lengths)}"
            )
        for field, length in self.field_lengths.items():
            value = arch[field]
            if length is None:
                if isinstance(value, (list, tuple)):
                    raise UserError(f"field '{field}' must be a single integer, got a list")
            elif not isinstance(value, (list, tuple)) or len(value) != length:
                got = f"{len(value)} values" if isinstance(value, (list, tuple)) else repr(value)
                raise UserError(f"field '{field}' must be a list of {length} integers, got {got}")
        for j, g in enumerate(self.genes):
            value = arch[g.field] if g.index is None else arch[g.field][g.index]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise UserError(f"{g.label} must be an integer, got {value!r}")
            if int(value) not in self._choice_pos[j]:
                where = f" ({g.group})" if g.group else ""
                raise UserError(
                    f"{g.label}={value}{where} is not one of the choices {list(g.choices)}"
                )
        return arch if isinstance(arch, Arch) else Arch({f: arch[f] for f in self.field_lengths})

    def encode(self, arch: Arch) -> np.ndarray:
        """The gene values in gene order (for `attentive`: the 31-integer AttentiveNAS vector)."""
        return self.values_from_indices(self.indices_of(arch)[None])[0]

    def encode_onehot(self, arch: Arch) -> np.ndarray:
        idx = self.indices_of(arch)
        out = np.zeros(int(self.n_choices.sum()), dtype=np.float32)
        offsets = np.concatenate([[0], np.cumsum(self.n_choices)[:-1]])
        out[offsets + idx] = 1.0
        return out

    def encode_batch(self, archs: Sequence[Arch]) -> np.ndarray:
        return (
            np.stack([self.encode(a) for a in archs]) if archs else np.zeros((0, len(self.genes)))
        )

    def to_graph(self, arch: Arch) -> tuple[np.ndarray, np.ndarray]:
        """A chain graph with one node per gene group (e.g. per stage), one-hot features."""
        idx = self.indices_of(arch)
        groups = list(dict.fromkeys(g.group or g.label for g in self.genes))
        offsets = np.concatenate([[0], np.cumsum(self.n_choices)[:-1]])
        feats = np.zeros((len(groups), int(self.n_choices.sum())), dtype=np.float32)
        for j, g in enumerate(self.genes):
            feats[groups.index(g.group or g.label), offsets[j] + idx[j]] = 1.0
        adj = np.eye(len(groups), k=1, dtype=np.float32)
        return feats, adj

    def mutate(self, arch: Arch, prob: float, rng: np.random.Generator) -> Arch:
        idx = self.indices_of(arch)
        return self.arch_from_indices(self.mutate_indices(idx[None], prob, rng)[0])

    def mutate_indices(self, idx: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
        """Batched mutation: each mutable gene moves to a *different* choice with prob ``prob``."""
        idx = np.array(idx, dtype=np.int64, copy=True)
        n = self.n_choices
        flip = (rng.random(idx.shape) < prob) & (n > 1)
        # a uniform draw among the other n-1 choices: shift by 1..n-1 modulo n
        shift = 1 + (rng.random(idx.shape) * np.maximum(n - 1, 1)).astype(np.int64)
        idx[flip] = ((idx + shift) % n)[flip]
        return idx

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        ia, ib = self.indices_of(a), self.indices_of(b)
        take_b = rng.random(len(self.genes)) < 0.5
        return self.arch_from_indices(np.where(take_b, ib, ia))

    def variable_groups(self) -> list[list[int]]:
        """Gene indices that belong together (FP-NAS's block groups, Eqn. 6).

        A joint architecture distribution holds one categorical over the product of each
        group's choices, so a group is what may be correlated. A generic space knows of
        no structure: every gene is its own group. Spaces with blocks override this.
        """
        return [[j] for j in range(len(self.genes))]

    def genes_by_label(self) -> list[list[int]]:
        """Gene indices grouped by ``Gene.group`` (a stage, the stem, the input), in order
        of first appearance: the grouping spaces declared stage by stage use."""
        groups: dict[str, list[int]] = {}
        for j, g in enumerate(self.genes):
            groups.setdefault(g.group or g.label, []).append(j)
        return list(groups.values())

    # -- batched cost (spaces with a cost model override) -----------------------------
    def cost_indices(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(MFLOPs, params in millions) for a batch of index rows."""
        raise UserError(f"space '{self.name}' has no analytic cost model")

    def cost(self, arch: Arch) -> Cost:
        mflops, params = self.cost_indices(self.indices_of(arch)[None])
        return Cost(float(mflops[0]), float(params[0]))
