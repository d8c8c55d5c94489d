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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from samplenas.data import Loader, Splits, load_dataset
from samplenas.errors import UserError
from samplenas.samplers import Sampler, make_sampler
from samplenas.space import (
    SUPERNET_SPACES,
    Arch,
    SearchSpace,
    SupernetSpace,
    list_spaces,
    load_space,
)
from samplenas.space.registry import SPACES_DIR
from samplenas.train import distributed as D
from samplenas.train import runlog
from samplenas.train.config import RunConfig
from samplenas.train.evaluate import calibration_set, eval_loader, evaluate_subnet
from samplenas.train.loop import (  # the noqa names moved there; importable from here too
    FAULT_ENV,  # noqa: F401
    EpochLoop,
    clip_gradients,  # noqa: F401
    lr_factor,  # noqa: F401
    minutes,  # noqa: F401
    say,  # noqa: F401
)
from samplenas.train.rundata import (
    DataGuard,
    data_guard,
)


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
    space: SupernetSpace, data: Splits, cfg: RunConfig | None = None, run_dir: Path | None = None
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


def build_supernet(space: SearchSpace) -> torch.nn.Module:
    """The space's weight-sharing supernet; UserError for spaces without one."""
    from samplenas.supernet import build_supernet as build

    return build(space)


class Trainer(EpochLoop):
    """One run directory, one supernet; ``run()`` trains to the end, resuming if asked."""

    def __init__(
        self,
        cfg: RunConfig,
        out: str | Path,
        resume: bool = False,
        progress: bool = True,
        accept_data_change: bool = False,
    ) -> None:
        as_given = cfg  # names the user's space file in messages; the run keeps its contents
        self.open_run_dir(cfg, out, resume, progress)
        cfg = self.cfg
        space = load_space(cfg.space)
        if not isinstance(space, SUPERNET_SPACES):
            raise UserError(
                f"space '{space.name}' has no supernet; use a MobileNet-style or "
                "FBNetV2-style space"
            )
        self.space = space
        guard = data_guard(self.out, accept_data_change) if resume else None
        self.data = load_run_data(cfg, self.out if self.dist.is_main else None, guard)
        check_space_fits_data(space, self.data, as_given, self.out if resume else None)
        t = cfg.train
        self.loader = self.train_loader(self.data)
        self.place_model(build_supernet(space))
        self.distill_warmup_steps = int(round(t.distill_warmup_epochs * self.steps_per_epoch))
        self.sampler: Sampler = self.build_sampler(space)
        self.largest, self.smallest = space.largest(), space.smallest()
        self.begin(resume, guard, self.data)

    # -- what the shared loop asks of a supernet run ----------------------------------
    loss_key = "loss_largest"
    loss_label = "loss (largest)"

    def build_sampler(self, space: SearchSpace) -> Sampler:
        """The recipe's sampler, seeded alike on every rank (the FP-NAS search overrides)."""
        return make_sampler(
            self.cfg.sampler.name, space, seed=self.cfg.seed, **self.cfg.sampler.options
        )

    def extra_state(self) -> dict[str, Any]:
        return {"sampler": json.dumps(self.sampler.state_dict())}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(json.loads(state["sampler"]))

    def step_stats(self) -> dict[str, Any]:
        return self.sampler.stats()

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
        grad_norm = self.apply_gradients()
        self.sampler_feedback()
        return {
            "loss_largest": float(stacked[0]),
            "loss_smallest": float(stacked[-1]),
            "loss_mean": float(stacked.mean()),
            "grad_norm": grad_norm,
            **({"distill_weight": weight} if t.distill and weight < 1 else {}),
        }

    # -- validation -------------------------------------------------------------------
    def evaluate(
        self,
        arch: Arch,
        split: str = "val",
        calib: list[torch.Tensor] | None = None,
        loader: Loader | None = None,
    ) -> dict[str, float]:
        """BN-calibrated top-1 of one sub-network (an exported copy; shared state untouched).

        With ``train.ema_decay`` the averaged weights are scored, as eval and search will.
        ``calib`` / ``loader`` default to the recipe's calibration set and all of ``split``.
        """
        return evaluate_subnet(
            self.model if self.ema is None else self.ema.module,
            arch,
            calib if calib is not None else calibration_set(self.data, self.cfg),
            loader if loader is not None else eval_loader(self.data, self.cfg, split),
            self.cfg.train.channels_last,
            self.dist.device,
        )

    def sampler_feedback(self) -> None:
        """After a step's update: score what the sampler wants scored and tell it."""
        wanted = self.sampler.wants_scores(self.step + 1)
        if wanted:
            self.sampler.tell(wanted, self.score_archs(wanted))

    def score_archs(self, archs: list[Arch]) -> list[float]:
        """Search-validation top-1 of ``archs`` for the sampler (``wants_scores``), within
        its ``score_budget``; spread over the ranks, every rank gets every score."""
        from samplenas.search.archive import Archive
        from samplenas.search.parallel import evaluate_many
        from samplenas.search.runner import expected_mflops

        batches, images = self.sampler.score_budget
        calib = calibration_set(self.data, self.cfg, batches)
        loader = eval_loader(self.data, self.cfg, "val", images)
        rows = evaluate_many(
            archs,
            lambda arch: self.evaluate(arch, calib=calib, loader=loader),
            Archive() if self.dist.is_main else None,
            self.dist,
            expected_mflops(self.space),
        )
        return [row["top1"] for row in rows]

    def epoch_record(self) -> dict[str, Any]:
        """BN-calibrated validation of the smallest and the largest, when the recipe asks."""
        record: dict[str, Any] = {}
        if self.evaluates_now():
            for name, arch in (("smallest", self.smallest), ("largest", self.largest)):
                r = self.evaluate(arch)
                record[f"val_top1_{name}"] = r["top1"]
                record[f"val_loss_{name}"] = r["loss"]
        return record

    def epoch_line_parts(self, record: dict[str, Any]) -> list[str]:
        return [
            f"val top-1 {name} {record[f'val_top1_{name}']:.2f}%"
            for name in ("smallest", "largest")
            if f"val_top1_{name}" in record
        ]

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
