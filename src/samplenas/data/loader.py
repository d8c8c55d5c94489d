"""An in-memory, seeded, resumable, shardable batch iterator with tensor augmentation.

The order of epoch e is a permutation seeded by (seed, e), so a run resumed at
(epoch, batch) sees exactly the batches an uninterrupted run would. Under torchrun each
rank takes its own shard of every epoch. Augmentation draws from a torch.Generator whose
state is checkpointed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F

from samplenas.data.datasets import DataSplits, Split

if TYPE_CHECKING:
    from samplenas.data.stream import StreamingSplits


def normalize(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    x = images.float().div_(255.0)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x - m) / s


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Pad-and-crop by a random shift per image, and a random horizontal flip."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).view(n, 1, 1, w)
    if flip:
        mirrored = torch.rand(n, generator=gen) < 0.5
        cols = torch.where(mirrored.view(n, 1, 1, 1), cols.flip(-1), cols)
    idx_n = torch.arange(n).view(n, 1, 1, 1)
    idx_c = torch.arange(x.shape[1]).view(1, -1, 1, 1)
    return padded[idx_n, idx_c, rows, cols]


class SplitBatches:
    """What every loader keeps of its split and options, and how many batches an epoch has
    (``len(split) // world_size`` images a rank; the tail dropped, or a short last batch).

    Subclasses build their own machinery in ``_setup``, after these fields are set.
    """

    def __init__(
        self,
        data: DataSplits | StreamingSplits,
        split: str = "train",
        batch_size: int = 128,
        shuffle: bool = True,
        augment: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        channels_last: bool = False,
    ) -> None:
        self.data = data
        self.split = data.split(split)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.drop_last, self.channels_last = drop_last, channels_last
        self._setup()

    def _setup(self) -> None:
        """Per-loader state built from the fields above."""

    def batches_per_epoch(self) -> int:
        n = len(self.split) // self.world_size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        return self.batches_per_epoch()


class BatchLoader(SplitBatches):
    """Batches of one split: normalised float images, optional augmentation, resumable."""

    data: DataSplits
    split: Split

    def _setup(self) -> None:
        self.augment = self.augment and self.data.augment != "none"
        self.gen = torch.Generator().manual_seed(self.seed * 1000 + 17 + self.rank)

    def order(self, epoch: int) -> torch.Tensor:
        n = len(self.split)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            perm = torch.randperm(n, generator=g)
        else:
            perm = torch.arange(n)
        per_rank = n // self.world_size
        return perm[self.rank * per_rank : (self.rank + 1) * per_rank]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``epoch`` from batch index ``start`` on."""
        idx = self.order(epoch)
        for b in range(start, self.batches_per_epoch()):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.make_batch(sel)

    def make_batch(self, sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = normalize(self.split.images[sel], self.data.mean, self.data.std)
        if self.augment:
            pad = max(1, x.shape[-1] // 14)
            x = random_crop_flip(x, pad, self.data.augment == "crop-flip", self.gen)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.split.labels[sel]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])


class Loader(Protocol):
    """What the trainer, calibration and evaluation use of a loader."""

    split: Sized  # the images it reads (their count goes into evaluation fingerprints)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def batches_per_epoch(self) -> int: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def make_loader(
    data: DataSplits | StreamingSplits, split: str, batch_size: int, **options: Any
) -> Loader:
    """``BatchLoader`` for data in memory, ``StreamLoader`` for a streamed image folder;
    ``options`` are ``BatchLoader``'s keyword arguments, which both take."""
    from samplenas.data.stream import StreamingSplits, StreamLoader

    kind = StreamLoader if isinstance(data, StreamingSplits) else BatchLoader
    return kind(data, split, batch_size, **options)
