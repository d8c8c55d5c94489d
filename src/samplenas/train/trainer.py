"""Stage 1: train the supernet with the sandwich rule and in-place distillation.

Each step trains the largest sub-network (labels, label smoothing, dropout, stochastic
depth), ``num_random`` sub-networks from the configured sampler and the smallest, the
latter all distilled from the largest's detached soft predictions; the gradients of all
of them are accumulated for one SGD step (BigNAS / AttentiveNAS recipe, appendix A).
Optional: the distillation target ramped in from labels (short runs), and a moving
average of the weights for evaluation.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from samplenas.data import Splits, load_dataset, make_loader
from samplenas.errors import UserError
from samplenas.io import atomic_write_json, atomic_write_text
from samplenas.samplers import Sampler, make_sampler
from samplenas.space import Arch, MBConvSpace, list_spaces, load_space
from samplenas.space.registry import SPACES_DIR
from samplenas.train import distributed as D
from samplenas.train import runlog
from samplenas.train.checkpoint import (
    CHECKPOINT,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from samplenas.train.config import RunConfig, record_resume, resume_changes
from samplenas.train.ema import make_ema
from samplenas.train.evaluate import calibration_set, eval_loader, evaluate_subnet
from samplenas.train.optim import sgd
from samplenas.train.rundata import (
    DataGuard,
    data_guard,
    resolve_run_inputs,
    write_data_record,
)

FAULT_ENV = "SAMPLENAS_FAULT_AT_STEP"  # tests: die abruptly after this step
ESTIMATE_AFTER_STEPS = 10  # steps timed before the run says how long it will take


def say(message: str) -> None:
    """One line to the user on stderr, printed around a progress bar, not through it."""
    tqdm.write(f"samplenas: {message}", file=sys.stderr)


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets (in-place distillation)."""
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def distill_targets(
    teacher_probs: torch.Tensor, y: torch.Tensor, smoothing: float, weight: float
) -> torch.Tensor:
    """``weight`` x the largest's predictions + (1 - weight) x label-smoothed labels.

    Why: at step 0 the largest predicts noise, and distilling from it holds every other
    sub-network (and through the shared weights the largest too) 10-20 points back over
    the first few hundred steps; ramping the teacher in (``train.distill_warmup_epochs``)
    lets short runs learn from labels first. ``weight`` = 1 is the papers' recipe; 0 is
    exactly ``cross_entropy(label_smoothing=smoothing)``.
    """
    if weight >= 1:
        return teacher_probs
    classes = teacher_probs.shape[1]
    labels = F.one_hot(y, classes).to(teacher_probs.dtype) * (1 - smoothing) + smoothing / classes
    return weight * teacher_probs + (1 - weight) * labels


def load_run_data(
    cfg: RunConfig, cache_dir: Path | None = None, guard: DataGuard | None = None
) -> Splits:
    """The recipe's dataset: in memory, or a streamed image folder (``data.streaming``).

    ``cache_dir`` keeps a decoded image folder. ``guard`` (a run's) checks the files first
    and holds the data to the run's classes and normalisation: the one place training,
    eval, search and export all get them from.
    """
    d = cfg.data
    data = load_dataset(
        d.dataset,
        d.data_dir,
        d.val_size,
        d.split_seed,
        d.image_size,
        d.grayscale,
        streaming=d.streaming,
        workers=d.workers,
        cache_dir=cache_dir,
        on_files=guard,
    )
    if d.train_subset:
        data.train = data.train.head(d.train_subset)
    if guard is not None:
        guard.hold(data)
    return data


