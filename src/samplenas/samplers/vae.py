"""VAENAS: a VAE over architecture token sequences that learns to sample good ones.

An architecture is a sequence of tokens, one position per decision of its space, each
position with its own legal tokens (``Tokenizer``). An LSTM encoder maps a sequence to
(mu, sigma) of a latent z; an LSTM decoder maps z back to one categorical per position,
masked to that position's legal tokens, so every decoded sequence is a legal choice per
position. Sequences that still break a space's global rule (a NAS-Bench-101 cell with
more than 9 edges or no input-output path, an all-'skip' NAS-Bench-Graph cell) are
repaired where the paper says how (the top-9 edges, appendix A.5) and otherwise drawn
again; so are those outside the cost bounds. ``tell`` is Algorithm 1: rank the told
pairs, train on the top ``ranking_ratio`` for ``n_iters`` steps, warm-started.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from samplenas.errors import UserError
from samplenas.samplers.base import Sampler
from samplenas.space import Arch, GeneSpace, SearchSpace

# -- tokenisation ------------------------------------------------------------------------


class Tokenizer:
    """Arch <-> token sequence; ``sizes[p]`` legal tokens (0..sizes[p]-1) at position p."""

    sizes: tuple[int, ...]

    def encode(self, arch: Arch) -> np.ndarray:
        raise NotImplementedError

    def decode(self, tokens: np.ndarray) -> Arch | None:
        """The Arch of ``tokens``, or None when they break a rule of the space."""
        raise NotImplementedError

    def repair(self, tokens: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Fix what the space says how to fix, given the decoder's per-position
        probabilities ``probs`` [positions, max tokens]; the default fixes nothing."""
        return tokens


class GeneTokenizer(Tokenizer):
    """Any GeneSpace (MobileNet-style stages, FBNetV2 blocks): one position per gene."""

    def __init__(self, space: GeneSpace) -> None:
        self.space = space
        self.sizes = tuple(int(n) for n in space.n_choices)

    def encode(self, arch: Arch) -> np.ndarray:
        return self.space.indices_of(arch)

    def decode(self, tokens: np.ndarray) -> Arch | None:
        return self.space.arch_from_indices(tokens)


class NB201Tokenizer(Tokenizer):
    """NAS-Bench-201: the op of each of the 6 edges; every sequence is a cell."""

    def __init__(self, space: SearchSpace) -> None:
        from samplenas.space.cells.nasbench201 import EDGES, OPS

        self.space, self.ops = space, OPS
        self.sizes = (len(OPS),) * len(EDGES)

    def encode(self, arch: Arch) -> np.ndarray:
        return self.space.encode(arch)

    def decode(self, tokens: np.ndarray) -> Arch | None:
        return Arch(ops=[self.ops[int(t)] for t in tokens])


_GRAPH_DECODED: dict[str, dict[tuple[int, ...], Arch | None]] = {}


class NBGraphTokenizer(Tokenizer):
    """NAS-Bench-Graph: the link pattern (one of 9), then the op of each of the 4 nodes;
    decoded to the canonical representative; all-'skip' cells are invalid."""

    def __init__(self, space: SearchSpace) -> None:
        from samplenas.space.cells.nasbench_graph import LINKS

        self.space, self.links = space, LINKS
        self.sizes = (len(LINKS),) + (len(space.ops),) * 4
        # canonicalising calls the benchmark package: memoised per space, for every sampler
        self._decoded = _GRAPH_DECODED.setdefault(space.name, {})

    def _decode(self, tokens: tuple[int, ...]) -> Arch | None:
        ops = [self.space.ops[t] for t in tokens[1:]]
        if all(o == "skip" for o in ops):
            return None
        return self.space.canonical({"link": list(self.links[tokens[0]]), "ops": ops})

    def encode(self, arch: Arch) -> np.ndarray:
        return self.space.encode(arch)

    def decode(self, tokens: np.ndarray) -> Arch | None:
        key = tuple(int(t) for t in tokens)
        if key not in self._decoded:
            self._decoded[key] = self._decode(key)
        return self._decoded[key]


