"""The one-page README.md of an export: how to load each written format and predict one
image, with the preprocessing the model was trained with spelled out (from ``arch.json``).

The Python blocks are complete programs when joined in order (loading, one format, the top
classes); a test runs them, so the page cannot drift from what the export holds.
"""

from __future__ import annotations

from typing import Any

from samplenas.data.preprocess import CENTER_CROP

LOAD = '''import json

import numpy as np
import torch
from PIL import Image

meta = json.load(open("arch.json"))


def load_image(path):
    """One image as the model's input: a float tensor [1, C, H, W]."""
    img = Image.open(path).convert(meta["color"])
{resize}
    x = np.asarray(img, dtype=np.float32) * meta["scale"]
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    mean = np.array(meta["mean"], dtype=np.float32)[:, None, None]
    std = np.array(meta["std"], dtype=np.float32)[:, None, None]
    return torch.from_numpy((x - mean) / std)[None]


x = load_image("image.png")'''

SQUASH_CODE = """    height, width = meta["size"]
    img = img.resize((width, height), Image.BILINEAR)"""

CROP_CODE = """    size = meta["size"][0]
    scale = round(size * 8 / 7) / min(img.size)
    w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
    img = img.resize((w, h), Image.BILINEAR)
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))"""

FORMATS = {
    "TorchScript": """model = torch.jit.load("model.torchscript.pt")
logits = model(x)""",
    "torch.export": """program = torch.export.load("model.pt2")
logits = program.module()(x)""",
    "ONNX Runtime (`pip install onnxruntime`)": """import onnxruntime

session = onnxruntime.InferenceSession("model.onnx")
logits = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])""",
}

TOP = """probs = logits.softmax(dim=1)[0]
for i in probs.argsort(descending=True)[:3].tolist():
    print(meta["classes"][i], f"{100 * float(probs[i]):.1f}%")"""


def _resize_words(meta: dict[str, Any]) -> str:
    h, w = meta["size"]
    if meta["resize"] == CENTER_CROP:
        crop = round(h * 8 / 7)
        return f"resize the shorter side to {crop} (bilinear), keep the central {h}×{w}"
    return f"resize to {h}×{w} (bilinear; the aspect ratio is not kept)"


def export_readme(meta: dict[str, Any], onnx: bool) -> str:
    """The README.md text for an export described by ``meta`` (its arch.json)."""
    classes = meta["classes"]
    c, h, w = meta["input_shape"]
    names = ", ".join(f"`{n}`" for n in classes)
    formats = {k: v for k, v in FORMATS.items() if onnx or not k.startswith("ONNX")}
    files = "`model.torchscript.pt` (TorchScript), `model.pt2` (torch.export)"
    files += ", `model.onnx` (ONNX)" if onnx else ""
    load = LOAD.format(resize=CROP_CODE if meta["resize"] == CENTER_CROP else SQUASH_CODE)
    lines = [
        f"# A sub-network of space `{meta['space']}`, exported by samplenas",
        "",
        f"{meta['mflops']:.2f} MFLOPs, {meta['params_m']:.4f} M parameters. "
        f"{len(classes)} classes, in logit order: {names}.",
        "",
        f"Files: {files}, `state_dict.pt` (weights only), `arch.json` (the architecture, "
        "the class names and the preprocessing below).",
        "",
        "## Input and output",
        "",
        f"An image becomes a float tensor `[N, {c}, {h}, {w}]`: convert to `{meta['color']}`; "
        f"{_resize_words(meta)}; scale the pixels by 1/255; subtract the mean "
        f"`{_numbers(meta['mean'])}` and divide by the std `{_numbers(meta['std'])}`, per "
        f"channel. The model returns logits `[N, {len(classes)}]`; their softmax gives the "
        "probabilities of the classes above, in that order.",
        "",
        "## Predict one image",
        "",
        "With samplenas: `samplenas predict --model THIS_FOLDER image.png [--top 3] [--json]`.",
        "",
        "Without it (PyTorch, NumPy and Pillow), in this folder, load the image:",
        "",
        "```python",
        load,
        "```",
        "",
        "then run it through one of the formats:",
        "",
    ]
    for title, code in formats.items():
        lines += [f"{title}:", "", "```python", code, "```", ""]
    lines += ["and print the top classes:", "", "```python", TOP, "```", ""]
    return "\n".join(lines)


def _numbers(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"
