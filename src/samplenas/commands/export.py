"""``samplenas export``: one sub-network as a standalone model with calibrated BN."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from samplenas.commands.common import (
    ARCH_HELP,
    add_calib_batches_option,
    add_data_options,
    add_run_dir_option,
    add_weights_option,
    open_run,
    resolve_arch,
    torchrun_rank,
)
from samplenas.commands.export_readme import export_readme
from samplenas.errors import UserError
from samplenas.io import atomic_folder, atomic_write_json, atomic_write_text, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a standalone model (torch.export, TorchScript, ONNX)")
    add_run_dir_option(p, "run directory")
    p.add_argument(
        "--arch",
        required=True,
        help=ARCH_HELP,
    )
    p.add_argument("--out", required=True, help="output folder")
    add_calib_batches_option(p)
    add_data_options(p)
    add_weights_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_export)


def export_onnx(model, example, path: Path) -> str | None:
    """Write ONNX if the optional ``onnx`` package is there; else say why not (None: written).

    ONNX is the one optional format: its absence or a failed conversion costs the user that
    file only, never the formats already written, and is reported rather than hidden.
    """
    import torch

    try:
        import onnx  # noqa: F401
    except ImportError:
        return "the 'onnx' package is not installed (pip install samplenas[onnx])"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            )
    except Exception as exc:  # noqa: BLE001 - any converter failure costs this file only
        return f"the ONNX conversion failed ({exc.__class__.__name__}: {exc})"
    return None


def check_replaceable(out: Path) -> None:
    """Refuse to replace a folder that holds something other than an earlier export."""
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / "arch.json").is_file())
    ):
        raise UserError(
            f"'{out}' exists and is not an earlier export; choose a new folder for --out"
        )


def export_metadata(run, arch, example) -> dict[str, Any]:
    """What ``arch.json`` says: the arch, and what a user needs to feed the model and read
    its output without guessing (class names in logit order, input shape, preprocessing)."""
    cost = run.space.cost(arch)
    return {
        "space": run.space.name,
        "arch": arch.to_json(),
        "weights": run.weights,
        "mflops": cost.mflops,
        "params_m": cost.params_m,
        "classes": run.class_names(),
        "input_shape": list(example.shape[1:]),
        **run.preprocessing(),  # as recorded when the run was trained
    }


def write_formats(run, arch, model, example, out: Path) -> tuple[dict[str, str], str | None]:
    """Write arch.json, README.md and every model format into ``out``; return {kind: file
    name} and why ONNX was skipped (None: written)."""
    import torch

    meta = export_metadata(run, arch, example)
    atomic_write_json(out / "arch.json", meta)
    torch.save(model.state_dict(), out / "state_dict.pt")
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, out / "model.pt2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(model, example).save(str(out / "model.torchscript.pt"))
    files = {
        "arch": "arch.json",
        "state_dict": "state_dict.pt",
        "torch_export": "model.pt2",
        "torchscript": "model.torchscript.pt",
    }
    skipped = export_onnx(model, example, out / "model.onnx")
    if skipped is None:
        files["onnx"] = "model.onnx"
    atomic_write_text(out / "README.md", export_readme(meta, "onnx" in files))
    files["readme"] = "README.md"
    return files, skipped


def cmd_export(args: argparse.Namespace) -> int:
    from samplenas.supernet import calibrate_bn

    if torchrun_rank():  # one model: rank 0 writes it, the other ranks have nothing to do
        return 0
    run = open_run(args)
    arch = resolve_arch(args.arch, run.space, run)
    model = run.supernet.export(arch)
    calib = run.calibration(args.calib_batches)
    calibrate_bn(model, (x.contiguous() for x in calib), len(calib))
    model.eval()
    out = Path(args.out)
    check_replaceable(out)
    example = calib[0][:2].contiguous()
    with atomic_folder(out) as tmp:  # an old export is replaced whole, or not at all
        written, skipped = write_formats(run, arch, model, example, tmp)
    files = {kind: str(out / name) for kind, name in written.items()}
    cost = run.space.cost(arch)
    result = {
        "arch": arch.to_json(),
        "mflops": cost.mflops,
        "params_m": cost.params_m,
        "files": files,
        **({"skipped": {"onnx": skipped}} if skipped else {}),
    }
    if args.json:
        print_json(result)
    else:
        print(
            f"exported {cost.mflops:.2f} MFLOPs / {cost.params_m:.3f} M params to {out}: "
            + ", ".join(Path(f).name for f in files.values())
        )
        if skipped:
            print(f"no ONNX file: {skipped}")
    return 0
