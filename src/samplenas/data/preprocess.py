"""How a run turns an image file into the tensor its models see, recorded and replayed.

A run records this rule (``preprocessing``) in its ``data.json`` when it starts, and an
export repeats the run's record in its ``arch.json``; ``samplenas predict``
and the export's README apply it (``prepare_image``), so a model is never fed images
resized, scaled or normalised differently from the ones it was trained and scored on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from samplenas.data import Splits, StreamingSplits
from samplenas.errors import UserError

# resize rules: "squash" resizes both sides to the size (the aspect ratio is not kept);
# "center-crop" resizes the shorter side to size x 8/7 and keeps the central square
SQUASH, CENTER_CROP = "squash", "center-crop"


def preprocessing(data: Splits) -> dict[str, Any]:
    """The rule ``data`` was decoded by: colour mode, resize, scale, mean and std."""
    streamed = isinstance(data, StreamingSplits)
    size = int(data.image_size)
    return {
        "color": "L" if data.channels == 1 else "RGB",
        "channels": int(data.channels),
        "size": [size, size],
        "resize": CENTER_CROP if streamed else SQUASH,
        "interpolation": "bilinear",
        "scale": 1 / 255,
        "mean": [float(m) for m in data.mean],
        "std": [float(s) for s in data.std],
    }


def class_names(data: Splits) -> list[str]:
    """Class names in logit order (the dataset's; ``"0"``, ``"1"``, ... when it has none)."""
    names = list(getattr(data, "classes", ()) or ())
    return names if len(names) == data.num_classes else [str(i) for i in range(data.num_classes)]


def prepare_image(path: str | Path, rule: dict[str, Any]) -> np.ndarray:
    """One image file as float32 [C, H, W], decoded, resized and normalised by ``rule``."""
    from PIL import Image, UnidentifiedImageError

    from samplenas.data.stream import resize_center_crop

    size = int(rule["size"][-1])
    try:
        with Image.open(path) as img:
            img = img.convert(rule["color"])
            if rule["resize"] == CENTER_CROP:
                img = resize_center_crop(img, size)
            else:
                img = img.resize((size, size), Image.BILINEAR)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"cannot read image '{path}' ({exc.__class__.__name__})") from exc
    arr = np.asarray(img, dtype=np.float32) * float(rule["scale"])
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    mean = np.asarray(rule["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(rule["std"], dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((arr - mean) / std)
