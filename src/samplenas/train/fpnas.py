"""The FP-NAS search (appendix Algorithm 1) as a trainer of a weight-sharing supernet.

Each step draws K architectures from P(A|alpha) (K = max(1, round(lambda * H)) or a
fixed K), scores each on a validation batch (its log-likelihood, summed over the batch
of every rank) and by the hinge cost of Eqn. 6, and forms Algorithm 1's importance
weights m^omega and m^alpha. The supernet's weights take one SGD step on
sum_k m^omega_k * grad(training loss of A_k), accumulated one network at a time (peak
memory: one sampled network); after the supernet warm-up, alpha takes one Adam step on
sum_k m^alpha_k * grad(-log P(A_k|alpha)). After epoch THETA of a mixed schedule the
factorized distribution becomes joint. The result is the most probable architecture.

Everything else — run directory, data, checkpoints and identical resume, logs, torchrun —
is the stage-1 ``Trainer``'s. All ranks hold the same alpha and sampler RNG (seeded
alike, updated from all-reduced likelihoods), so they draw the same architectures.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from samplenas.data import make_loader
from samplenas.errors import UserError
from samplenas.io import atomic_write_json
from samplenas.samplers.probabilistic import (
    Costs,
    ProbabilisticSampler,
    parse_distribution,
    parse_sampling,
)
from samplenas.samplers.vae import VAEConfig
from samplenas.samplers.vae_oneshot import VAEProbabilisticSampler, split_vae_sampling
from samplenas.space import SUPERNET_SPACES, Arch, SupernetSpace, load_space
from samplenas.space.cost import make_cost
from samplenas.train import distributed as D
from samplenas.train.config import RunConfig
from samplenas.train.loop import minutes, say
from samplenas.train.trainer import Trainer, TrainingDiverged

RESULT = "result.json"
EPOCH_KEYS = ("epoch", "entropy", "k_mean", "samples", "val_top1", "mflops", "wall_s")


def check_fpnas_config(cfg: RunConfig) -> None:
    """The schedule strings and epochs must describe a search that learns alpha."""
    f, epochs = cfg.fpnas, cfg.train.epochs
    k_rule = split_vae_sampling(f.sampling)[1]
    for key, parse, text in (
        ("sampling", parse_sampling, k_rule),
        ("distribution", parse_distribution, f.distribution),
    ):
        try:
            parse(text)
        except UserError as exc:
            raise UserError(f"config key 'fpnas.{key}': {exc}") from exc
    theta = parse_distribution(f.distribution)[1]
    if theta is not None and theta >= epochs:
        raise UserError(
            f"fpnas.distribution {f.distribution} switches after epoch {theta} but the search "
            f"has {epochs} epochs (train.epochs); choose THETA below {epochs}"
        )
    if f.supernet_warmup_epochs >= epochs:
        raise UserError(
            f"fpnas.supernet_warmup_epochs ({f.supernet_warmup_epochs}) leaves no epoch of "
            f"the {epochs} (train.epochs) to learn the distribution; lower it"
        )


def recipe_costs(space: SupernetSpace, cfg: RunConfig, extra: Costs | None = None) -> Costs:
    """The hinge costs: the recipe's FLOPs, parameters and latency-table targets, plus
    ``extra`` (name -> (cost of an arch, target)). Each is a ``CostModel`` (one cost
    abstraction: the table's latency is handled exactly as FLOPs)."""
    f = cfg.fpnas
    costs: dict[str, Any] = {}
    for name, target in (
        ("mflops", f.target_mflops),
        ("params", f.target_params_m),
        ("latency", f.target_latency_ms),
    ):
        if target is None:
            continue
        model = make_cost(space, name, f.latency_table if name == "latency" else None)
        low, high = model.bounds()
        if not low <= target <= high:
            raise UserError(
                f"target {model.name} {target:g} is outside the range of space '{space.name}' "
                f"({model.describe(low)} - {model.describe(high)}); choose a target within it"
            )
        costs[model.name] = (model, float(target))
    costs.update(extra or {})
    return costs


def vae_fpnas_sampler(
    space: SupernetSpace, seed: int, options: dict[str, Any], common: dict[str, Any]
) -> ProbabilisticSampler:
    """``sampling: vae``'s sampler, its ``fpnas.vae`` options checked by name and value."""
    feedback = {"n_vae", "n_s", "score_calib_batches", "score_val_images"}
    known = feedback | {"max_rounds"} | {f.name for f in fields(VAEConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(
            f"unknown key(s) {', '.join(unknown)} in config key 'fpnas.vae'; known: "
            + ", ".join(sorted(known))
        )
    vae = {k: v for k, v in options.items() if k not in feedback}
    kept = {k: v for k, v in options.items() if k in feedback}
    try:
        return VAEProbabilisticSampler(space, seed=seed, vae=vae, **kept, **common)
    except (TypeError, ValueError) as exc:
        raise UserError(f"config key 'fpnas.vae' {options}: {exc}") from exc


class FPNASTrainer(Trainer):
    """``samplenas fpnas``: Algorithm 1 over the recipe's space; ``run()`` returns the result."""

    loss_key = "loss"  # the importance-weighted training loss of the step's K networks
    loss_label = "loss"

    def __init__(
        self,
        cfg: RunConfig,
        out: str | Path,
        resume: bool = False,
        progress: bool = True,
        accept_data_change: bool = False,
        costs: Costs | None = None,
    ) -> None:
        check_fpnas_config(cfg)
        space = load_space(cfg.space)
        if isinstance(space, SUPERNET_SPACES):  # other spaces: the Trainer says it has none
            self.costs = recipe_costs(space, cfg, costs)  # a bad target exits before the data
        self.samples_total = 0  # architectures sampled so far (a resume restores them)
        self._epoch_k: list[int] = []  # K of each step of this epoch
        super().__init__(cfg, out, resume, progress, accept_data_change)
        f = self.cfg.fpnas
        self.val_loader = make_loader(
            self.data,
            "val",
            f.val_batch_size or self.cfg.train.batch_size,
            shuffle=True,
            augment=False,
            seed=self.cfg.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            channels_last=self.cfg.train.channels_last,
        )
        if self.val_loader.batches_per_epoch() < 1:
            raise UserError(
                "fpnas.val_batch_size (or train.batch_size) is larger than the validation "
                "split (data.val_size) per process; lower it"
            )
        self._val_iter: Any = None
        self._val_next: tuple[int, int] | None = None
        self.warmup_epochs = f.supernet_warmup_epochs

    def build_sampler(self, space: SupernetSpace) -> ProbabilisticSampler:
        """P(A|alpha); under ``sampling: vae`` drawn through the VAE (VAENAS Algorithm 3)."""
        f = self.cfg.fpnas
        vae, k_rule = split_vae_sampling(f.sampling)
        common: dict[str, Any] = {
            "distribution": f.distribution,
            "sampling": k_rule,
            "lr": f.alpha_lr,
            "beta": f.beta,
            "temperature": f.temperature,
            "costs": self.costs,
        }
        if not vae:
            return ProbabilisticSampler(space, seed=self.cfg.seed, **common)
        return vae_fpnas_sampler(space, self.cfg.seed, dict(f.vae), common)

    # -- persistence ------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        progress = {"samples_total": self.samples_total, "epoch_k": self._epoch_k}
        return {**super().extra_state(), "fpnas": json.dumps(progress)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        progress = json.loads(state["fpnas"])
        self.samples_total = int(progress["samples_total"])
        self._epoch_k = [int(k) for k in progress["epoch_k"]]

    # -- one step of Algorithm 1 --------------------------------------------------------
    def _val_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation batch of this step: the val split cycled in seeded epochs,
        positioned by the step count so a resumed run sees the same batches."""
        per_epoch = self.val_loader.batches_per_epoch()
        where = divmod(self.step, per_epoch)
        if where != self._val_next:
            self._val_iter = self.val_loader.epoch(*where)
        x, y = next(self._val_iter)
        e, b = where
        self._val_next = (e, b + 1) if b + 1 < per_epoch else None
        return x.to(self.dist.device), y.to(self.dist.device)

    @torch.no_grad()
    def val_logliks(self, archs: list[Arch], x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """log P(y_val | X_val, omega, A_k): summed over the validation images of all ranks.

        Batch statistics, as the supernet trains; no dropout.
        """
        self.model.train()
        values = []
        for arch in archs:
            self.model.set_arch(arch)
            values.append(-F.cross_entropy(self.model(x), y, reduction="sum"))
        total = D.all_reduce_mean(torch.stack(values).double(), self.dist) * self.dist.world_size
        return total.cpu().numpy()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        t, model, sampler = self.cfg.train, self.model, self.sampler
        archs = sampler.ask()  # K from the entropy; the same on every rank
        self._log_samples(archs)
        logliks = self.val_logliks(archs, *self._val_batch())
        m_omega, m_alpha = sampler.importance(archs, logliks)
        model.train()
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        for arch, m in zip(archs, m_omega, strict=True):
            if m == 0:  # exp underflow: no gradient to add
                continue
            model.set_arch(arch, dropout=t.dropout, drop_path_rate=t.drop_path)
            loss = F.cross_entropy(model(x), y, label_smoothing=t.label_smoothing)
            (float(m) * loss).backward()  # one network's graph at a time
            losses.append(float(m) * loss.detach())
        weighted = torch.stack(losses).sum()
        if not D.all_finite(weighted.reshape(1), self.dist):
            raise TrainingDiverged(f"the weighted loss is not finite at step {self.step}")
        grad_norm = self.apply_gradients()
        if self.epoch >= self.warmup_epochs:  # alpha stays uniform through the warm-up
            sampler.update(archs, m_alpha)
        self.sampler_feedback()  # sampling: vae trains its VAE every n_vae steps
        self.samples_total += len(archs)
        self._epoch_k.append(len(archs))
        return {
            "loss": float(weighted),
            "grad_norm": grad_norm,
            "m_omega_max": float(m_omega.max()),
            "val_loglik_mean": float(np.mean(logliks)),
        }

    # -- the end of an epoch ----------------------------------------------------------
    def _end_of_epoch(self) -> None:
        epoch = self.epoch + 1
        arch = self.sampler.most_probable()
        cost = self.space.cost(arch)
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": self.step,
            "entropy": self.sampler.entropy(),
            "k_mean": float(np.mean(self._epoch_k)) if self._epoch_k else 0.0,
            "samples": self.samples_total,
            "val_top1": None,
            "mflops": cost.mflops,
            "params_m": cost.params_m,
            "distribution": self.sampler.kind,
            "arch": arch.to_json(),
        }
        every = self.cfg.eval_every_epochs
        if self.dist.is_main and every and (epoch % every == 0 or epoch == self.cfg.train.epochs):
            r = self.evaluate(arch)
            record["val_top1"], record["val_loss"] = r["top1"], r["loss"]
        record["wall_s"] = self._elapsed()
        self.history.append(record)
        self.log(record)
        if self.dist.is_main:
            say(self._epoch_line(record))
        if self.sampler.end_epoch(epoch) and self.dist.is_main:
            say(
                f"the distribution is joint from here on ({self.sampler.dist.num_parameters()} "
                "architecture parameters; probabilities and entropy unchanged)"
            )
        self._epoch_losses, self._epoch_k = [], []
        D.barrier(self.dist)

    def _epoch_line(self, record: dict[str, Any]) -> str:
        parts = [
            f"epoch {record['epoch']}/{self.cfg.train.epochs}",
            f"entropy {record['entropy']:.2f}",
            f"K {record['k_mean']:.2f}",
            f"{record['samples']} architectures sampled",
            f"most probable {record['mflops']:.3g} MFLOPs",
        ]
        if record["val_top1"] is not None:
            parts.append(f"val top-1 {record['val_top1']:.2f}%")
        if self._epoch_losses:
            parts.append(f"loss {np.mean(self._epoch_losses):.3f}")
        parts.append(f"{minutes(record['wall_s'])} so far")
        return ", ".join(parts)

    def summary_line(self) -> str:
        f, s = self.cfg.fpnas, self.sampler
        warm = (
            f", supernet warm-up {f.supernet_warmup_epochs} epochs"
            if f.supernet_warmup_epochs
            else ""
        )
        targets = ", ".join(f"{name} <= {target:g}" for name, (_, target) in s.costs.items())
        return (
            f"FP-NAS: sampling {f.sampling}, distribution {f.distribution} "
            f"({s.dist.num_parameters()} architecture parameters, entropy {s.entropy():.2f}, "
            f"K {s.sample_size()} now){warm}, target {targets or 'none'}; " + super().summary_line()
        )

    # -- the result -------------------------------------------------------------------
    def result(self) -> dict[str, Any]:
        """The most probable architecture, its cost, and the search's per-epoch record."""
        arch = self.sampler.most_probable()
        cost = self.space.cost(arch)
        return {
            "space": self.space.name,
            "arch": arch.to_json(),
            "mflops": cost.mflops,
            "params_m": cost.params_m,
            "samples_total": self.samples_total,
            "wall_s": self._elapsed(),
            "epochs": [{k: h.get(k) for k in EPOCH_KEYS} for h in self.history],
        }

    def run(self) -> dict[str, Any]:
        super().run()
        result = self.result()
        if self.dist.is_main:
            atomic_write_json(self.out / RESULT, result)
        return result
