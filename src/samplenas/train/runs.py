"""Open a finished (or interrupted) run directory: its recipe, data and supernet weights."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from samplenas.data import Loader, Splits
from samplenas.errors import UserError
from samplenas.space import SUPERNET_SPACES, Arch, SupernetSpace, load_space
from samplenas.train.checkpoint import CHECKPOINT, load_checkpoint
from samplenas.train.config import RunConfig, load_run_config
from samplenas.train.ema import averaged_parameters
from samplenas.train.evaluate import calibration_set, eval_loader, evaluate_subnet
from samplenas.train.rundata import data_guard
from samplenas.train.trainer import build_supernet, check_space_fits_data, load_run_data

EvaluationFingerprint = dict[str, Any]  # flat: key -> JSON scalar
RETRAINED = "retrain.json"  # a retrain directory's mark (retrain.ARCH_RECORD)


def weights_sha256(module: torch.nn.Module) -> str:
    """A hash of every weight and BN statistic: two checkpoints score alike only if equal."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def default_device() -> torch.device:
    """Score on the GPU when there is one: a search evaluates thousands of sub-networks.

    ``CUDA_VISIBLE_DEVICES=`` (empty) keeps scoring on the CPU.
    """
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@dataclass
class RunWeights:
    """A run's recipe, space and supernet weights, without its data: enough to cost an
    architecture and to check a Pareto id against the weights its front was measured on."""

    path: Path
    cfg: RunConfig
    space: SupernetSpace
    supernet: torch.nn.Module
    step: int
    weights: str = "trained"  # or "ema": the moving average of the trained weights

    @cached_property
    def _weights_hash(self) -> str:
        """The weights never change once a run is opened: hash them once, not per cache."""
        return weights_sha256(self.supernet)[:16]

    def weights_id(self) -> dict[str, Any]:
        """Which weights score here: checkpoint step, kind (trained / ema) and their hash."""
        return {
            "checkpoint_step": self.step,
            "weights": self.weights,
            "weights_sha256": self._weights_hash,
        }


@dataclass(kw_only=True)
class Run(RunWeights):
    """A run with its data, held to what it was trained on: what eval, search and export
    score with."""

    data: Splits
    device: torch.device = field(default_factory=default_device)
    data_record: dict[str, Any] | None = None  # data.json; None for runs older than it

    def class_names(self) -> list[str]:
        """The class names in label (logit) order, as the run was trained: what exports and
        ``predict`` label logits with (the dataset's own for runs older than data.json)."""
        from samplenas.data.preprocess import class_names

        if self.data_record is not None and self.data_record.get("classes"):
            return list(self.data_record["classes"])
        return class_names(self.data)

    def preprocessing(self) -> dict[str, Any]:
        """The rule an image goes through to be scored as the run scored its images: the
        one recorded at training (``data.preprocess.preprocessing``), or, for runs older
        than that record, the live data's."""
        from samplenas.data.preprocess import preprocessing

        recorded = (self.data_record or {}).get("preprocessing")
        return dict(recorded) if recorded else preprocessing(self.data)

    def calibration(self, num_batches: int | None = None) -> list[torch.Tensor]:
        return calibration_set(self.data, self.cfg, num_batches)

    def eval_loader(self, split: str, limit: int | None = None) -> Loader:
        return eval_loader(self.data, self.cfg, split, limit)

    def fingerprint(
        self, calib: list[torch.Tensor], split: str, loader: Loader
    ) -> EvaluationFingerprint:
        """How scores of ``calib`` + ``loader`` are measured: what a cached score must match.

        The weights (step, kind, hash), the BN-calibration images, the evaluated images and
        the data split they come from; a score measured any other way is not reused.
        """
        c, d = self.cfg.calibration, self.cfg.data
        return {
            **self.weights_id(),
            "dataset": self.data.name,
            **({"data_sha256": self.data.files.sha256[:16]} if self.data_record else {}),
            "split_seed": d.split_seed,
            "val_size": d.val_size,
            "train_subset": d.train_subset,
            "image_size": self.data.image_size,
            "calibration_split": c.split,
            "calibration_batches": len(calib),
            "calibration_batch_size": c.batch_size,
            "calibration_images": sum(len(x) for x in calib),
            "calibration_seed": self.cfg.seed,
            "eval_split": split,
            "eval_images": len(loader.split),
            "split_images": len(self.data.split(split)),
        }

    def score(
        self,
        arch: Arch,
        calib: list[torch.Tensor],
        loader: Loader,
        halves: bool = False,
    ) -> dict[str, float]:
        """BN-calibrated top-1 and loss of ``arch`` on ``loader`` (see ``evaluate_subnet``)."""
        return evaluate_subnet(
            self.supernet, arch, calib, loader, self.cfg.train.channels_last, self.device, halves
        )

    def evaluate(
        self, arch: Arch, split: str = "val", calib_batches: int | None = None
    ) -> dict[str, float]:
        return self.score(arch, self.calibration(calib_batches), self.eval_loader(split))


