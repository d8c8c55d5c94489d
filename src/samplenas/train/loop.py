"""The epoch loop every training run shares: supernet training and retraining from scratch.

What makes a run trustworthy lives here once: SGD with linear warm-up and cosine decay,
atomic checkpoints every ``checkpoint.every_steps`` steps and every epoch holding model,
weight average, optimizer, scheduler, loader and RNG states, a resume that continues
exactly where the checkpoint stopped (its logs cut back to what the checkpoint saw), one
log line per epoch, the time estimate after the first steps, and the crash hook the tests
use. A run kind (``EpochLoop`` subclass) says only what one step trains, what an epoch's
end measures, and which extra state its checkpoint carries.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from samplenas.data import Loader, Splits, make_loader
from samplenas.errors import UserError
from samplenas.io import atomic_write_json, atomic_write_text
from samplenas.train import distributed as D
from samplenas.train import runlog
from samplenas.train.checkpoint import (
    CHECKPOINT,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from samplenas.train.config import OptimConfig, RunConfig, record_resume, resume_changes
from samplenas.train.ema import make_ema
from samplenas.train.optim import sgd
from samplenas.train.rundata import DataGuard, resolve_run_inputs, write_data_record

FAULT_ENV = "SAMPLENAS_FAULT_AT_STEP"  # tests: die abruptly after this step
ESTIMATE_AFTER_STEPS = 10  # steps timed before the run says how long it will take
LOG_EVERY_STEPS = 20


def say(message: str) -> None:
    """One line to the user on stderr, printed around a progress bar, not through it."""
    tqdm.write(f"samplenas: {message}", file=sys.stderr)


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio`` of the peak."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def sgd_schedule(
    model: torch.nn.Module, t: OptimConfig, world_size: int, steps_per_epoch: int
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """The recipe's SGD (weight decay on conv/linear weights only, lr scaled linearly with
    the total batch) and its per-step warm-up + cosine schedule over ``train.epochs``."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    lr = t.lr * t.batch_size * world_size / t.lr_reference_batch
    optimizer = sgd(
        [
            {"params": decay, "weight_decay": t.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=t.momentum,
        nesterov=t.nesterov and t.momentum > 0,
    )
    total = t.epochs * steps_per_epoch
    warmup = int(round(t.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, warmup, t.min_lr_ratio)
    )
    return optimizer, scheduler


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


class EpochLoop:
    """Steps and epochs of one run directory, checkpointed and resumable.

    A subclass calls ``open_run_dir``, loads its data and sets ``loader`` (``train_loader``),
    ``model``, ``ema`` (or None), ``optimizer`` and ``scheduler`` (``sgd_schedule``), calls
    ``start_loop`` and then ``begin`` (a fresh directory, or the resumed checkpoint); it defines
    ``train_step`` (returns the step's numbers, ``loss_key`` among them),
    ``epoch_record`` (what an epoch's end measured) and ``summary_line``; ``extra_state``
    / ``load_extra_state`` add to the checkpoint what else the run needs to continue.
    """

    cfg: RunConfig
    out: Path
    dist: D.DistInfo
    progress: bool
    loader: Any
    model: torch.nn.Module
    ema: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    resumed_with: dict[str, list[Any]] | None
    loss_key = "loss"  # the step's number the progress bar and the epoch line show
    loss_label = "loss"

    def open_run_dir(self, cfg: RunConfig, out: str | Path, resume: bool, progress: bool) -> None:
        """The run's recipe (self-contained: see ``resolve_run_inputs``), directory,
        processes, threads and seed; a resume may extend a run, never make it another."""
        cfg = resolve_run_inputs(cfg, fresh=not resume)
        self.cfg = cfg
        self.out = Path(out)
        self.resumed_with = resume_changes(self.out, cfg) if resume else None
        self.dist = D.init_distributed()
        self.progress = progress and self.dist.is_main
        threads = cfg.train.threads or max(1, (os.cpu_count() or 1) // self.dist.world_size)
        torch.set_num_threads(threads)
        torch.manual_seed(cfg.seed)

    def train_loader(self, data: Splits) -> Loader:
        """This rank's shuffled, augmented (as the recipe says) training batches."""
        t = self.cfg.train
        loader = make_loader(
            data,
            "train",
            t.batch_size,
            shuffle=True,
            augment=self.cfg.data.augment,
            seed=self.cfg.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            channels_last=t.channels_last,
        )
        if loader.batches_per_epoch() < 1:
            raise UserError("train.batch_size is larger than the training split")
        return loader

    def begin(self, resume: bool, guard: DataGuard | None, data: Splits) -> None:
        """Resume from the checkpoint, or start the directory afresh: recipe, data record,
        empty logs. An accepted data change (``guard``) is recorded once all checks passed."""
        if resume:
            self.resume()
            if guard is not None and self.dist.is_main:  # every check passed: record it
                guard.commit(lock=False)  # the command holds the run's lock already
        elif self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            runlog.start_fresh(self.out)  # an earlier run that died early left its logs
            atomic_write_text(self.out / "config.yaml", self.cfg.to_yaml())
            write_data_record(self.out, data)
            for note in data.notes:
                print(f"samplenas: {note}", file=sys.stderr)
        if self.dist.is_main:
            self.open_tensorboard()

    def apply_gradients(self) -> float:
        """The step's accumulated gradients averaged across ranks, clipped and applied
        (then the LR schedule and the weight average advance); their norm."""
        t = self.cfg.train
        params = [p for p in self.model.parameters() if p.grad is not None]
        D.all_reduce_gradients(params, self.dist)
        grad_norm = clip_gradients(params, t.grad_clip, t.grad_clip_mode)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return grad_norm

    def place_model(self, model: torch.nn.Module) -> None:
        """``model`` on this rank's device (channels-last when the recipe says), the same
        initial weights on every rank, its SGD + schedule and weight average; then
        ``start_loop``. Needs ``loader`` (the schedule counts its batches)."""
        t = self.cfg.train
        self.model = model.to(self.dist.device)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        D.broadcast_module(self.model, self.dist)
        self.optimizer, self.scheduler = sgd_schedule(
            self.model, t, self.dist.world_size, self.loader.batches_per_epoch()
        )
        self.ema = make_ema(self.model, t.ema_decay) if t.ema_decay > 0 else None
        self.start_loop()

    def start_loop(self) -> None:
        """Counters of a run that has not stepped yet (``resume`` restores them)."""
        self.steps_per_epoch = self.loader.batches_per_epoch()
        self.total_steps = self.cfg.train.epochs * self.steps_per_epoch
        self.saved_step: int | None = None  # step of the checkpoint on disk (None: none yet)
        self._epoch_losses: list[float] = []
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0  # wall time of training so far, across resumes
        self._clock = time.perf_counter()
        self.writer = None

    # -- what a run kind defines ---------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def epoch_record(self) -> dict[str, Any]:
        """What the end of the current epoch measured (validation); logged and kept."""
        return {}

    def epoch_line_parts(self, record: dict[str, Any]) -> list[str]:
        """The epoch record's numbers for the epoch line."""
        return []

    def summary_line(self) -> str:
        raise NotImplementedError

    def step_stats(self) -> dict[str, Any]:
        """Extra numbers for the per-step log records."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

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
            "loader": self.loader.state_dict(),
            "rng": capture_rng(),
            "history": json.dumps(self.history),
            "train_seconds": self._elapsed(),
            "config": json.dumps(self.cfg.to_dict()),
            **self.extra_state(),
        }

    def _elapsed(self) -> float:
        return self.train_seconds + time.perf_counter() - self._clock

    def save(self) -> None:
        if self.dist.is_main:
            save_checkpoint(self.out / CHECKPOINT, self._state())
            if self.writer is not None:  # what the checkpoint saw survives a crash
                self.writer.flush()
        self.saved_step = self.step

    def resume(self) -> None:
        """Continue from the run's checkpoint: every state as it was saved."""
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
        self.loader.load_state_dict(state["loader"])
        self.load_extra_state(state)
        restore_rng(state["rng"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.saved_step = self.step
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.history = json.loads(state["history"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self._clock = time.perf_counter()
        if self.dist.is_main:  # forget what was logged after the checkpoint
            for name in (runlog.METRICS, runlog.SAMPLES):
                runlog.truncate_after(self.out / name, self.step, self.epoch)
            record_resume(self.out, self.cfg, self.resumed_with or {}, self.step)

    def open_tensorboard(self) -> None:
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

    # -- epoch ends -------------------------------------------------------------------
    def _end_of_epoch(self) -> None:
        record: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.step}
        record.update(self.epoch_record())
        self.history.append(record)
        self.log(record)
        if self.dist.is_main:
            say(self._epoch_line(record))
        self._epoch_losses = []
        D.barrier(self.dist)

    def evaluates_now(self) -> bool:
        """Whether this epoch's end is one the recipe evaluates at (always the last)."""
        every = self.cfg.eval_every_epochs
        last = self.epoch + 1 == self.cfg.train.epochs
        return self.dist.is_main and bool(every) and ((self.epoch + 1) % every == 0 or last)

    def _epoch_line(self, record: dict[str, Any]) -> str:
        """One line per epoch, with or without a progress bar: where the run is, how well."""
        parts = [
            f"epoch {record['epoch']}/{self.cfg.train.epochs}",
            f"step {self.step}/{self.total_steps}",
        ]
        if self._epoch_losses:
            parts.append(f"{self.loss_label} {np.mean(self._epoch_losses):.3f}")
        parts += self.epoch_line_parts(record)
        parts.append(f"{minutes(self._elapsed())} so far")
        return ", ".join(parts)

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
        """Train to ``train.epochs``; the summary is also written to ``run.json``."""
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
                self._epoch_losses.append(stats[self.loss_key])
                self.step += 1
                if first_step_done is None:
                    first_step_done = time.perf_counter()
                else:
                    timed += 1
                    if timed == ESTIMATE_AFTER_STEPS and self.dist.is_main:
                        self._estimate(timed, time.perf_counter() - first_step_done)
                self.batch_in_epoch += 1
                window_images += len(y) * self.dist.world_size
                if self.step % LOG_EVERY_STEPS == 0 or self.step == 1:
                    elapsed = time.perf_counter() - window_start
                    rate = window_images / max(elapsed, 1e-9)
                    lr = self.optimizer.param_groups[0]["lr"]
                    record = {
                        "step": self.step,
                        "epoch": self.epoch,
                        "lr": lr,
                        "images_per_second": rate,
                        **stats,
                        **self.step_stats(),
                    }
                    self.log(record)
                    bar.set_postfix(
                        loss=f"{stats[self.loss_key]:.3f}", lr=f"{lr:.3g}", img_s=f"{rate:.0f}"
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
