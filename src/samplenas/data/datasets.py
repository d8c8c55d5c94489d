"""Load a dataset into memory as uint8 image tensors and split it, seeded.

The official test set (where a dataset has one) is held out for final reports only; the
training set is split into ``train`` and ``val`` (the search-validation split used for BN
calibration and for every selection decision).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from samplenas.data.fingerprint import DataFiles, files_of
from samplenas.errors import UserError
from samplenas.io import DAMAGED_FILE_ERRORS, atomic_write

if TYPE_CHECKING:
    from samplenas.data.stream import StreamingSplits

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
# told what a dataset reads before it is decoded; False: the files are not (yet) the run's
# own, so no decoded copy of them is kept in the run directory
OnFiles = Callable[[DataFiles], bool | None]


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
    classes: list[str] = field(default_factory=list)  # names in label order
    resize: str = "used as stored"  # how images of other sizes are made one size
    files: DataFiles | None = None  # what it was read from (runs record it)
    notes: list[str] = field(default_factory=list)  # where the splits came from

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


def load_fashion_mnist(
    data_dir: str | Path | None, val_size: int, seed: int, on_files: OnFiles | None = None
) -> DataSplits:
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
    paths = {k: _find_idx(directory, v) for k, v in FASHION_FILES.items()}
    files = files_of(directory, paths.values())
    if on_files:
        on_files(files)
    arrays = {k: _read_idx(path) for k, path in paths.items()}
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
        files=files,
    )


def load_digits_dataset(val_size: int, seed: int, on_files: OnFiles | None = None) -> DataSplits:
    """scikit-learn's 8x8 digits (1,797 images): 20% test, then ``val_size`` validation."""
    import importlib.resources

    from sklearn.datasets import load_digits

    source = Path(str(importlib.resources.files("sklearn.datasets.data") / "digits.csv.gz"))
    files = files_of(source.parent, [source])
    if on_files:
        on_files(files)
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
        [str(d) for d in range(10)],
        "values 0-16 scaled to 0-255",
        files,
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


SPLIT_FOLDERS = ("train", "val", "test")
TEST_FRACTION = 10  # without test/: every 10th image (a fixed draw) is the test split


def resize_rule(image_size: int, grayscale: bool) -> str:
    """How ``read_image`` makes a folder's images one size (recorded in each run)."""
    mode = "grayscale" if grayscale else "RGB"
    return f"converted to {mode}, resized to {image_size}x{image_size} (bilinear, aspect not kept)"


def _visible(path: Path) -> bool:
    """Dot-files and dot-folders (``.ipynb_checkpoints``, ``.DS_Store``) are not data."""
    return not path.name.startswith(".")


@dataclass
class FolderListing:
    """An image folder's files and labels, split as ``load_image_folder`` splits them.

    The in-RAM and the streaming loaders both start from this, so the two see the same
    train / val / test membership for the same folder and seed. ``notes`` say where the
    validation and test splits came from, for the run to tell the user.
    """

    root: Path
    classes: list[str]
    train: tuple[np.ndarray, np.ndarray]  # file paths (object array), labels
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    notes: list[str]

    def files(self) -> list[Path]:
        """Every image the splits read."""
        return [Path(p) for part in (self.train, self.val, self.test) for p in part[0]]


