"""One sandwich step, spied on: what is trained, in which order, with which targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import samplenas.train.trainer as trainer_mod
from samplenas.train import Trainer, load_config

TINY = "tiny"  # a shipped recipe, by name


@pytest.fixture
def spied_step(tmp_path, monkeypatch):
    """Run one train_step on tiny (dropout and drop-path on) and record every forward/loss."""
    # the teacher at full weight from step 0 (no ramp), so the small ones learn from it alone
    regularised = {"drop_path": 0.2, "dropout": 0.1, "num_random": 3, "distill_warmup_epochs": 0}
    cfg = load_config(TINY, {"train": regularised})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    model = trainer.model
    forwards, hard, soft, asked = [], [], [], []

    def record_forward(module, inputs, output):
        rates = [b.drop_path_rate for b in module._active_blocks]
        forwards.append(
            {
                "arch": module._arch,
                "dropout": module.dropout,
                "drop_path": max(rates),
                "training": module.training,
                "logits": output,
            }
        )

    model.register_forward_hook(record_forward)
    real_ce, real_soft = F.cross_entropy, trainer_mod.soft_cross_entropy

    def spy_ce(logits, target, **kwargs):
        hard.append((logits, target, kwargs))
        return real_ce(logits, target, **kwargs)

    def spy_soft(logits, target_probs):
        soft.append((logits, target_probs))
        return real_soft(logits, target_probs)

    real_ask = trainer.sampler.ask

    def spy_ask(n=1):
        out = real_ask(n)
        asked.append(out)
        return out

    monkeypatch.setattr(F, "cross_entropy", spy_ce)
    monkeypatch.setattr(trainer_mod, "soft_cross_entropy", spy_soft)
    monkeypatch.setattr(trainer.sampler, "ask", spy_ask)
    x, y = next(trainer.loader.epoch(0))
    trainer.train_step(x, y)
    return trainer, x, y, forwards, hard, soft, asked


def test_sandwich_step_trains_largest_sampled_then_smallest(spied_step):
    trainer, _, y, forwards, hard, soft, asked = spied_step
    t = trainer.cfg.train
    assert asked == [asked[0]] and len(asked[0]) == t.num_random == 3
    order = [f["arch"] for f in forwards]
    assert order == [trainer.largest, *asked[0], trainer.smallest]
    assert all(f["training"] for f in forwards)
    # regularisation on the largest only
    assert forwards[0]["dropout"] == t.dropout > 0
    assert forwards[0]["drop_path"] == pytest.approx(t.drop_path) and t.drop_path > 0
    assert all(f["dropout"] == 0 and f["drop_path"] == 0 for f in forwards[1:])
    # the largest learns from the labels (label-smoothed), once
    assert len(hard) == 1
    logits, target, kwargs = hard[0]
    assert logits is forwards[0]["logits"] and torch.equal(target, y)
    assert kwargs.get("label_smoothing") == t.label_smoothing


def test_sampled_and_smallest_distil_from_the_largests_detached_probabilities(spied_step):
    _, _, _, forwards, _, soft, _ = spied_step
    assert len(soft) == len(forwards) - 1
    assert all(logits is f["logits"] for (logits, _), f in zip(soft, forwards[1:], strict=True))
    teacher = soft[0][1]
    assert all(target is teacher for _, target in soft)  # one teacher for every student
    assert not teacher.requires_grad and teacher.grad_fn is None  # no gradient into it
    expected = F.softmax(forwards[0]["logits"].detach(), dim=1)
    assert torch.allclose(teacher, expected)
    assert forwards[0]["logits"].requires_grad  # the largest itself did train
