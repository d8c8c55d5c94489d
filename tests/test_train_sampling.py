"""What the trainer feeds its sampler and its evaluations: the attentive loss estimator,
BN-calibration images, and sampler options checked before a run starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from samplenas.data.loader import normalize
from samplenas.train import Trainer, load_config
from samplenas.train.evaluate import calibration_set
from samplenas.train.trainer import load_run_data

ROOT = Path(__file__).parent.parent
TINY = "tiny"  # a shipped recipe, by name


def attentive_trainer(out: Path, loss: str, distill: bool) -> Trainer:
    """BestUp-3 (loss) on tiny, one sampled sub-network a step, teacher ramped in over 2 epochs."""
    recipe = {
        "sampler": {"name": "bestup-3-loss", "options": {"loss": loss}},
        "train": {"num_random": 1, "distill_warmup_epochs": 2.0, "distill": distill},
    }
    return Trainer(load_config(TINY, recipe), out, progress=False)


@pytest.mark.parametrize("loss, distill", [("train", True), ("ce", True), ("train", False)])
def test_attentive_candidates_are_scored_by_the_configured_loss(tmp_path, loss, distill):
    """``train``: the loss the kept sub-network is trained with (distillation towards the
    ramped teacher, or label-smoothed CE without distillation); ``ce``: CE on labels."""
    trainer = attentive_trainer(tmp_path / loss, loss, distill)
    batches = trainer.loader.epoch(0)
    for _ in range(5):  # away from the uniform predictions of the start, where all agree
        trainer.train_step(*next(batches))
    trainer.step = trainer.distill_warmup_steps // 2  # mid-ramp: labels and teacher mixed
    assert 0 < trainer.distill_weight() < 1
    trained: list[tuple[torch.Tensor, float]] = []  # (logits, loss) of each backward pass
    subnet_loss = trainer.subnet_loss

    def spy(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        value = subnet_loss(logits, y, targets)
        if torch.is_grad_enabled():  # a training pass, not a candidate's scoring pass
            trained.append((logits.detach().clone(), float(value.detach())))
        return value

    trainer.subnet_loss = spy
    x, y = next(batches)
    trainer.train_step(x, y)
    (scores,) = trainer.sampler.last_scores
    assert len(scores) == 3 and len(trained) == 2  # the sampled sub-network, the smallest
    logits, trained_with = trained[0]
    ce = float(F.cross_entropy(logits, y))
    assert abs(trained_with - ce) > 1e-4  # the two estimators differ at this step
    kept = -scores[trainer.sampler.choose(scores)]
    # the same forward pass, without gradients: equal to float precision
    assert kept == pytest.approx(trained_with if loss == "train" else ce, rel=0, abs=1e-6)


def test_attentive_loss_estimator_defaults_to_the_training_loss():
    assert load_config(TINY, {"sampler": {"name": "bestup-3-loss"}}).sampler.options == {}
    from samplenas.samplers import make_sampler
    from samplenas.space import load_space

    assert make_sampler("bestup-3-loss", load_space("tiny")).loss == "train"


def images_found(images: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Per image: whether it is, pixel for pixel, one of ``pool``'s images."""
    return (images.flatten(1)[:, None] == pool.flatten(1)[None]).all(-1).any(1)


@pytest.mark.parametrize("split", [None, "val"])
def test_default_calibration_draws_unaugmented_training_images(split):
    recipe = {"calibration": {"split": split}} if split else None
    cfg = load_config(TINY, recipe)  # tiny.yaml trains with augmentation on
    data = load_run_data(cfg)
    calib = torch.cat(calibration_set(data, cfg))
    assert len(calib) == cfg.calibration.batches * cfg.calibration.batch_size
    train = normalize(data.train.images, data.mean, data.std)
    val = normalize(data.val.images, data.mean, data.std)
    expected, other = (val, train) if split == "val" else (train, val)
    assert images_found(calib, expected).all()  # exact images: not augmented
    assert not images_found(calib, other).any()


def test_unknown_sampler_option_exits_2_in_one_line_naming_it(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "samplenas.cli", "train", "--config", TINY]
        + ["--set", "sampler.options.k=5", "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=ROOT,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'k'" in lines[0] and "sampler.options" in lines[0], proc.stderr
    assert not out.exists()  # nothing started
