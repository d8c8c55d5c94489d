"""Retraining one architecture from scratch: what a found architecture is finally worth.

A standalone model (``build_model(space, arch)``, no weight sharing) trains with the
recipe's ``train`` section — SGD with warm-up and cosine decay, label smoothing, dropout
and stochastic depth, the dataset's augmentation when ``data.augment`` — and, with
``train.ema_decay`` > 0, a moving average of its weights. It shares the supernet
trainer's loop (``EpochLoop``): atomic checkpoints, identical resume, run directory, logs.

Model selection looks at the validation split only: at every evaluated epoch the trained
weights (their own BN statistics) and the average (BN statistics re-estimated on the
recipe's calibration images, since averaged weights have none of their own) are scored,
and the best of all so far is kept in the checkpoint. The test split is measured once,
at the end, on the kept weights.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from samplenas.errors import UserError
from samplenas.io import atomic_write_json
from samplenas.space import Arch, SearchSpace, load_space
from samplenas.train import distributed as D
from samplenas.train.checkpoint import save_checkpoint
from samplenas.train.config import RunConfig
from samplenas.train.evaluate import accuracy, calibration_set, eval_loader
from samplenas.train.loop import EpochLoop
from samplenas.train.rundata import data_guard
from samplenas.train.runs import RETRAINED
from samplenas.train.trainer import (
    TrainingDiverged,
    check_space_fits_data,
    load_run_data,
)

RESULT = "result.json"  # {"test_top1", "val_top1", "epochs", "wall_s", ...}
ARCH_RECORD = RETRAINED  # what is retrained: space, arch, cost, where it came from
MODEL = "model.pt"  # the kept weights: a state dict of build_model(space, arch)


def build_standalone(space: SearchSpace, arch: Arch, dropout: float, drop_path: float):
    """The static model of ``arch``; a space without one is a user error, not a traceback."""
    from samplenas.supernet.static import build_model

    try:
        return build_model(space, arch, dropout=dropout, drop_path_rate=drop_path)
    except TypeError as exc:
        if not str(exc).startswith("no model builder"):
            raise  # a builder's fault, not the user's
        raise UserError(
            f"space '{space.name}' has no standalone model to retrain ({exc}); use a space "
            "with a supernet (samplenas spaces lists them)"
        ) from exc


def read_arch_record(out: Path) -> dict[str, Any]:
    """A retrain directory's ``retrain.json``, or UserError naming what is wrong."""
    path = Path(out) / ARCH_RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UserError(f"'{out}' is not a retrain directory (no {ARCH_RECORD})") from exc
    except (OSError, ValueError) as exc:
        raise UserError(f"'{path}' cannot be read ({exc}); it was changed after the run") from exc
    if not isinstance(record, dict) or not isinstance(record.get("arch"), dict):
        raise UserError(f"'{path}' holds no 'arch'; it was changed after the run")
    return record


