"""``samplenas predict``: the top classes of image files under an exported model.

The export's ``arch.json`` says how images were decoded, resized and normalised for
training and which class each logit is; predict applies exactly that, so a user can try
the model they just found without writing any code.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from samplenas.commands.common import positive_int
from samplenas.errors import UserError
from samplenas.io import print_json

NEEDED = ("classes", "color", "size", "resize", "scale", "mean", "std")
MODEL_FILES = ("model.pt2", "model.torchscript.pt")  # either loads without samplenas


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top classes of images under an exported model")
    p.add_argument("--model", required=True, help="an export folder ('samplenas export --out')")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--top", type=positive_int, default=3, help="classes shown per image (3)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_predict)


def read_export(folder: Path) -> dict[str, Any]:
    """An export's arch.json, checked to say everything predicting needs."""
    path = folder / "arch.json"
    if not path.is_file():
        raise UserError(f"'{folder}' is not an export folder (no arch.json); see samplenas export")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"'{path}' is not valid JSON; export the model again") from exc
    missing = [k for k in NEEDED if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise UserError(
            f"'{path}' lacks {', '.join(missing)} (an export from an older samplenas); "
            "export the model again with 'samplenas export'"
        )
    return meta


def load_model(folder: Path):
    """The export's torch.export program as a module, or its TorchScript model."""
    import warnings

    import torch

    for name in MODEL_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if name.endswith(".pt2"):
            return torch.export.load(str(path)).module()
        with warnings.catch_warnings():  # deprecated in favour of torch.export, still fine
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    raise UserError(f"'{folder}' holds no model file ({' or '.join(MODEL_FILES)})")


def predict(folder: Path, images: list[str], top: int) -> list[dict[str, Any]]:
    """For each image, its ``top`` classes (name, logit index, probability), best first."""
    import numpy as np
    import torch

    from samplenas.data.preprocess import prepare_image

    meta = read_export(folder)
    model = load_model(folder)
    x = torch.from_numpy(np.stack([prepare_image(p, meta) for p in images]))
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)
    classes = meta["classes"]
    if probs.shape[1] != len(classes):
        raise UserError(
            f"the model in '{folder}' has {probs.shape[1]} outputs but arch.json names "
            f"{len(classes)} classes; export it again"
        )
    k = min(top, len(classes))
    rows = []
    for path, p in zip(images, probs, strict=True):
        best = torch.topk(p, k)
        rows.append(
            {
                "image": path,
                "top": [
                    {"class": classes[i], "index": i, "probability": float(v)}
                    for v, i in zip(best.values.tolist(), best.indices.tolist(), strict=True)
                ],
            }
        )
    return rows


def cmd_predict(args: argparse.Namespace) -> int:
    rows = predict(Path(args.model), args.images, args.top)
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        best = ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in row["top"])
        print(f"{row['image']}: {best}")
    return 0
