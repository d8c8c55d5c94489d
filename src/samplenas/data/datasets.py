"""Load a dataset into memory as uint8 image tensors and split it, seeded.

The official test set (where a dataset has one) is held out for final reports only; the
training set is split into ``train`` and ``val`` (the search-validation split used for BN
calibration and for every selection decision).
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from samplenas.errors import UserError

if TYPE_CHECKING:
    from samplenas.data.stream import StreamingSplits

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# label order of Fashion-MNIST and of scikit-learn digits
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGITS_CLASSES = tuple(str(i) for i in range(10))


@dataclass
class Split:
    """Images as uint8 [N, C, H, W] and int64 labels [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> Split:
        """The first ``n`` images (quick runs, search on part of the validation split)."""
        return Split(self.images[:n], self.labels[:n])


@dataclass
class DataSplits:
    """A dataset decoded into memory, for ``BatchLoader``."""

    eval_batch_size = 500  # images per evaluation batch (not a field)

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str  # "crop-flip", "crop" or "none"
    classes: tuple[str, ...] = ()  # class names in label order

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise UserError(f"unknown split '{name}'; use train, val or test")
        return getattr(self, name)


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the MNIST family's format."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise UserError(f"'{path}' is not an IDX file of unsigned bytes")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise UserError(f"'{path}' is truncated")
    return body.reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise UserError(
        f"Fashion-MNIST file '{stem}' is missing in '{directory}': install it with "
        f"'sudo apt-get install -y dataset-fashion-mnist' or pass --data-dir DIR "
        f"holding the IDX files"
    )


def looks_like_image_folder(directory: Path) -> bool:
    """Whether ``directory`` holds class folders of images (itself or under ``train/``)."""
    root = directory / "train" if (directory / "train").is_dir() else directory
    for sub in root.iterdir():
        if sub.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in sub.iterdir()):
            return True
    return False


def _split_train_val(images: np.ndarray, labels: np.ndarray, val_size: int, seed: int):
    if not 0 < val_size < len(labels):
        raise UserError(f"data.val_size must be between 1 and {len(labels) - 1}, got {val_size}")
    perm = np.random.default_rng(seed).permutation(len(labels))
    val, train = perm[:val_size], perm[val_size:]
    return (images[train], labels[train]), (images[val], labels[val])


def _as_split(images: np.ndarray, labels: np.ndarray) -> Split:
    if images.ndim == 3:
        images = images[:, None]
    return Split(
        torch.from_numpy(np.array(images, copy=True)), torch.from_numpy(labels.astype(np.int64))
    )


def load_fashion_mnist(data_dir: str | Path | None, val_size: int, seed: int) -> DataSplits:
    directory = Path(data_dir) if data_dir else FASHION_DIR
    if not directory.is_dir():
        raise UserError(
            f"Fashion-MNIST not found at '{directory}': install it with "
            f"'sudo apt-get install -y dataset-fashion-mnist' or pass --data-dir DIR "
            f"holding the IDX files"
        )
    if looks_like_image_folder(directory):
        raise UserError(
            f"'{directory}' is a folder of images, but the recipe's data.dataset is "
            "fashion-mnist (IDX files); set data.dataset: folder and data.data_dir in the "
            "recipe (or --set data.dataset=folder), with a space matching its channels and "
            f"classes: 'samplenas init --data {directory} --out DIR' writes both"
        )
    arrays = {k: _read_idx(_find_idx(directory, v)) for k, v in FASHION_FILES.items()}
    (tx, ty), (vx, vy) = _split_train_val(
        arrays["train_images"], arrays["train_labels"], val_size, seed
    )
    return DataSplits(
        "fashion-mnist",
        _as_split(tx, ty),
        _as_split(vx, vy),
        _as_split(arrays["test_images"], arrays["test_labels"]),
        10,
        (0.2860,),
        (0.3530,),
        "crop-flip",
        FASHION_CLASSES,
    )


def load_digits_dataset(val_size: int, seed: int) -> DataSplits:
    """scikit-learn's 8x8 digits (1,797 images): 20% test, then ``val_size`` validation."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target
    perm = np.random.default_rng(1234).permutation(len(labels))  # fixed test split
    n_test = len(labels) // 5
    test, rest = perm[:n_test], perm[n_test:]
    (tx, ty), (vx, vy) = _split_train_val(images[rest], labels[rest], val_size, seed)
    return DataSplits(
        "digits",
        _as_split(tx, ty),
        _as_split(vx, vy),
        _as_split(images[test], labels[test]),
        10,
        (0.3,),
        (0.36,),
        "crop",
        DIGITS_CLASSES,
    )


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def read_image(path: Path, image_size: int, grayscale: bool) -> np.ndarray:
    """One image as uint8 [C, H, W], resized; an unreadable file is the user's to fix."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if grayscale else "RGB")
            img = img.resize((image_size, image_size), Image.BILINEAR)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"cannot read image '{path}' ({exc.__class__.__name__})") from exc
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if grayscale else arr.transpose(2, 0, 1)