class Retrainer(EpochLoop):
    """One architecture trained from scratch in one directory; ``run()`` ends with its test
    top-1 on the weights validation chose, written to ``result.json``."""

    loss_key = "loss"

    def __init__(
        self,
        cfg: RunConfig,
        out: str | Path,
        arch: Arch | dict[str, Any],
        resume: bool = False,
        progress: bool = True,
        accept_data_change: bool = False,
        source_run: Path | None = None,
        origin: dict[str, Any] | None = None,
    ) -> None:
        """``source_run``: a supernet run whose data (checked against its record) this
        retraining uses; ``origin``: where the architecture came from, kept in retrain.json."""
        as_given = cfg
        self.open_run_dir(cfg, out, resume, progress)
        cfg, t = self.cfg, self.cfg.train
        self.space = load_space(cfg.space)
        self.arch = self.space.validate(arch)
        model = build_standalone(self.space, self.arch, t.dropout, t.drop_path)
        if resume:
            guard = data_guard(self.out, accept_data_change)
        else:
            guard = data_guard(source_run, accept_data_change) if source_run else None
        self.data = load_run_data(cfg, self.out if self.dist.is_main else None, guard)
        check_space_fits_data(self.space, self.data, as_given, source_run)
        self.loader = self.train_loader(self.data)
        self.place_model(model)
        # the best validated weights so far: which (trained / ema), when, how good
        self.best: dict[str, Any] = {"val_top1": None, "epoch": None, "weights": None}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.begin(resume, guard if resume else None, self.data)
        if not resume and self.dist.is_main:
            self._write_arch_record(origin or {})
        if not resume and guard is not None and self.dist.is_main:
            guard.commit()  # the source run's accepted data change, under its lock

    def _write_arch_record(self, origin: dict[str, Any]) -> None:
        cost = self.space.cost(self.arch)
        record = {
            "space": self.space.name,
            "arch": self.arch.to_json(),
            "mflops": cost.mflops,
            "params_m": cost.params_m,
            **origin,
        }
        atomic_write_json(self.out / ARCH_RECORD, record)

    # -- what the shared loop asks of a retraining ----------------------------------------
    def extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"best": json.dumps(self.best)}
        if self.best_state is not None:
            state["best_model"] = self.best_state
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.best = json.loads(state["best"])
        self.best_state = state.get("best_model")

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        t = self.cfg.train
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y, label_smoothing=t.label_smoothing)
        if not D.all_finite(loss.detach().view(1), self.dist):  # every rank stops, or none
            raise TrainingDiverged(f"loss is {float(loss)} at step {self.step}")
        loss.backward()
        return {"loss": float(loss.detach()), "grad_norm": self.apply_gradients()}

    def averaged_model(self) -> torch.nn.Module:
        """A copy of the weight average with BN statistics estimated for it."""
        from samplenas.supernet import calibrate_bn

        model = copy.deepcopy(self.ema.module)
        calib = [x.to(self.dist.device) for x in calibration_set(self.data, self.cfg)]
        calibrate_bn(model, calib, len(calib))
        return model

    def epoch_record(self) -> dict[str, Any]:
        """Validation of the trained weights and of their average; the best so far kept."""
        last = self.epoch + 1 == self.cfg.train.epochs
        if not (self.evaluates_now() or (last and self.dist.is_main)):
            return {}
        val = eval_loader(self.data, self.cfg, "val")
        candidates = [("trained", self.model)]
        if self.ema is not None:
            candidates.append(("ema", self.averaged_model()))
        record: dict[str, Any] = {}
        for kind, model in candidates:
            r = accuracy(model, val.epoch(0), self.dist.device)
            suffix = "" if kind == "trained" else "_ema"
            record[f"val_top1{suffix}"], record[f"val_loss{suffix}"] = r["top1"], r["loss"]
            if self.best["val_top1"] is None or r["top1"] > self.best["val_top1"]:
                self.best = {"val_top1": r["top1"], "epoch": self.epoch + 1, "weights": kind}
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        record.update({f"best_{k}": v for k, v in self.best.items()})
        return record

    def epoch_line_parts(self, record: dict[str, Any]) -> list[str]:
        parts = []
        if "val_top1" in record:
            parts.append(f"val top-1 {record['val_top1']:.2f}%")
        if "val_top1_ema" in record:
            parts.append(f"average {record['val_top1_ema']:.2f}%")
        if "best_val_top1" in record:
            b = self.best
            parts.append(f"best {b['val_top1']:.2f}% ({b['weights']}, epoch {b['epoch']})")
        return parts

    def summary_line(self) -> str:
        """What is retrained, on what, for how long: said once at the start."""
        cost = self.space.cost(self.arch)
        d = self.data
        start = f"resuming at step {self.step} of" if self.step else "training"
        average = f", weight average {self.cfg.train.ema_decay}" if self.ema is not None else ""
        return (
            f"retraining an architecture of '{self.space.name}' from scratch ({cost.mflops:.3g} "
            f"MFLOPs, {cost.params_m:.3g} M params); data '{d.name}': {len(d.train)} train / "
            f"{len(d.val)} val / {len(d.test)} test images; {start} {self.total_steps} steps "
            f"({self.cfg.train.epochs} epochs x {self.steps_per_epoch} of batch "
            f"{self.cfg.train.batch_size}{average}) on {self.dist.device} "
            f"({torch.get_num_threads()} threads), into '{self.out}'"
        )

    # -- the end ----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train, then measure the kept weights on the test split once: ``result.json``."""
        summary = super().run()
        if not self.dist.is_main:
            return summary
        if self.best_state is None:  # cannot happen: the last epoch always validates
            raise RuntimeError("retraining ended without a validated model")
        self.model.load_state_dict(self.best_state)
        save_checkpoint(self.out / MODEL, self.model.state_dict())
        test = accuracy(self.model, eval_loader(self.data, self.cfg, "test").epoch(0))
        cost = self.space.cost(self.arch)
        result = {
            "test_top1": test["top1"],
            "val_top1": self.best["val_top1"],
            "epochs": self.epoch,
            "wall_s": round(self._elapsed(), 1),
            "test_loss": test["loss"],
            "weights": self.best["weights"],
            "best_epoch": self.best["epoch"],
            "space": self.space.name,
            "arch": self.arch.to_json(),
            "mflops": cost.mflops,
            "params_m": cost.params_m,
        }
        atomic_write_json(self.out / RESULT, result)
        return result