class NB101Tokenizer(Tokenizer):
    """NAS-Bench-101 as in the paper's appendix A.5: the 21 upper-triangle edges (0/1)
    then the 5 inner ops. More than 9 edges are repaired to the 9 the decoder is surest
    of; a cell with no input-output path is invalid (drawn again)."""

    def __init__(self, space: SearchSpace) -> None:
        from samplenas.space.cells.nasbench101 import MAX_EDGES, MAX_NODES, OPS

        self.space, self.ops = space, OPS
        self.n, self.max_edges = MAX_NODES, MAX_EDGES
        self.triu = np.triu_indices(MAX_NODES, 1)
        self.n_edges = len(self.triu[0])
        self.sizes = (2,) * self.n_edges + (len(OPS),) * (MAX_NODES - 2)

    def encode(self, arch: Arch) -> np.ndarray:
        e = self.space.encode(arch)
        return np.where(e < 0, 0, e)  # an unused node's op: the padding's conv1x1

    def repair(self, tokens: np.ndarray, probs: np.ndarray) -> np.ndarray:
        edges = tokens[: self.n_edges]
        if edges.sum() <= self.max_edges:
            return tokens
        on = np.flatnonzero(edges)
        keep = on[np.argsort(-probs[on, 1], kind="stable")[: self.max_edges]]
        out = tokens.copy()
        out[: self.n_edges] = 0
        out[keep] = 1
        return out

    def decode(self, tokens: np.ndarray) -> Arch | None:
        from samplenas.space.cells.nasbench101 import INPUT, OUTPUT

        m = np.zeros((self.n, self.n), dtype=np.int64)
        m[self.triu] = tokens[: self.n_edges]
        ops = [INPUT, *(self.ops[int(t)] for t in tokens[self.n_edges :]), OUTPUT]
        return self.space._try(m, ops)


def tokenizer_for(space: SearchSpace) -> Tokenizer:
    """The tokenisation of ``space``; UserError for a space that has none."""
    from samplenas.space.cells import NASBench101Space, NASBench201Space, NASBenchGraphSpace

    if isinstance(space, GeneSpace):
        return GeneTokenizer(space)
    if isinstance(space, NASBench201Space):
        return NB201Tokenizer(space)
    if isinstance(space, NASBenchGraphSpace):
        return NBGraphTokenizer(space)
    if isinstance(space, NASBench101Space):
        return NB101Tokenizer(space)
    raise UserError(f"the VAE sampler has no tokenisation for space '{space.name}'")