def check_space_fits_data(
    space: MBConvSpace, data: Splits, cfg: RunConfig | None = None, run_dir: Path | None = None
) -> None:
    """The space's input channels and classes must be the data's; else say what to change
    and where: the recipe's space file, a copy of a shipped space, the recipe's inline
    space, or, for an existing run (``run_dir``), the data it was built for."""
    c = space.config
    if c.in_channels == data.channels and c.num_classes == data.num_classes:
        return
    fix = []
    if c.in_channels != data.channels:
        fix.append(f"in_channels: {data.channels}")
    if c.num_classes != data.num_classes:
        fix.append(f"num_classes: {data.num_classes}")
    fix_text = " and ".join(fix)
    source = cfg.space if cfg is not None else space.name
    gray = ""
    folder = cfg is not None and cfg.data.dataset == "folder"
    if c.in_channels != data.channels and folder and c.in_channels in (1, 3):
        gray = f" (or, for an image folder, data.grayscale: {str(c.in_channels == 1).lower()})"
    if run_dir is not None:  # the run's space is fixed by its weights: fit the data to it
        raise UserError(
            f"run '{run_dir}' was built for {c.num_classes} classes and {c.in_channels}-"
            f"channel images but dataset '{data.name}' has {data.num_classes} classes and "
            f"{data.channels}-channel images; point --data-dir at the data it was trained "
            f"on, or train a new run on this data with {fix_text} in its space"
        )
    if isinstance(source, str) and source in list_spaces():
        where = (
            f"'{source}' is a shipped space: copy '{SPACES_DIR / (source + '.yaml')}', set "
            f"{fix_text} in the copy and give its path as the recipe's space"
        )
    elif isinstance(source, str):
        where = f"set {fix_text} in the space file '{source}'"
    else:
        where = f"set {fix_text} in the recipe's space mapping"
    raise UserError(
        f"space '{space.name}' expects {c.in_channels}-channel images and {c.num_classes} "
        f"classes but dataset '{data.name}' has {data.channels}-channel images and "
        f"{data.num_classes} classes; {where}{gray}"
    )


def clip_gradients(params: list[torch.Tensor], limit: float, mode: str) -> float:
    """Clip the summed sandwich gradient; returns its global L2 norm before clipping.

    ``norm`` rescales the whole gradient to norm <= limit; ``value`` clamps each element
    to [-limit, limit], as the official AttentiveNAS code does (``grad_clip_value``),
    which leaves the step size alone unless single elements explode.
    """
    if not params:
        return 0.0
    if limit > 0 and mode == "norm":
        return float(torch.nn.utils.clip_grad_norm_(params, limit))
    norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
    if limit > 0:
        torch.nn.utils.clip_grad_value_(params, limit)
    return norm


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio`` of the peak."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def build_supernet(space: MBConvSpace) -> torch.nn.Module:
    from samplenas.supernet import MBConvSupernet

    return MBConvSupernet(space)


