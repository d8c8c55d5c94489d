"""Image folders streamed from disk (``data.streaming: true``): ImageNet-size data.

``BatchLoader`` decodes a whole dataset into every process's memory, which a 1.3-million
image folder cannot afford; here each batch is decoded from its files by
``torch.utils.data.DataLoader`` workers. Training images get the ImageNet recipe's
augmentation: a random resized crop (scale 0.08-1, aspect 3/4-4/3), a horizontal flip and
RandAugment (2 operations at magnitude 9 of 30); evaluation and BN-calibration images are
resized to 8/7 of the size and centre-cropped. Under torchrun a ``DistributedSampler``
gives each rank a disjoint shard of every epoch.

Resume: an epoch's order is the ``DistributedSampler``'s (seeded by the run's seed and the
epoch) and every image's augmentation is drawn from a generator seeded by
(seed, epoch, image index), so a run resumed at (epoch, batch) skips the consumed batches
by index, without decoding them, and sees exactly the images and crops an uninterrupted
run would; the loader keeps no state of its own in the checkpoint. The transforms are
written with PIL here because torchvision's wheels on PyPI are CUDA builds that do not
import beside the CPU build of torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from samplenas.data.datasets import list_image_folder
from samplenas.data.loader import SplitBatches, normalize
from samplenas.errors import UserError

# the customary ImageNet statistics: measuring a folder's own would decode all of it
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GRAY_MEAN, GRAY_STD = (0.449,), (0.226,)
RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE = 2, 9  # the RandAugment paper's ImageNet setting
EVAL_RESIZE = 8 / 7  # resize to 256 for a 224 centre crop


@dataclass
class FileSplit:
    """Image files and their int64 labels; decoded only when a batch needs them."""

    paths: np.ndarray  # object array of Path
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> FileSplit:
        return FileSplit(self.paths[:n], self.labels[:n])


@dataclass
class StreamingSplits:
    """An image folder's splits as files, for ``StreamLoader`` (cf. ``DataSplits``)."""

    eval_batch_size = 100  # images per evaluation batch (not a field)

    name: str
    train: FileSplit
    val: FileSplit
    test: FileSplit
    num_classes: int
    image_size: int
    grayscale: bool
    workers: int  # DataLoader worker processes per rank
    classes: tuple[str, ...] = ()  # class names in label order

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def mean(self) -> tuple[float, ...]:
        return GRAY_MEAN if self.grayscale else IMAGENET_MEAN

    @property
    def std(self) -> tuple[float, ...]:
        return GRAY_STD if self.grayscale else IMAGENET_STD

    def split(self, name: str) -> FileSplit:
        if name not in ("train", "val", "test"):
            raise UserError(f"unknown split '{name}'; use train, val or test")
        return getattr(self, name)


def load_streaming_folder(
    root: str | Path,
    image_size: int,
    val_size: int,
    seed: int,
    grayscale: bool = False,
    workers: int = 4,
) -> StreamingSplits:
    """The splits of ``load_image_folder``, listed but not decoded."""
    listing = list_image_folder(root, val_size, seed)

    def files(part: tuple[np.ndarray, np.ndarray]) -> FileSplit:
        return FileSplit(part[0], torch.from_numpy(part[1]))

    return StreamingSplits(
        Path(root).name,
        files(listing.train),
        files(listing.val),
        files(listing.test),
        len(listing.classes),
        image_size,
        grayscale,
        workers,
        tuple(listing.classes),
    )


