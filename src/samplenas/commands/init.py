"""``samplenas init``: a space and a recipe sized to a user's image folder and this machine.

Training on one's own images needs a space whose channels and classes match the data and
a recipe naming the folder; writing them by hand means reading the source. ``init`` looks
at the folder (classes, channels, typical size, image count) and writes both, small enough
to train in minutes on this machine's cores, so ``samplenas train --config D/recipe.yaml``
runs as is.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from samplenas.errors import UserError
from samplenas.io import atomic_write_text

MAX_IMAGE_SIZE = 32  # px the recipe decodes to: larger images cost minutes per epoch here
MFLOPS_PER_CORE = 5.0  # the largest net's default budget per CPU core
TARGET_SECONDS = 180.0  # what the written recipe aims to train in
# a sandwich step (largest + one sampled + smallest) on 2 cores costs about
# STEP_SECONDS + images x MFLOPs of the largest / MFLOPS_IMAGES_PER_SECOND (measured
# here: 0.3-1 s a step of 32 32x32 images on init's 3-MFLOPs space while other jobs shared
# the cores; the largest of attentive-fashion, 37.6 MFLOPs, trains at ~400 images/s alone)
STEP_SECONDS = 0.6
MFLOPS_IMAGES_PER_SECOND = 10_000.0
SAMPLE_IMAGES = 64  # images opened to find channels and the typical size
WIDTH_MULTIPLIERS = (1.0, 0.75, 0.5, 0.375, 0.25)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="write a space and a recipe sized to an image folder (train/<class>/...)",
    )
    p.add_argument(
        "--data",
        required=True,
        help="image folder: train/<class>/* (or <class>/*), optional val/, test/",
    )
    p.add_argument("--out", required=True, help="folder to write space.yaml and recipe.yaml into")
    p.add_argument(
        "--budget-mflops",
        type=float,
        help="cap on the largest network's MFLOPs (default: "
        f"{MFLOPS_PER_CORE:g} per CPU core, small enough to train in minutes)",
    )
    p.add_argument("--force", action="store_true", help="overwrite files in an existing --out")
    p.set_defaults(func=cmd_init)


@dataclass
class FolderFacts:
    """What ``init`` learns from an image folder."""

    root: Path
    classes: list[str]
    channels: int  # 1 when every sampled image is grey, else 3
    typical_size: int  # median shorter side of the sampled images, px
    train_images: int  # images training and validation are drawn from
    test_images: int  # the test split's (a held-out share of train/ without test/)
    has_test: bool


def inspect_folder(root: Path) -> FolderFacts:
    """Classes, channels, typical size and counts, by the rules training lists them with
    (``train/<class>/`` or, without ``train/``, ``<class>/`` folders in ``root``)."""
    from samplenas.data.datasets import list_image_folder

    listing = list_image_folder(root, 1, 0)
    files = np.concatenate([listing.train[0], listing.val[0]])
    picks = files[np.linspace(0, len(files) - 1, min(SAMPLE_IMAGES, len(files))).astype(int)]
    grey, sides = True, []
    for path in picks:
        grey_one, side = _look(Path(path))
        grey &= grey_one
        sides.append(side)
    return FolderFacts(
        root=root,
        classes=list(listing.classes),
        channels=1 if grey else 3,
        typical_size=int(np.median(sides)),
        train_images=len(files),
        test_images=len(listing.test[0]),
        has_test=(root / "test").is_dir(),
    )


def _look(path: Path) -> tuple[bool, int]:
    """Whether an image is grey (all channels equal) and its shorter side."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"cannot read image '{path}' ({exc.__class__.__name__})") from exc
    grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    return grey, min(rgb.shape[:2])


def _width(w: int, multiplier: float) -> int:
    return max(4, int(round(w * multiplier / 4)) * 4)


def _widths(choices: tuple[int, ...], multiplier: float) -> list[int]:
    return sorted({_width(w, multiplier) for w in choices})


def space_declaration(facts: FolderFacts, image_size: int, multiplier: float) -> dict[str, Any]:
    """A MobileNet-style space for ``image_size`` inputs, widths scaled by ``multiplier``."""
    low = max(8, int(math.ceil(image_size * 0.7 / 4)) * 4)
    resolution = sorted({image_size, *range(low, image_size, 4)})
    stages = [
        ("mb1", (8, 16), [1, 2], [3, 5], [1], 1, False),
        ("mb2", (16, 24), [1, 2], [3, 5], [3, 4], 2, False),
        ("mb3", (24, 32), [1, 2], [3, 5], [3, 4], 2, True),
        ("mb4", (40, 48), [1, 2], [3, 5], [4, 6], 1, True),
    ]
    return {
        "kind": "mbconv",
        "description": f"written by 'samplenas init' for {facts.root}",
        "in_channels": facts.channels,
        "num_classes": len(facts.classes),
        "resolution": resolution,
        "activation": "swish",
        "resize_mode": "bilinear",
        "stem": {
            "width": _widths((8, 16), multiplier),
            "kernel_size": 3,
            "stride": 2 if image_size >= 24 else 1,
        },
        "stages": [
            {
                "name": name,
                "width": _widths(width, multiplier),
                "depth": depth,
                "kernel_size": kernel,
                "expand_ratio": expand,
                "stride": stride,
                "se": se,
            }
            for name, width, depth, kernel, expand, stride, se in stages
        ],
        "head": {"width": _widths((64, 96), multiplier), "expand": 4},
    }