class Trainer:
    """One run directory, one supernet; ``run()`` trains to the end, resuming if asked.

    Subclasses (the FP-NAS search) replace ``train_step``, ``_end_of_epoch`` and
    ``build_sampler`` and add to the checkpoint through ``_state`` / ``restore_extra``;
    run directories, data, checkpoints, resume, logs and torchrun stay here.
    """

    #: the key of ``train_step``'s stats shown in the progress bar and the epoch line
    headline_loss = "loss_largest"

    def __init__(
        self,
        cfg: RunConfig,
        out: str | Path,
        resume: bool = False,
        progress: bool = True,
        accept_data_change: bool = False,
    ) -> None:
        as_given = cfg  # names the user's space file in messages; the run keeps its contents
        cfg = resolve_run_inputs(cfg, fresh=not resume)
        self.cfg = cfg
        self.out = Path(out)
        # a resume may extend a run, never turn it into another one
        self.resumed_with = resume_changes(self.out, cfg) if resume else None
        self.dist = D.init_distributed()
        self.progress = progress and self.dist.is_main
        threads = cfg.train.threads or max(1, (os.cpu_count() or 1) // self.dist.world_size)
        torch.set_num_threads(threads)
        torch.manual_seed(cfg.seed)
        space = load_space(cfg.space)
        if not isinstance(space, MBConvSpace):
            raise UserError(f"space '{space.name}' has no supernet; use a MobileNet-style space")
        self.space = space
        guard = data_guard(self.out, accept_data_change) if resume else None
        self.data = load_run_data(cfg, self.out if self.dist.is_main else None, guard)
        check_space_fits_data(space, self.data, as_given, self.out if resume else None)
        t = cfg.train
        self.loader = make_loader(
            self.data,
            "train",
            t.batch_size,
            shuffle=True,
            augment=cfg.data.augment,
            seed=cfg.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            channels_last=t.channels_last,
        )
        if self.loader.batches_per_epoch() < 1:
            raise UserError("train.batch_size is larger than the training split")
        self.model = build_supernet(space).to(self.dist.device)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        D.broadcast_module(self.model, self.dist)
        decay, no_decay = [], []
        for p in self.model.parameters():
            (decay if p.ndim > 1 else no_decay).append(p)
        lr = t.lr * t.batch_size * self.dist.world_size / t.lr_reference_batch
        self.optimizer = sgd(
            [
                {"params": decay, "weight_decay": t.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=lr,
            momentum=t.momentum,
            nesterov=t.nesterov and t.momentum > 0,
        )
        self.ema = make_ema(self.model, t.ema_decay) if t.ema_decay > 0 else None
        self.steps_per_epoch = self.loader.batches_per_epoch()
        self.total_steps = t.epochs * self.steps_per_epoch
        self.distill_warmup_steps = int(round(t.distill_warmup_epochs * self.steps_per_epoch))
        warmup = int(round(t.warmup_epochs * self.steps_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.total_steps, warmup, t.min_lr_ratio)
        )
        self.sampler: Sampler = self.build_sampler(space)
        self.largest, self.smallest = space.largest(), space.smallest()
        self.saved_step: int | None = None  # step of the checkpoint on disk (None: none yet)
        self._epoch_losses: list[float] = []
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0  # wall time of training so far, across resumes
        self._clock = time.perf_counter()
        self.writer = None
        if resume:
            self._resume()
            if guard is not None and self.dist.is_main:  # every check passed: record it
                guard.commit(lock=False)  # train holds the run's lock already
        elif self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            runlog.start_fresh(self.out)  # an earlier run that died early left its logs
            atomic_write_text(self.out / "config.yaml", cfg.to_yaml())
            write_data_record(self.out, self.data)
            for note in self.data.notes:
                print(f"samplenas: {note}", file=sys.stderr)
        if self.dist.is_main:
            self._open_tensorboard()

    def build_sampler(self, space: MBConvSpace) -> Sampler:
        """The recipe's sampler, seeded alike on every rank."""
        return make_sampler(
            self.cfg.sampler.name, space, seed=self.cfg.seed, **self.cfg.sampler.options
        )

    # -- persistence ------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "model": self.model.state_dict(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": json.dumps(self.sampler.state_dict()),
            "loader": self.loader.state_dict(),
            "rng": capture_rng(),
            "history": json.dumps(self.history),
            "train_seconds": self._elapsed(),
            "config": json.dumps(self.cfg.to_dict()),
        }

    def _elapsed(self) -> float:
        return self.train_seconds + time.perf_counter() - self._clock

    def save(self) -> None:
        if self.dist.is_main:
            save_checkpoint(self.out / CHECKPOINT, self._state())
            if self.writer is not None:  # what the checkpoint saw survives a crash
                self.writer.flush()
        self.saved_step = self.step

    def _resume(self) -> None:
        path = self.out / CHECKPOINT
        if not path.is_file():
            raise UserError(f"no checkpoint to resume in '{self.out}'")
        state = load_checkpoint(path, self.dist.device)
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if "ema" not in state:
                raise UserError(
                    f"the checkpoint in '{self.out}' has no weight average; "
                    "resume it with --set train.ema_decay=0"
                )
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(json.loads(state["sampler"]))
        self.loader.load_state_dict(state["loader"])
        restore_rng(state["rng"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.saved_step = self.step
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.history = json.loads(state["history"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self._clock = time.perf_counter()
        self.restore_extra(state)
        if self.dist.is_main:  # forget what was logged after the checkpoint
            for name in (runlog.METRICS, runlog.SAMPLES):
                runlog.truncate_after(self.out / name, self.step, self.epoch)
            record_resume(self.out, self.cfg, self.resumed_with or {}, self.step)

    def restore_extra(self, state: dict[str, Any]) -> None:
        """What a subclass added to ``_state``, back from a checkpoint."""

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional extra: pip install samplenas[tensorboard]
            return
        # a resumed run hides what was logged past its checkpoint, like truncate_after
        purge = self.step + 1 if self.step else None
        self.writer = SummaryWriter(str(self.out / runlog.TENSORBOARD), purge_step=purge)

    def log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        runlog.append(self.out / runlog.METRICS, record)
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.writer.add_scalar(k, v, record.get("step", self.step))

    def _log_samples(self, archs: list[Arch]) -> None:
        """Which sub-networks this step trains besides largest and smallest, and why."""
        if not self.dist.is_main:
            return
        record = {
            "step": self.step + 1,
            "mflops": [round(self.space.mflops(a), 3) for a in archs],
            "archs": [a.to_json() for a in archs],
            **self.sampler.last_decision(),
        }
        runlog.append(self.out / runlog.SAMPLES, record)

    # -- one sandwich step ------------------------------------------------------------
    def subnet_loss(
        self, logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """The loss a sampled or the smallest sub-network trains with at this step.

        ``targets``: this step's ``distill_targets`` (the teacher share ramped in).
        """
        if self.cfg.train.distill:
            return soft_cross_entropy(logits, targets)
        return F.cross_entropy(logits, y, label_smoothing=self.cfg.train.label_smoothing)

    def candidate_losses(
        self, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor, kind: str = "train"
    ) -> Callable[[list[Arch]], np.ndarray]:
        """The attentive samplers' estimator: minus each candidate's loss on this batch.

        ``kind`` ``train`` (the paper's): the loss the step would train the candidate
        with (``subnet_loss``); ``ce``: plain cross-entropy on the labels. Forward passes
        without gradients, averaged across ranks so all ranks choose alike.
        """

        @torch.no_grad()
        def score(archs: list[Arch]) -> np.ndarray:
            losses = []
            for arch in archs:
                self.model.set_arch(arch)
                logits = self.model(x)
                if kind == "train":
                    losses.append(self.subnet_loss(logits, y, targets))
                else:
                    losses.append(F.cross_entropy(logits, y))
            mean = D.all_reduce_mean(torch.stack(losses), self.dist)
            return -mean.cpu().numpy()

        return score

    def distill_weight(self) -> float:
        """The teacher's share of the small sub-networks' target at this step."""
        if self.distill_warmup_steps <= 0:
            return 1.0
        return min(1.0, self.step / self.distill_warmup_steps)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        t = self.cfg.train
        model = self.model
        model.train()
        self.optimizer.zero_grad(set_to_none=True)
        # the largest first: its soft predictions teach the others
        model.set_arch(self.largest, dropout=t.dropout, drop_path_rate=t.drop_path)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=t.label_smoothing)
        weight = self.distill_weight()
        targets = distill_targets(F.softmax(logits.detach(), dim=1), y, t.label_smoothing, weight)
        loss.backward()
        losses = [loss.detach()]
        if getattr(self.sampler, "needs_scorer", False):
            kind = getattr(self.sampler, "loss", "train")
            self.sampler.set_scorer(self.candidate_losses(x, y, targets, kind))
        sampled = self.sampler.ask(t.num_random)
        self._log_samples(sampled)
        for arch in [*sampled, self.smallest]:
            model.set_arch(arch)
            loss = self.subnet_loss(model(x), y, targets)
            loss.backward()
            losses.append(loss.detach())
        stacked = torch.stack(losses)
        if not D.all_finite(stacked, self.dist):  # every rank stops, or none does
            here = not torch.isfinite(stacked).all()
            what = f"loss is {stacked.tolist()}" if here else "a loss on another rank is not finite"
            raise TrainingDiverged(f"{what} at step {self.step}")
        params = [p for p in model.parameters() if p.grad is not None]
        D.all_reduce_gradients(params, self.dist)
        grad_norm = clip_gradients(params, t.grad_clip, t.grad_clip_mode)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(model)
        return {
            "loss_largest": float(stacked[0]),
            "loss_smallest": float(stacked[-1]),
            "loss_mean": float(stacked.mean()),
            "grad_norm": grad_norm,
            **({"distill_weight": weight} if t.distill and weight < 1 else {}),
        }

    # -- validation -------------------------------------------------------------------
    def evaluate(self, arch: Arch, split: str = "val") -> dict[str, float]:
        """BN-calibrated top-1 of one sub-network (an exported copy; shared state untouched).

        With ``train.ema_decay`` the averaged weights are scored, as eval and search will.
        """
        calib = calibration_set(self.data, self.cfg)
        return evaluate_subnet(
            self.model if self.ema is None else self.ema.module,
            arch,
            calib,
            eval_loader(self.data, self.cfg, split),
            self.cfg.train.channels_last,
            self.dist.device,
        )

    def _end_of_epoch(self) -> None:
        record: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.step}
        every = self.cfg.eval_every_epochs
        if (
            self.dist.is_main
            and every
            and ((self.epoch + 1) % every == 0 or self.epoch + 1 == self.cfg.train.epochs)
        ):
            for name, arch in (("smallest", self.smallest), ("largest", self.largest)):
                r = self.evaluate(arch)
                record[f"val_top1_{name}"] = r["top1"]
                record[f"val_loss_{name}"] = r["loss"]
        self.history.append(record)
        self.log(record)
        if self.dist.is_main:
            say(self._epoch_line(record))
        self._epoch_losses = []
        D.barrier(self.dist)

    def _epoch_line(self, record: dict[str, Any]) -> str:
        """One line per epoch, with or without a progress bar: where the run is, how well."""
        parts = [
            f"epoch {record['epoch']}/{self.cfg.train.epochs}",
            f"step {self.step}/{self.total_steps}",
        ]
        if self._epoch_losses:
            parts.append(f"loss (largest) {np.mean(self._epoch_losses):.3f}")
        for name in ("smallest", "largest"):
            if f"val_top1_{name}" in record:
                parts.append(f"val top-1 {name} {record[f'val_top1_{name}']:.2f}%")
        parts.append(f"{minutes(self._elapsed())} so far")
        return ", ".join(parts)

    def summary_line(self) -> str:
        """What this run is: space, data, steps and device (said once at the start)."""
        lo, hi = self.space.cost(self.smallest), self.space.cost(self.largest)
        d = self.data
        shape = f"{d.channels}x{d.image_size}x{d.image_size}"
        start = f"resuming at step {self.step} of" if self.step else "training"
        return (
            f"space '{self.space.name}': {self.space.size():.3g} architectures, "
            f"{lo.mflops:.3g}-{hi.mflops:.3g} MFLOPs; data '{d.name}': {len(d.train)} train / "
            f"{len(d.val)} val / {len(d.test)} test images ({shape}, {d.num_classes} classes); "
            f"{start} {self.total_steps} steps ({self.cfg.train.epochs} epochs x "
            f"{self.steps_per_epoch} of batch {self.cfg.train.batch_size}) on "
            f"{self.dist.device} ({torch.get_num_threads()} threads"
            + (f", {self.dist.world_size} processes" if self.dist.world_size > 1 else "")
            + f"), into '{self.out}'"
        )

    def _estimate(self, steps_timed: int, seconds: float) -> None:
        """Say how long the rest of training takes at the speed of the steps just timed."""
        left = self.total_steps - self.step
        per_step = seconds / max(steps_timed, 1)
        say(
            f"{per_step:.2f} s a step over the first {steps_timed} steps: about "
            f"{minutes(per_step * left)} for the {left} steps left (plus evaluations)"
        )

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        if self.dist.is_main:
            say(self.summary_line())
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not self.progress,
            unit="step",
            dynamic_ncols=True,
            leave=True,
        )
        try:
            self._train_epochs(bar)
        finally:
            bar.close()
            if self.writer is not None:
                self.writer.close()
        summary = {
            "status": "finished",
            "steps": self.step,
            "epochs": self.epoch,
            "history": self.history,
            "train_seconds": self._elapsed(),
        }
        if self.dist.is_main:
            atomic_write_json(self.out / runlog.SUMMARY, summary)
        return summary

    def _train_epochs(self, bar: tqdm) -> None:
        t = self.cfg.train
        fault_at = int(os.environ.get(FAULT_ENV, "0") or 0)
        window_start, window_images = time.perf_counter(), 0
        first_step_done, timed = None, 0  # the estimate times steps after the first
        while self.epoch < t.epochs:
            for x, y in self.loader.epoch(self.epoch, self.batch_in_epoch):
                x, y = x.to(self.dist.device), y.to(self.dist.device)
                stats = self.train_step(x, y)
                self._epoch_losses.append(stats[self.headline_loss])
                self.step += 1
                if first_step_done is None:
                    first_step_done = time.perf_counter()
                else:
                    timed += 1
                    if timed == ESTIMATE_AFTER_STEPS and self.dist.is_main:
                        self._estimate(timed, time.perf_counter() - first_step_done)
                self.batch_in_epoch += 1
                window_images += len(y) * self.dist.world_size
                if self.step % 20 == 0 or self.step == 1:
                    elapsed = time.perf_counter() - window_start
                    rate = window_images / max(elapsed, 1e-9)
                    lr = self.optimizer.param_groups[0]["lr"]
                    record = {
                        "step": self.step,
                        "epoch": self.epoch,
                        "lr": lr,
                        "images_per_second": rate,
                        **stats,
                        **self.sampler.stats(),
                    }
                    self.log(record)
                    bar.set_postfix(
                        loss=f"{stats[self.headline_loss]:.3f}", lr=f"{lr:.3g}", img_s=f"{rate:.0f}"
                    )
                    window_start, window_images = time.perf_counter(), 0
                bar.update(1)
                if self.step % self.cfg.checkpoint.every_steps == 0:
                    self.save()
                if fault_at and self.step == fault_at:
                    os._exit(137)  # simulated crash (tests), like SIGKILL
            self._end_of_epoch()
            self.epoch += 1
            self.batch_in_epoch = 0
            self.save()
