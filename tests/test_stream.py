"""Streamed image folders (``data.streaming``): splits, augmentation, resume, shards, torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from samplenas import UserError
from samplenas.cli import main
from samplenas.data import load_dataset, make_loader
from samplenas.data.datasets import read_image
from samplenas.data.stream import (
    StreamLoader,
    rand_augment,
    random_resized_crop,
    resize_center_crop,
)
from samplenas.space.registry import SPACES_DIR
from samplenas.train import load_config
from samplenas.train.checkpoint import CHECKPOINT, load_checkpoint
from samplenas.train.config import RECIPES

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 230)]  # one class each


def make_folder(root: Path, per_class: int = 100, size: int = 40) -> Path:
    """``per_class`` noisy 40x40 images per class; the class decides the colour."""
    rng = np.random.default_rng(0)
    for c, colour in enumerate(COLOURS):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            noise = rng.integers(-40, 40, (size, size, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("images") / "colours")


def stream(folder: Path, workers: int = 0, val_size: int = 60):
    return load_dataset(
        "folder", str(folder), val_size, seed=0, image_size=32, streaming=True, workers=workers
    )


def test_streaming_lists_the_same_splits_as_the_in_memory_loader(folder):
    s = stream(folder)
    m = load_dataset("folder", str(folder), 60, seed=0, image_size=32)
    assert (len(s.train), len(s.val), len(s.test)) == (210, 60, 30)
    for part in ("train", "val", "test"):
        assert torch.equal(s.split(part).labels, m.split(part).labels)
        for i in (0, -1):  # the same files, in the same order
            pixels = read_image(s.split(part).paths[i], 32, grayscale=False)
            assert torch.equal(torch.tensor(pixels), m.split(part).images[i])
    assert s.channels == 3 and s.num_classes == 3


def test_training_batches_are_augmented_evaluation_batches_centre_cropped(folder):
    s = stream(folder)
    train = make_loader(s, "train", 16, shuffle=False, augment=True)
    plain = make_loader(s, "train", 16, shuffle=False, augment=False)
    (xa, ya), (xp, yp) = next(train.epoch(0)), next(plain.epoch(0))
    assert xa.shape == xp.shape == (16, 3, 32, 32) and xa.dtype == torch.float32
    assert torch.equal(ya, yp) and not torch.equal(xa, xp)
    assert abs(float(xp.mean())) < 3  # normalised, not raw 0-255 pixels
    # another epoch draws other crops of the same images
    assert not torch.equal(next(train.epoch(1))[0], xa)


def test_resume_skips_batches_exactly_and_workers_change_nothing(folder):
    s0, s2 = stream(folder, workers=0), stream(folder, workers=2)
    full = list(StreamLoader(s0, "train", 16, seed=3).epoch(2))
    assert len(full) == 210 // 16
    resumed = list(StreamLoader(s2, "train", 16, seed=3).epoch(2, start=5))
    assert len(resumed) == len(full) - 5
    for (xa, ya), (xb, yb) in zip(full[5:], resumed, strict=True):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)  # same images, same crops


def test_two_ranks_read_disjoint_shards(folder):
    s = stream(folder)
    r0 = StreamLoader(s, "train", 16, seed=3, rank=0, world_size=2)
    r1 = StreamLoader(s, "train", 16, seed=3, rank=1, world_size=2)
    a, b = set(r0.order(4).tolist()), set(r1.order(4).tolist())
    assert len(a) == len(b) == 105 and not a & b
    assert r0.order(4).tolist() != r0.order(5).tolist()  # reshuffled each epoch


def test_transforms_keep_size_and_mode():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8))
    assert random_resized_crop(img, 24, rng).size == (24, 24)
    assert resize_center_crop(img, 24).size == (24, 24)
    for _ in range(50):  # every operation, both signs
        out = rand_augment(img, rng)
        assert out.size == img.size and out.mode == "RGB"


def test_an_unreadable_image_is_named_without_a_worker_traceback(tmp_path):
    root = make_folder(tmp_path / "broken", per_class=10)
    (root / "class1" / "000.png").write_text("not an image")
    s = load_dataset("folder", str(root), 6, image_size=16, streaming=True, workers=2)
    with pytest.raises(UserError) as err:  # whichever split the file fell into
        for part in ("train", "val", "test"):
            list(make_loader(s, part, 4, shuffle=False, drop_last=False).epoch(0))
    assert str(err.value).startswith("cannot read image '") and "000.png" in str(err.value)
    assert "Traceback" not in str(err.value)


def test_streaming_is_for_folders_only():
    with pytest.raises(UserError, match="data.streaming"):
        load_config("tiny", {"data": {"streaming": True}})
    with pytest.raises(UserError, match="data.workers"):
        load_config("tiny", {"data": {"workers": -1}})


# -- whole runs: resume, and two processes under torchrun ------------------------------
def folder_recipe(tmp_path: Path, folder: Path) -> Path:
    """The tiny recipe on the colour folder, streamed: a 3-class RGB copy of the space."""
    space = yaml.safe_load((SPACES_DIR / "tiny.yaml").read_text())
    space.update(in_channels=3, num_classes=3)
    (tmp_path / "colours-space.yaml").write_text(yaml.safe_dump(space))
    recipe = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    recipe["space"] = str(tmp_path / "colours-space.yaml")
    recipe["data"] = {
        "dataset": "folder",
        "data_dir": str(folder),
        "streaming": True,
        "workers": 1,
        "image_size": 16,
        "val_size": 60,
    }
    recipe["train"].update(epochs=1, batch_size=16, threads=1)
    recipe["calibration"].update(split="train", batches=2, batch_size=32)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.slow  # about 20 s: three short runs
def test_a_killed_streaming_run_resumes_mid_epoch_to_the_same_weights(folder, tmp_path):
    recipe = folder_recipe(tmp_path, folder)
    reference = tmp_path / "reference"
    assert main(["train", "--config", str(recipe), "--out", str(reference), "--no-progress"]) == 0
    crashed = tmp_path / "crashed"
    proc = subprocess.run(  # checkpoints every 5 steps, dies after step 7 of 13
        [sys.executable, "-m", "samplenas.cli", "train", "--config", str(recipe)]
        + ["--out", str(crashed), "--no-progress"],
        capture_output=True,
        text=True,
        env={**os.environ, "SAMPLENAS_FAULT_AT_STEP": "7"},
    )
    assert proc.returncode == 137, proc.stderr
    assert load_checkpoint(crashed / CHECKPOINT)["batch_in_epoch"] == 5
    assert main(["train", "--resume", str(crashed), "--no-progress"]) == 0
    resumed = load_checkpoint(crashed / CHECKPOINT)["model"]
    expected = load_checkpoint(reference / CHECKPOINT)["model"]
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)


DRIVER = """
import json, sys
from samplenas.train import Trainer, load_config