def sized_space(facts: FolderFacts, image_size: int, budget: float):
    """The widest declaration whose largest network stays within ``budget`` MFLOPs."""
    from samplenas.space import MBConvConfig, MBConvSpace

    smallest_largest = math.inf
    for multiplier in WIDTH_MULTIPLIERS:
        decl = space_declaration(facts, image_size, multiplier)
        space = MBConvSpace(MBConvConfig.from_dict(decl, "space"))
        largest = space.cost(space.largest()).mflops
        if largest <= budget:
            return decl, space
        smallest_largest = min(smallest_largest, largest)
    raise UserError(
        f"--budget-mflops {budget:g} is below the smallest space init writes for "
        f"{image_size}x{image_size} images ({smallest_largest:.2f} MFLOPs at its largest); "
        "raise it"
    )


def recipe(facts: FolderFacts, space_path: Path, image_size: int, largest_mflops: float):
    """A recipe that trains on the folder in about ``TARGET_SECONDS`` on this machine."""
    n = facts.train_images
    val_size = max(1, min(n // 10, 1000))
    train = n - val_size
    batch = 64
    while batch > 8 and train < 4 * batch:
        batch //= 2
    cores = os.cpu_count() or 1
    step = (STEP_SECONDS + batch * largest_mflops / MFLOPS_IMAGES_PER_SECOND) * 2 / cores
    epoch_seconds = max(1, train // batch) * step
    epochs = int(min(30, max(2, round(TARGET_SECONDS / epoch_seconds))))
    minutes = epochs * epoch_seconds / 60
    cfg = {
        "space": str(space_path),
        "seed": 0,
        "data": {
            "dataset": "folder",
            "data_dir": str(facts.root),
            "image_size": image_size,
            "grayscale": facts.channels == 1,
            "val_size": val_size,
            "augment": True,
        },
        "train": {
            "epochs": epochs,
            "batch_size": batch,
            "lr": 0.4,
            "lr_reference_batch": 256,
            "warmup_epochs": 1.0 if epochs >= 5 else 0.5,
            "weight_decay": 5.0e-5,
            "label_smoothing": 0.1,
            "dropout": 0.1,
            "drop_path": 0.0,
            "num_random": 1,
            "distill": True,
            "distill_warmup_epochs": 1.0,
            "channels_last": True,
        },
        "sampler": {"name": "uniform"},
        "calibration": {"batches": 10, "batch_size": min(128, train)},
        "checkpoint": {"every_steps": 50},
    }
    return cfg, minutes


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(
            f"--out '{out}' already holds files; choose an empty or new folder, or pass --force "
            "to overwrite its space.yaml and recipe.yaml"
        )


def _dump(header: list[str], data: dict[str, Any], flow: bool | None = False) -> str:
    lines = "".join(f"# {h}\n" for h in header)
    return lines + yaml.safe_dump(data, sort_keys=False, default_flow_style=flow)


def cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.data).resolve()
    out = Path(args.out)
    _check_out(out, args.force)
    if not root.is_dir():
        raise UserError(f"--data '{args.data}' is not a folder")
    if args.budget_mflops is not None and not args.budget_mflops > 0:
        raise UserError(f"--budget-mflops must be positive, not {args.budget_mflops:g}")
    facts = inspect_folder(root)
    image_size = max(8, min(MAX_IMAGE_SIZE, facts.typical_size))
    budget = args.budget_mflops or MFLOPS_PER_CORE * (os.cpu_count() or 1)
    decl, space = sized_space(facts, image_size, budget)
    lo, hi = space.cost(space.smallest()), space.cost(space.largest())
    space_path = (out / "space.yaml").resolve()
    cfg, minutes = recipe(facts, space_path, image_size, hi.mflops)
    held = (
        "test/ is the test set"
        if facts.has_test
        else f"no test/: {facts.test_images} images of the training ones are the test set"
    )
    found = (
        f"{len(facts.classes)} classes ({', '.join(facts.classes)}), "
        f"{facts.train_images + facts.test_images} images, {facts.channels} channel(s), "
        f"typical size {facts.typical_size} px"
    )
    atomic_write_text(
        space_path,
        _dump(
            [
                f"Written by 'samplenas init --data {root}': {found}.",
                f"{space.size():.3g} architectures, {lo.mflops:.2f}-{hi.mflops:.2f} MFLOPs "
                f"(budget {budget:g}). in_channels and num_classes must match the data.",
            ],
            {"name": root.name, **decl},
            flow=None,  # lists of choices on one line
        ),
    )
    atomic_write_text(
        out / "recipe.yaml",
        _dump(
            [
                f"Written by 'samplenas init' for {root}: {found}; {held}.",
                f"Images are resized to {image_size}x{image_size}; about {minutes:.1f} min "
                f"of training on this machine's {os.cpu_count() or 1} cores (an estimate; "
                "train prints the measured one).",
            ],
            cfg,
        ),
    )
    print(f"found {found}; {held}")
    print(
        f"wrote {space_path} ({space.size():.3g} architectures, "
        f"{lo.mflops:.2f}-{hi.mflops:.2f} MFLOPs) and {out / 'recipe.yaml'} "
        f"({cfg['train']['epochs']} epochs, about {minutes:.1f} min here)"
    )
    print(f"train with: samplenas train --config {out / 'recipe.yaml'}")
    return 0