@dataclass
class FolderListing:
    """An image folder's files and labels, split as ``load_image_folder`` splits them.

    The in-RAM and the streaming loaders both start from this, so the two see the same
    train / val / test membership for the same folder and seed.
    """

    classes: list[str]
    train: tuple[np.ndarray, np.ndarray]  # file paths (object array), labels
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def _class_files(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    paths, labels = [], []
    for ci, cls in enumerate(classes):
        if not (folder / cls).is_dir():
            raise UserError(f"'{folder}' has no folder for class '{cls}'")
        files = [f for f in sorted((folder / cls).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise UserError(f"class folder '{folder / cls}' holds no images")
        paths.extend(files)
        labels.extend([ci] * len(files))
    return np.array(paths, dtype=object), np.array(labels, dtype=np.int64)


def list_image_folder(root: str | Path, val_size: int, seed: int) -> FolderListing:
    """Class-per-folder images (``root/<class>/*.png``); ``root/test/<class>`` is the test set.

    Without a ``test`` folder a fixed 10% is held out as the test set.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder '{root}' does not exist")
    train_root = root / "train" if (root / "train").is_dir() else root
    classes = sorted(p.name for p in train_root.iterdir() if p.is_dir() and p.name != "test")
    if len(classes) < 2:
        raise UserError(f"'{train_root}' must hold one folder per class (found {len(classes)})")
    paths, labels = _class_files(train_root, classes)
    if (root / "test").is_dir():
        test = _class_files(root / "test", classes)
    else:  # hold out a fixed 10% as the test set
        perm = np.random.default_rng(1234).permutation(len(labels))
        cut = max(1, len(labels) // 10)
        test = (paths[perm[:cut]], labels[perm[:cut]])
        paths, labels = paths[perm[cut:]], labels[perm[cut:]]
    train, val = _split_train_val(paths, labels, val_size, seed)
    return FolderListing(classes, train, val, test)


def load_image_folder(
    root: str | Path, image_size: int, val_size: int, seed: int, grayscale: bool = False
) -> DataSplits:
    """An image folder (see ``list_image_folder``) decoded into memory at ``image_size``."""
    listing = list_image_folder(root, val_size, seed)

    def read(part: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return np.stack([read_image(f, image_size, grayscale) for f in part[0]])

    train, val, test = read(listing.train), read(listing.val), read(listing.test)
    seen = np.concatenate([train, val])  # statistics of the images trained on
    mean = tuple(float(seen[:, c].mean() / 255) for c in range(seen.shape[1]))
    std = tuple(float(seen[:, c].std() / 255 + 1e-3) for c in range(seen.shape[1]))
    return DataSplits(
        Path(root).name,
        _as_split(train, listing.train[1]),
        _as_split(val, listing.val[1]),
        _as_split(test, listing.test[1]),
        len(listing.classes),
        mean,
        std,
        "crop-flip",
        tuple(listing.classes),
    )


def load_dataset(
    name: str,
    data_dir: str | None = None,
    val_size: int = 5000,
    seed: int = 0,
    image_size: int = 32,
    grayscale: bool = False,
    streaming: bool = False,
    workers: int = 4,
) -> DataSplits | StreamingSplits:
    """A dataset by name: ``fashion-mnist``, ``digits`` or ``folder`` (needs ``data_dir``).

    ``streaming`` (folders only) lists the files and leaves decoding to ``StreamLoader``'s
    ``workers``, instead of decoding every image into memory now.
    """
    if streaming and name != "folder":
        raise UserError(f"data.streaming applies to image folders only, not to '{name}'")
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir, val_size, seed)
    if name == "digits":
        if data_dir and not Path(data_dir).is_dir():  # digits ignores it, a typo still counts
            raise UserError(f"--data-dir '{data_dir}' is not a folder")
        return load_digits_dataset(val_size, seed)
    if name == "folder":
        if not data_dir:
            raise UserError("data.dataset 'folder' needs data.data_dir (or --data-dir)")
        if streaming:
            from samplenas.data.stream import load_streaming_folder

            return load_streaming_folder(data_dir, image_size, val_size, seed, grayscale, workers)
        return load_image_folder(data_dir, image_size, val_size, seed, grayscale)
    raise UserError(f"unknown dataset '{name}'; use fashion-mnist, digits or folder")