trainer = Trainer(load_config(sys.argv[1]), sys.argv[2], progress=False)
seen, order = [], trainer.loader.order
trainer.loader.order = lambda epoch: seen.extend(order(epoch).tolist()) or order(epoch)
trainer.run()
with open(f"{sys.argv[2]}/seen-rank{trainer.dist.rank}.json", "w") as f:
    json.dump({"seen": seen, "steps": trainer.step, "world": trainer.dist.world_size}, f)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # about 25 s: two processes, each with a worker
def test_torchrun_two_processes_train_an_epoch_on_disjoint_shards_and_evaluate(
    folder, tmp_path, capsys
):
    recipe = folder_recipe(tmp_path, folder)
    (tmp_path / "driver.py").write_text(DRIVER)
    out = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1"]
    torchrun += ["--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    torchrun += ["--master_port", str(_free_port())]
    proc = subprocess.run(
        [*torchrun, str(tmp_path / "driver.py"), str(recipe), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"seen-rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["steps"] == 105 // 16 for r in ranks)
    shard0, shard1 = (set(r["seen"]) for r in ranks)
    assert len(shard0) == len(shard1) == 105 and not shard0 & shard1
    history = json.loads((out / "run.json").read_text())["history"]
    assert history[-1]["epoch"] == 1 and 0 <= history[-1]["val_top1_largest"] <= 100
    # the finished run evaluates from its directory, streaming its test images
    capsys.readouterr()
    assert main(["eval", "--run", str(out), "--arch", "largest", "--split", "test", "--json"]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["top1"] <= 100