def _class_files(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    paths, labels = [], []
    for ci, cls in enumerate(classes):
        if not (folder / cls).is_dir():
            raise UserError(f"'{folder}' has no folder for class '{cls}'")
        files = [
            f
            for f in sorted((folder / cls).iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES and _visible(f)
        ]
        if not files:
            raise UserError(f"class folder '{folder / cls}' holds no images")
        paths.extend(files)
        labels.extend([ci] * len(files))
    return np.array(paths, dtype=object), np.array(labels, dtype=np.int64)


def _held_out(folder: Path, classes: list[str], train_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``val/`` or ``test/``: their classes must be classes of ``train/``."""
    extra = sorted(
        p.name for p in folder.iterdir() if p.is_dir() and _visible(p) and p.name not in classes
    )
    if extra:
        raise UserError(
            f"class folder(s) {', '.join(extra)} in '{folder}' are not classes of "
            f"'{train_root}' (a model cannot learn a class it has no training images of); "
            f"add training images for them or remove them"
        )
    return _class_files(folder, classes)


def list_image_folder(root: str | Path, val_size: int, seed: int) -> FolderListing:
    """Class-per-folder images: ``root/train/<class>/*.png`` (or ``root/<class>``), and
    optionally ``root/val/<class>`` and ``root/test/<class>``.

    Without ``val/`` the validation split is ``val_size`` training images drawn by
    ``seed``; without ``test/`` a fixed 10% of the training images is held out as the test
    set. Hidden files and folders are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder '{root}' does not exist")
    train_root = root / "train" if (root / "train").is_dir() else root
    classes = sorted(
        p.name
        for p in train_root.iterdir()
        if p.is_dir() and _visible(p) and (train_root != root or p.name not in SPLIT_FOLDERS)
    )
    if len(classes) < 2:
        raise UserError(f"'{train_root}' must hold one folder per class (found {len(classes)})")
    paths, labels = _class_files(train_root, classes)
    notes = []
    if (root / "test").is_dir():
        test = _held_out(root / "test", classes, train_root)
    else:  # hold out a fixed 10% as the test set
        perm = np.random.default_rng(1234).permutation(len(labels))
        cut = max(1, len(labels) // TEST_FRACTION)
        test = (paths[perm[:cut]], labels[perm[:cut]])
        paths, labels = paths[perm[cut:]], labels[perm[cut:]]
        notes.append(
            f"no test/ folder in '{root}': held out {cut} of the {cut + len(labels)} images "
            f"of '{train_root}' (a fixed 1 in {TEST_FRACTION}) as the test split"
        )
    if (root / "val").is_dir():
        val = _held_out(root / "val", classes, train_root)
        train = (paths, labels)
        notes.append(
            f"validation split: the {len(val[1])} images of '{root / 'val'}' "
            "(data.val_size is not used)"
        )
    else:
        train, val = _split_train_val(paths, labels, val_size, seed)
        notes.append(
            f"validation split: {val_size} of the training images (drawn by data.split_seed)"
        )
    return FolderListing(root, classes, train, val, test, notes)


def load_image_folder(
    root: str | Path,
    image_size: int,
    val_size: int,
    seed: int,
    grayscale: bool = False,
    cache_dir: Path | None = None,
    on_files: OnFiles | None = None,
) -> DataSplits:
    """An image folder (see ``list_image_folder``) decoded into memory at ``image_size``.

    With ``cache_dir`` (a run directory) the decoded arrays are kept there, keyed by the
    folder's files and the split, so eval, search and export do not decode it again
    (unless ``on_files`` says the files are not the run's).
    """
    listing = list_image_folder(root, val_size, seed)
    files = files_of(listing.root, listing.files())
    if on_files and on_files(files) is False:
        cache_dir = None
    key = json.dumps([files.sha256, image_size, grayscale, val_size, seed])
    cache = None
    if cache_dir is not None:
        name = hashlib.sha256(key.encode()).hexdigest()[:16]
        cache = Path(cache_dir) / f"{DECODED_PREFIX}{name}.npz"
    arrays = _read_decoded(cache) if cache is not None else None
    if arrays is None:
        arrays = _decode(listing, image_size, grayscale)
        if cache is not None:
            _write_decoded(cache, arrays)
    parts = [_as_split(arrays[f"{p}_x"], getattr(listing, p)[1]) for p in ("train", "val", "test")]
    return DataSplits(
        listing.root.name,
        *parts,
        len(listing.classes),
        tuple(float(m) for m in arrays["mean"]),
        tuple(float(s) for s in arrays["std"]),
        "crop-flip",
        listing.classes,
        resize_rule(image_size, grayscale),
        files,
        listing.notes,
    )


DECODED_PREFIX = "decoded-"  # a run's cache of its decoded folder: decoded-<key>.npz


def _decode(listing: FolderListing, image_size: int, grayscale: bool) -> dict[str, np.ndarray]:
    """Every image of the splits, and the mean and std of those trained on.

    A progress bar appears when decoding takes more than a few seconds (on a terminal).
    """
    from tqdm import tqdm

    total = sum(len(getattr(listing, p)[1]) for p in ("train", "val", "test"))
    bar = tqdm(total=total, delay=3, desc="decoding images", unit="img", disable=None)
    arrays = {}
    with bar:
        for part in ("train", "val", "test"):
            images = []
            for path in getattr(listing, part)[0]:
                images.append(read_image(path, image_size, grayscale))
                bar.update(1)
            arrays[f"{part}_x"] = np.stack(images)
    seen = np.concatenate([arrays["train_x"], arrays["val_x"]])  # the images trained on
    channels = range(seen.shape[1])
    arrays["mean"] = np.array([seen[:, c].mean() / 255 for c in channels])
    arrays["std"] = np.array([seen[:, c].std() / 255 + 1e-3 for c in channels])
    return arrays


def _read_decoded(path: Path) -> dict[str, np.ndarray] | None:
    """A cache written by ``_write_decoded``; None when missing or damaged (decode again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except DAMAGED_FILE_ERRORS:
        return None


def _write_decoded(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Written atomically; a cache of other files or another split is removed."""
    atomic_write(path, lambda f: np.savez(f, **arrays))
    for old in path.parent.glob(f"{DECODED_PREFIX}*.npz"):
        if old != path:
            old.unlink(missing_ok=True)


def load_dataset(
    name: str,
    data_dir: str | None = None,
    val_size: int = 5000,
    seed: int = 0,
    image_size: int = 32,
    grayscale: bool = False,
    streaming: bool = False,
    workers: int = 4,
    cache_dir: Path | None = None,
    on_files: OnFiles | None = None,
) -> DataSplits | StreamingSplits:
    """A dataset by name: ``fashion-mnist``, ``digits`` or ``folder`` (needs ``data_dir``).

    ``streaming`` (folders only) lists the files and leaves decoding to ``StreamLoader``'s
    ``workers``, instead of decoding every image into memory now. ``on_files`` is told
    which files the dataset reads before any is decoded (a run checks they are its own);
    ``cache_dir`` keeps a decoded folder (see ``load_image_folder``).
    """
    if streaming and name != "folder":
        raise UserError(f"data.streaming applies to image folders only, not to '{name}'")
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir, val_size, seed, on_files)
    if name == "digits":
        if data_dir and not Path(data_dir).is_dir():  # digits ignores it, a typo still counts
            raise UserError(f"--data-dir '{data_dir}' is not a folder")
        return load_digits_dataset(val_size, seed, on_files)
    if name == "folder":
        if not data_dir:
            raise UserError("data.dataset 'folder' needs data.data_dir (or --data-dir)")
        if streaming:
            from samplenas.data.stream import load_streaming_folder

            return load_streaming_folder(
                data_dir, image_size, val_size, seed, grayscale, workers, on_files
            )
        return load_image_folder(
            data_dir, image_size, val_size, seed, grayscale, cache_dir, on_files
        )
    raise UserError(f"unknown dataset '{name}'; use fashion-mnist, digits or folder")