# -- the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VAEConfig:
    """Sizes and training settings; small by default so CPU training takes ~1 s."""

    latent: int = 8
    hidden: int = 32
    embed: int = 16
    kl_weight: float = 1.0
    lr: float = 5e-3
    batch_size: int = 64
    n_iters: int = 100  # optimizer steps per Algorithm-1 call (100 vs 50, 300: cifar10-valid)
    ranking_ratio: float = 0.5  # the K % of Algorithm 1
    temperature: float = 1.0  # of the decoder's categoricals when sampling

    def __post_init__(self) -> None:
        if not 0 < self.ranking_ratio <= 1:
            raise ValueError(f"ranking_ratio must be in (0, 1], not {self.ranking_ratio}")
        for name in ("latent", "hidden", "embed", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.n_iters < 0 or self.kl_weight < 0 or self.temperature <= 0 or self.lr <= 0:
            raise ValueError("n_iters, kl_weight >= 0 and temperature, lr > 0 are required")


class SequenceVAE(nn.Module):
    """LSTM encoder -> (mu, log sigma^2); autoregressive LSTM decoder fed z at every step.

    Tokens enter as global ids (position offset + local token) so the same local index
    means different things at different positions; the decoder's logits are masked to
    each position's legal tokens.
    """

    def __init__(self, sizes: Sequence[int], cfg: VAEConfig) -> None:
        super().__init__()
        sizes_t = torch.tensor(list(sizes))
        self.register_buffer("offsets", torch.cumsum(sizes_t, 0) - sizes_t)
        width = int(sizes_t.max())
        self.register_buffer("mask", torch.arange(width)[None, :] < sizes_t[:, None])
        self.start = int(sizes_t.sum())  # the decoder's start-of-sequence token
        self.embed = nn.Embedding(self.start + 1, cfg.embed)
        self.encoder = nn.LSTM(cfg.embed, cfg.hidden, batch_first=True)
        self.to_stats = nn.Linear(cfg.hidden, 2 * cfg.latent)
        self.to_state = nn.Linear(cfg.latent, 2 * cfg.hidden)
        self.decoder = nn.LSTM(cfg.embed + cfg.latent, cfg.hidden, batch_first=True)
        self.out = nn.Linear(cfg.hidden, width)

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, (h, _) = self.encoder(self.embed(tokens + self.offsets))
        mu, logvar = self.to_stats(h[-1]).chunk(2, dim=-1)
        return mu, logvar

    def _state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = torch.tanh(self.to_state(z)).chunk(2, dim=-1)
        return h[None].contiguous(), c[None].contiguous()

    def _logits(self, out: torch.Tensor, positions: slice) -> torch.Tensor:
        return self.out(out).masked_fill(~self.mask[positions], float("-inf"))

    def decode_logits(self, z: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [batch, positions, width] of ``tokens`` given z."""
        prev = torch.cat(
            [torch.full_like(tokens[:, :1], self.start), tokens[:, :-1] + self.offsets[:-1]], 1
        )
        steps = torch.cat([self.embed(prev), z[:, None].expand(-1, tokens.shape[1], -1)], -1)
        out, _ = self.decoder(steps, self._state(z))
        return self._logits(out, slice(None))

    @torch.no_grad()
    def sample(
        self, z: torch.Tensor, temperature: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens [n, positions] drawn step by step, and each step's probabilities."""
        state = self._state(z)
        prev = torch.full((z.shape[0],), self.start, dtype=torch.long)
        tokens, probs = [], []
        for p in range(len(self.offsets)):
            step = torch.cat([self.embed(prev), z], -1)[:, None]
            out, state = self.decoder(step, state)
            prob = torch.softmax(self._logits(out[:, 0], slice(p, p + 1)) / temperature, -1)
            tok = torch.multinomial(prob, 1, generator=generator)[:, 0]
            tokens.append(tok)
            probs.append(prob)
            prev = tok + self.offsets[p]
        return torch.stack(tokens, 1), torch.stack(probs, 1)

    def loss(
        self, tokens: torch.Tensor, kl_weight: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(negative ELBO with a weighted KL, reconstruction, KL), per sequence means."""
        mu, logvar = self.encode(tokens)
        eps = torch.randn(mu.shape, generator=generator)
        z = mu + eps * torch.exp(0.5 * logvar)
        logits = self.decode_logits(z, tokens)
        logp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
        recon = -logp.sum(1).mean()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
        return recon + kl_weight * kl, recon, kl


# -- the sampler -------------------------------------------------------------------------


def to_plain(obj: Any) -> Any:
    """torch state (model, optimizer, generator) as plain JSON data: tensors as flat
    lists with shape and dtype, dicts as item lists (optimizer states have int keys)."""
    if isinstance(obj, torch.Tensor):
        return {"tensor": obj.flatten().tolist(), "shape": list(obj.shape), "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        return {"items": [[k, to_plain(v)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def from_plain(obj: Any) -> Any:
    """The inverse of ``to_plain``."""
    if isinstance(obj, dict) and "tensor" in obj:
        dtype = getattr(torch, obj["dtype"].removeprefix("torch."))
        return torch.tensor(obj["tensor"], dtype=dtype).reshape(obj["shape"])
    if isinstance(obj, dict):
        return {k: from_plain(v) for k, v in obj["items"]}
    if isinstance(obj, list):
        return [from_plain(v) for v in obj]
    return obj


class VAESampler(Sampler):
    """Samples from a VAE trained (``tell``, Algorithm 1) on the best architectures told.

    ``cost_bounds`` (min, max MFLOPs) rejects samples outside them; ``stats`` reports the
    validity rate (decoded samples valid for the space and within the bounds, before any
    re-draw), the repaired fraction and the last training loss; diversity (distinct per
    1,000 samples) is ``validity_and_diversity``.
    """

    name = "vae"

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = 0,
        cost_bounds: tuple[float, float] | None = None,
        max_rounds: int = 50,
        **config: Any,
    ) -> None:
        super().__init__(space, seed)
        self.cfg = VAEConfig(**config)
        self.tokenizer = tokenizer_for(space)
        self.cost_bounds = cost_bounds
        self.max_rounds = max_rounds
        self.generator = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.rng.integers(2**31)))
            self.model = SequenceVAE(self.tokenizer.sizes, self.cfg)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)
        self.counts = {"decoded": 0, "valid": 0, "repaired": 0, "trainings": 0}
        self.last_loss: dict[str, float] = {}

    # -- Algorithm 1 ---------------------------------------------------------------------
    def tell(self, archs: Sequence[Arch], scores: Sequence[float]) -> None:
        """Rank the pairs by score, train on the top ``ranking_ratio`` (warm start)."""
        if len(archs) != len(scores):
            raise ValueError(f"{len(archs)} architectures but {len(scores)} scores")
        if not archs:
            return
        self.fit(top_fraction(archs, scores, self.cfg.ranking_ratio))

    def fit(self, archs: Sequence[Arch], n_iters: int | None = None) -> dict[str, float]:
        """``n_iters`` minibatch steps of the ELBO on ``archs`` (the VAE's training set)."""
        data = torch.as_tensor(np.stack([self.tokenizer.encode(a) for a in archs]))
        self.model.train()
        n_iters = self.cfg.n_iters if n_iters is None else n_iters
        for _ in range(n_iters):
            pick = torch.randint(
                len(data), (min(self.cfg.batch_size, len(data)),), generator=self.generator
            )
            total, recon, kl = self.model.loss(data[pick], self.cfg.kl_weight, self.generator)
            self.optimizer.zero_grad()
            total.backward()
            self.optimizer.step()
            self.last_loss = {"loss": total.item(), "recon": recon.item(), "kl": kl.item()}
        self.counts["trainings"] += 1
        return self.last_loss

    # -- sampling --------------------------------------------------------------------------
    def sample_tokens(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n raw decoded token rows and their per-step probabilities (no validity check)."""
        self.model.eval()
        z = torch.randn((n, self.cfg.latent), generator=self.generator)
        tokens, probs = self.model.sample(z, self.cfg.temperature, self.generator)
        return tokens.numpy(), probs.numpy()

    def _accept(self, arch: Arch | None) -> bool:
        if arch is None:
            return False
        if self.cost_bounds is None:
            return True
        low, high = self.cost_bounds
        return low <= self.space.cost(arch).mflops <= high

    def _draw(self, n: int) -> list[Arch]:
        """One batch of n decodes, repaired; the valid ones (validity counted)."""
        tokens, probs = self.sample_tokens(n)
        out = []
        for row, prob in zip(tokens, probs, strict=True):
            fixed = self.tokenizer.repair(row, prob)
            self.counts["repaired"] += int(fixed is not row)
            arch = self.tokenizer.decode(fixed)
            if self._accept(arch):
                out.append(arch)
        self.counts["decoded"] += n
        self.counts["valid"] += len(out)
        return out

    def ask(self, n: int = 1, accept: Callable[[Arch], bool] | None = None) -> list[Arch]:
        """n valid samples (also passing ``accept`` when given), drawn again until found;
        fewer only when ``max_rounds`` batches find fewer (a model that lost the space)."""
        out: list[Arch] = []
        for _ in range(self.max_rounds):
            want = n - len(out)
            if want <= 0:
                break
            got = self._draw(want + want // 4 + 8)  # a margin for invalid or rejected ones
            out += [a for a in got if accept is None or accept(a)][:want]
        return out

    # -- protocol ---------------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """Counters; the rates only once something was decoded (none is not 0 % valid)."""
        out = {
            "vae_trainings": float(self.counts["trainings"]),
            **{f"vae_{k}": v for k, v in self.last_loss.items()},
        }
        if self.counts["decoded"]:
            out["vae_validity"] = self.counts["valid"] / self.counts["decoded"]
            out["vae_repaired"] = self.counts["repaired"] / self.counts["decoded"]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "counts": dict(self.counts),
            "last_loss": dict(self.last_loss),
            "torch": to_plain(
                {
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "generator": self.generator.get_state(),
                }
            ),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.counts = dict(state["counts"])
        self.last_loss = dict(state["last_loss"])
        saved = from_plain(state["torch"])
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.generator.set_state(saved["generator"])


def top_fraction(archs: Sequence[Arch], scores: Sequence[float], ratio: float) -> list[Arch]:
    """The best ``ratio`` of ``archs`` by score (at least one), best first; ties keep order."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    keep = max(1, int(round(ratio * len(archs))))
    return [archs[i] for i in order[:keep]]


def validity_and_diversity(sampler: VAESampler, n: int = 1000) -> dict[str, float]:
    """Of n raw decodes: the fraction valid after repair, and distinct valid archs per n."""
    before = dict(sampler.counts)
    valid = sampler._draw(n)
    sampler.counts = before  # a measurement, not part of the run's counts
    return {"validity": len(valid) / n, "distinct_per_1000": len(set(valid)) * 1000 / n}
