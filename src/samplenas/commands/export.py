"""``samplenas export``: one sub-network as a standalone model with calibrated BN."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from samplenas.commands.common import (
    add_calib_batches_option,
    add_data_options,
    add_weights_option,
    open_run,
    read_arch,
)
from samplenas.errors import UserError
from samplenas.io import atomic_folder, atomic_write_json, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a standalone model (torch.export, TorchScript, ONNX)")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument(
        "--arch",
        required=True,
        help="Pareto id from 'samplenas search', smallest, largest, or JSON / JSON file",
    )
    p.add_argument("--out", required=True, help="output folder")
    add_calib_batches_option(p)
    add_data_options(p)
    add_weights_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_export)


def resolve(run, text: str):
    if text.isdigit():
        path = Path(run.path) / "search" / "pareto.json"
        if not path.is_file():
            raise UserError(f"no Pareto front in '{run.path}'; run 'samplenas search' first")
        front = _read_front(path)
        _check_front_is_current(run, path)
        if int(text) >= len(front):
            raise UserError(
                f"Pareto id {text} does not exist; the front has ids 0-{len(front) - 1}"
            )
        return run.space.validate(front[int(text)]["arch"])
    return read_arch(run.space, text)


def _check_front_is_current(run, path: Path) -> None:
    """A Pareto id names a member of the front measured on these weights, or nothing:
    after a longer resume (or with other ``--weights``) the old ids describe other networks."""
    from samplenas.train.checkpoint import CHECKPOINT

    measured = json.loads(path.read_text()).get("fingerprint")
    if isinstance(measured, dict):
        now = run.weights_id()
        stale = any(measured.get(k) != v for k, v in now.items())
    else:  # a front from before fingerprints: it is stale if the checkpoint is newer
        stale = (run.path / CHECKPOINT).stat().st_mtime > path.stat().st_mtime
        measured = {}
    if stale:
        raise UserError(
            f"'{path}' was measured on other weights (step {measured.get('checkpoint_step', '?')}, "
            f"{measured.get('weights', '?')}) than the run's step {run.step} ({run.weights}); "
            "run 'samplenas search' again or pass the architecture as JSON"
        )


def _read_front(path: Path) -> list[dict]:
    """The members of a pareto.json, or UserError saying how it is damaged."""
    try:
        front = json.loads(path.read_text()).get("front")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise UserError(f"'{path}' is not a Pareto front; run 'samplenas search' again") from exc
    if not isinstance(front, list) or not all(isinstance(m, dict) and "arch" in m for m in front):
        raise UserError(
            f"'{path}' lacks a 'front' list of members with an 'arch'; run 'samplenas search' again"
        )
    return front


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


def write_formats(run, arch, model, example, out: Path) -> tuple[dict[str, str], str | None]:
    """Write arch.json and every model format into ``out``; return {kind: file name} and
    why ONNX was skipped (None: written)."""
    import torch

    atomic_write_json(
        out / "arch.json",
        {
            "space": run.space.name,
            "arch": arch.to_json(),
            "weights": run.weights,
            "input_shape": list(example.shape[1:]),
            "mean": list(run.data.mean),
            "std": list(run.data.std),
        },
    )
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
    return files, skipped


def cmd_export(args: argparse.Namespace) -> int:
    from samplenas.supernet import calibrate_bn

    run = open_run(args)
    arch = resolve(run, args.arch)
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
