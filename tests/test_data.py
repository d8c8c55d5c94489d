"""Datasets, splits and the resumable, shardable loader."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
import torch

from samplenas import UserError
from samplenas.data import BatchLoader, load_dataset
from samplenas.data.datasets import FASHION_DIR, DataSplits, Split


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture()
def fake_fashion(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (200, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 200))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (50, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 50))
    return tmp_path


def test_fashion_idx_files_and_seeded_split(fake_fashion):
    a = load_dataset("fashion-mnist", str(fake_fashion), val_size=40, seed=1)
    b = load_dataset("fashion-mnist", str(fake_fashion), val_size=40, seed=1)
    c = load_dataset("fashion-mnist", str(fake_fashion), val_size=40, seed=2)
    assert (len(a.train), len(a.val), len(a.test)) == (160, 40, 50)
    assert a.train.images.shape[1:] == (1, 28, 28) and a.train.images.dtype == torch.uint8
    assert torch.equal(a.val.labels, b.val.labels)
    assert not torch.equal(a.val.images, c.val.images)


# `make test` installs the data first (scripts/ensure-data.sh); CI must not skip this test
@pytest.mark.skipif(
    not FASHION_DIR.is_dir() and os.environ.get("CI") != "true",
    reason="Fashion-MNIST not installed (make data)",
)
def test_real_fashion_mnist_holds_out_the_official_test_set():
    d = load_dataset("fashion-mnist", val_size=5000, seed=0)
    assert (len(d.train), len(d.val), len(d.test)) == (55_000, 5_000, 10_000)
    assert d.num_classes == 10


def test_missing_dataset_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="apt-get install -y dataset-fashion-mnist.*--data-dir"):
        load_dataset("fashion-mnist", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("cifar")
    with pytest.raises(UserError, match="is not a folder"):  # digits needs no folder, but a typo
        load_dataset("digits", str(tmp_path / "nowhere"))


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(
                tmp_path / cls / f"{i}.png"
            )
    d = load_dataset("folder", str(tmp_path), val_size=4, image_size=8)
    assert d.num_classes == 2 and d.channels == 3 and d.image_size == 8
    assert len(d.train) + len(d.val) + len(d.test) == 20 and len(d.test) == 2


def test_image_folder_faults_are_named(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (6, 6), (i, 0, 0)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "broken.png").write_text("not an image")
    with pytest.raises(UserError, match=r"cannot read image '.*broken\.png'"):
        load_dataset("folder", str(tmp_path), val_size=2, image_size=4)
    (tmp_path / "dog" / "broken.png").unlink()
    (tmp_path / "bird").mkdir()
    with pytest.raises(UserError, match=r"class folder '.*bird' holds no images"):
        load_dataset("folder", str(tmp_path), val_size=2, image_size=4)
    (tmp_path / "bird").rmdir()
    (tmp_path / "test" / "cat").mkdir(parents=True)
    Image.new("RGB", (6, 6)).save(tmp_path / "test" / "cat" / "0.png")
    with pytest.raises(UserError, match=r"has no folder for class 'dog'"):
        load_dataset("folder", str(tmp_path), val_size=2, image_size=4)


def test_loader_order_is_seeded_resumable_and_sharded():
    d = load_dataset("digits", val_size=100, seed=0)
    full = BatchLoader(d, batch_size=32, seed=3)
    batches = list(full.epoch(1))
    assert len(batches) == len(d.train) // 32
    again = BatchLoader(d, batch_size=32, seed=3)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again.epoch(1), strict=True))
    # resuming at batch 5 with the saved augmentation state reproduces the same batches
    first = BatchLoader(d, batch_size=32, seed=3)
    it = first.epoch(0)
    for _ in range(5):
        next(it)
    state = first.state_dict()
    rest = list(it)
    resumed = BatchLoader(d, batch_size=32, seed=3)
    resumed.load_state_dict(state)
    for (xa, ya), (xb, yb) in zip(rest, resumed.epoch(0, start=5), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # two ranks see disjoint halves of the epoch
    r0 = BatchLoader(d, batch_size=16, seed=3, rank=0, world_size=2).order(0)
    r1 = BatchLoader(d, batch_size=16, seed=3, rank=1, world_size=2).order(0)
    assert len(set(r0.tolist()) & set(r1.tolist())) == 0


def bar_images(augment: str, n: int = 400) -> DataSplits:
    """16x16 images, bright in columns 2-4 only: a flip moves the bar to columns 11-13."""
    images = torch.zeros(n, 1, 16, 16, dtype=torch.uint8)
    images[..., 2:5] = 255
    split = Split(images, torch.zeros(n, dtype=torch.long))
    return DataSplits("bars", split, split, split, 10, (0.0,), (1.0,), augment)


def test_augmentation_shifts_and_flips_but_keeps_statistics():
    def bar_columns(augment: str) -> torch.Tensor:
        x, _ = next(BatchLoader(bar_images(augment), batch_size=400, shuffle=False).epoch(0))
        assert x.shape == (400, 1, 16, 16)
        column_mass = x[:, 0].sum(1)  # [N, 16]
        return (column_mass * torch.arange(16.0)).sum(1) / column_mass.sum(1)  # bar centre

    plain = bar_columns("none")
    assert torch.all(plain == 3)
    crop = bar_columns("crop")  # shifted by up to one pixel (pad 1), never mirrored
    assert set(crop.round().tolist()) == {2.0, 3.0, 4.0}
    flipped = bar_columns("crop-flip") > 7.5
    assert 0.4 < flipped.float().mean() < 0.6  # half of them mirrored (400 draws)
    # the shift still applies to the mirrored ones: the bar lands on columns 11-13, centred 12 +/- 1
    centres = set(bar_columns("crop-flip")[flipped].round().tolist())
    assert centres == {11.0, 12.0, 13.0}
    # augmentation moves pixels, it does not rescale them
    x0, _ = next(BatchLoader(bar_images("none"), batch_size=400, shuffle=False).epoch(0))
    x1, _ = next(BatchLoader(bar_images("crop-flip"), batch_size=400, shuffle=False).epoch(0))
    assert abs(float(x0.mean()) - float(x1.mean())) < 0.05