# -- transforms: PIL images in, PIL images out, randomness from a numpy Generator -------
def random_resized_crop(img: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """A random 8-100% of the area at aspect 3/4-4/3, resized to ``size`` x ``size``."""
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(0.08, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return img.resize((size, size), Image.BILINEAR, box=(x, y, x + cw, y + ch))
    side = min(w, h)  # rare fallback: the central square
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    return img.resize((size, size), Image.BILINEAR, box=box)


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` x 8/7, then the central ``size`` x ``size``."""
    w, h = img.size
    scale = round(size * EVAL_RESIZE) / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def _affine(img: Image.Image, coeffs: tuple[float, ...]) -> Image.Image:
    return img.transform(img.size, Image.AFFINE, coeffs, Image.BILINEAR)


# RandAugment's operations: (image, signed strength in [-1, 1]) -> image
_OPS: dict[str, Callable[[Image.Image, float], Image.Image]] = {
    "identity": lambda img, s: img,
    "autocontrast": lambda img, s: ImageOps.autocontrast(img),
    "equalize": lambda img, s: ImageOps.equalize(img),
    "rotate": lambda img, s: img.rotate(30 * s, Image.BILINEAR),
    "solarize": lambda img, s: ImageOps.solarize(img, int(256 - 256 * abs(s))),
    "posterize": lambda img, s: ImageOps.posterize(img, 8 - int(4 * abs(s))),
    "color": lambda img, s: ImageEnhance.Color(img).enhance(1 + 0.9 * s),
    "contrast": lambda img, s: ImageEnhance.Contrast(img).enhance(1 + 0.9 * s),
    "brightness": lambda img, s: ImageEnhance.Brightness(img).enhance(1 + 0.9 * s),
    "sharpness": lambda img, s: ImageEnhance.Sharpness(img).enhance(1 + 0.9 * s),
    "shear_x": lambda img, s: _affine(img, (1, 0.3 * s, 0, 0, 1, 0)),
    "shear_y": lambda img, s: _affine(img, (1, 0, 0, 0.3 * s, 1, 0)),
    "translate_x": lambda img, s: _affine(img, (1, 0, 0.45 * s * img.size[0], 0, 1, 0)),
    "translate_y": lambda img, s: _affine(img, (1, 0, 0, 0, 1, 0.45 * s * img.size[1])),
}


def rand_augment(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """RandAugment (Cubuk et al. 2020): ``RANDAUGMENT_OPS`` random operations, each at
    ``RANDAUGMENT_MAGNITUDE`` / 30 of its range, with a random sign."""
    names = list(_OPS)
    for _ in range(RANDAUGMENT_OPS):
        name = names[int(rng.integers(len(names)))]
        sign = 1.0 if rng.random() < 0.5 else -1.0
        img = _OPS[name](img, sign * RANDAUGMENT_MAGNITUDE / 30)
    return img


class _Images(Dataset):
    """Decodes one image per key; keys are (index, epoch), epoch None for no augmentation.

    A file that cannot be read comes back as a zero image with its message, so the main
    process raises the ``UserError`` (one sentence, no worker traceback).
    """

    def __init__(self, data: StreamingSplits, split: FileSplit, seed: int) -> None:
        self.split, self.seed = split, seed
        self.size, self.grayscale = data.image_size, data.grayscale

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int | None]) -> tuple[torch.Tensor, int, str]:
        index, epoch = key
        path = self.split.paths[index]
        label = int(self.split.labels[index])
        try:
            with Image.open(path) as f:
                img = f.convert("L" if self.grayscale else "RGB")
        except (UnidentifiedImageError, OSError) as exc:
            blank = torch.zeros(1 if self.grayscale else 3, self.size, self.size, dtype=torch.uint8)
            return blank, label, f"cannot read image '{path}' ({exc.__class__.__name__})"
        if epoch is None:
            img = resize_center_crop(img, self.size)
        else:
            rng = np.random.default_rng((self.seed, epoch, index))
            img = random_resized_crop(img, self.size, rng)
            if rng.random() < 0.5:
                img = ImageOps.mirror(img)
            img = rand_augment(img, rng)
        arr = np.asarray(img, dtype=np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return torch.from_numpy(arr.copy()), label, ""


class StreamLoader(SplitBatches):
    """``BatchLoader``'s interface over files: ``epoch(e, start)``, sharded and resumable."""

    data: StreamingSplits
    split: FileSplit

    def _setup(self) -> None:
        self.dataset = _Images(self.data, self.split, self.seed)
        # the same shard size as BatchLoader: len // world_size, the tail dropped
        self.sampler = DistributedSampler(
            self.dataset,
            self.world_size,
            self.rank,
            shuffle=self.shuffle,
            seed=self.seed,
            drop_last=True,
        )

    def order(self, epoch: int) -> torch.Tensor:
        """The indices this rank reads in ``epoch``."""
        self.sampler.set_epoch(epoch)
        return torch.tensor(list(self.sampler), dtype=torch.int64)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``epoch`` from batch index ``start`` on (earlier ones never decoded)."""
        indices = self.order(epoch)[start * self.batch_size :].tolist()
        keys = [(i, epoch if self.augment else None) for i in indices]
        if not keys:
            return
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=keys,
            num_workers=self.data.workers,
            drop_last=self.drop_last,
            # workers' seeds from a private generator: drawing them from the global one
            # would shift dropout and sampling after a resume (crops use their own seeds)
            generator=torch.Generator().manual_seed(self.seed),
        )
        for images, labels, errors in loader:
            for message in errors:
                if message:
                    raise UserError(message)
            x = normalize(images, self.data.mean, self.data.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)

    def state_dict(self) -> dict:
        return {}  # order and augmentation are functions of (seed, epoch, index)

    def load_state_dict(self, state: dict) -> None:
        pass