def _open_recipe(path: Path, data_dir: str | None = None) -> tuple[RunConfig, SupernetSpace]:
    """A trained run's recipe (``data_dir`` overriding its data folder) and its space."""
    if not (path / "config.yaml").is_file() or not (path / CHECKPOINT).is_file():
        raise UserError(
            f"'{path}' is not a trained run directory (needs config.yaml and {CHECKPOINT})"
        )
    if (path / RETRAINED).is_file():
        raise UserError(
            f"'{path}' retrained one architecture from scratch; it holds no supernet (its "
            "test top-1 is in result.json, its weights in model.pt)"
        )
    cfg = load_run_config(path, {"data": {"data_dir": data_dir}} if data_dir else None)
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    space = load_space(cfg.space)
    if not isinstance(space, SUPERNET_SPACES):
        raise UserError(f"space '{space.name}' of run '{path}' has no supernet")
    return cfg, space


def _weights(path: Path, cfg: RunConfig, space: SupernetSpace, weights: str) -> RunWeights:
    """The supernet of ``path`` with its ``weights`` (see ``load_run``)."""
    if weights not in ("auto", "ema", "trained"):
        raise ValueError(f"weights must be auto, ema or trained, not {weights!r}")
    supernet = build_supernet(space)
    state = load_checkpoint(path / CHECKPOINT)
    supernet.load_state_dict(state["model"])
    if weights == "ema" and "ema" not in state:
        raise UserError(f"the run in '{path}' kept no weight average (train.ema_decay was 0)")
    chosen = "ema" if weights != "trained" and "ema" in state else "trained"
    if chosen == "ema":
        supernet.load_state_dict(averaged_parameters(state["ema"], supernet), strict=False)
    if cfg.train.channels_last:
        supernet = supernet.to(memory_format=torch.channels_last)
    return RunWeights(path, cfg, space, supernet, int(state["step"]), chosen)


def load_run_weights(path: str | Path, weights: str = "auto") -> RunWeights:
    """A run's recipe, space and weights, without reading its data (``samplenas cost``
    checks a Pareto id against them)."""
    path = Path(path)
    return _weights(path, *_open_recipe(path), weights)


def run_space(path: str | Path) -> SupernetSpace:
    """A trained run's space, from its recipe alone."""
    return _open_recipe(Path(path))[1]


def load_run(
    path: str | Path,
    data_dir: str | None = None,
    weights: str = "auto",
    accept_data_change: bool = False,
    writable: bool = True,
) -> Run:
    """``weights``: "auto" takes the moving average when the run kept one, else the
    trained weights; "ema" / "trained" insist on one of them. Data that changed since
    training exit 2 unless ``accept_data_change`` (see ``rundata.DataGuard``); an accepted
    change is recorded only once the run opened without error. Without ``writable``
    (torchrun's ranks other than 0) nothing is written to the run: no decoded copy of the
    data, no record of an accepted change."""
    path = Path(path)
    cfg, space = _open_recipe(path, data_dir)
    guard = data_guard(path, accept_data_change)
    data = load_run_data(cfg, path if writable else None, guard)
    check_space_fits_data(space, data, cfg, path)
    w = _weights(path, cfg, space, weights)
    if guard is None:  # a run from before data.json
        return Run(path, cfg, space, w.supernet, w.step, w.weights, data=data)
    if writable:
        guard.commit()  # every check passed: record an accepted change
    record = guard.record
    return Run(path, cfg, space, w.supernet, w.step, w.weights, data=data, data_record=record)
