"""Argument types and options shared by the sub-commands (counts, evaluation options,
naming an architecture)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samplenas.errors import UserError
from samplenas.io import read_json_arg

if TYPE_CHECKING:
    from samplenas.search.archive import Archive
    from samplenas.space import Arch, SearchSpace
    from samplenas.train.distributed import DistInfo
    from samplenas.train.runs import Run, RunWeights

ARCH_HELP = (
    "a Pareto id of the run's search (0, 1, ...), smallest, largest, inline JSON or a JSON "
    "file (an export's arch.json too), or the space's own notation (e.g. a NAS-Bench-201 "
    "cell string)"
)


def positive_int(text: str) -> int:
    """argparse type for counts: a zero or negative count is a user error, not a default."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")
    return value


def add_evaluation_options(p: argparse.ArgumentParser) -> None:
    """--calib-batches, --val-images, --data-dir, --weights, --no-progress and --json."""
    add_calib_batches_option(p)
    p.add_argument(
        "--val-images", type=positive_int, help="score on the first N validation images only"
    )
    add_data_options(p)
    add_weights_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print JSON")


def add_data_options(p: argparse.ArgumentParser) -> None:
    """--data-dir and --accept-data-change: where a run's data are, and whether data
    changed since training may be used (recorded in the run) rather than refused."""
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument(
        "--accept-data-change",
        action="store_true",
        help="use the data although files changed since training (recorded in the run)",
    )


# Spellings kept for single-process use only: torchrun's parser reads every option of
# the command line, and takes these for its own (--run for --run-path, --n for --nnodes,
# --nproc-per-node, ...). Each has a torchrun-safe spelling (tests/test_torchrun_options.py).
SINGLE_PROCESS_ALIASES = ("--run", "--n")


def add_run_dir_option(
    p: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup,
    help: str = "run directory of 'samplenas train'",
    required: bool = True,
) -> None:
    """--run-dir DIR (args.run), and --run, its older spelling, for single-process use."""
    p.add_argument(
        "--run-dir",
        "--run",
        dest="run",
        metavar="DIR",
        required=required,
        help=f"{help} (--run works too, but not under torchrun, which takes it for its --run-path)",
    )


def add_num_archs_option(
    p: argparse.ArgumentParser, default: int, help: str, type: Callable[[str], int] = int
) -> None:
    """--num-archs N (args.n), and --n, its older spelling, for single-process use."""
    p.add_argument(
        "--num-archs",
        "--n",
        dest="n",
        metavar="N",
        type=type,
        default=default,
        help=f"{help} (--n works too, but not under torchrun, which takes it for its --nnodes)",
    )


def torchrun_rank() -> int:
    """This process's rank under torchrun (0 without it), without joining the group:
    commands about one architecture (export, cost) run on rank 0 and the others leave."""
    import os

    return int(os.environ.get("RANK", "0"))


def join_ranks() -> DistInfo:
    """This command's place among torchrun's processes (rank 0 of 1 without torchrun);
    the process group is left when the process exits."""
    import atexit

    from samplenas.train.distributed import init_distributed, shutdown

    info = init_distributed()
    if info.enabled:
        atexit.register(shutdown, info)
    return info


def open_run(args: argparse.Namespace, writable: bool = True) -> Run:
    """The run of ``--run-dir`` with the data and weights options of ``args``; only a
    ``writable`` opening (rank 0) may record anything in the run."""
    from samplenas.train.runs import load_run

    return load_run(args.run, args.data_dir, args.weights, args.accept_data_change, writable)


def add_calib_batches_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--calib-batches",
        type=positive_int,
        help="BN calibration batches (default: recipe's; at most what its split holds)",
    )


def add_weights_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        choices=["auto", "ema", "trained"],
        default="auto",
        help="supernet weights: the moving average when the run kept one (auto), or force one",
    )


def open_cache(
    path: Path, fingerprint: dict[str, Any], info: DistInfo | None = None
) -> Archive | None:
    """The score cache at ``path`` for scores measured as ``fingerprint`` says; None on
    torchrun's ranks other than 0 (``info``), which neither read nor write it.

    Scores measured another way are set aside, never mixed in; the user is told in one line.
    """
    from samplenas.search.archive import Archive

    if info is not None and not info.is_main:
        return None
    cache = Archive(path, fingerprint=fingerprint)
    if cache.notice:
        print(f"samplenas: {cache.notice}", file=sys.stderr)
    return cache


def resolve_arch(text: str, space: SearchSpace, run: RunWeights | None = None) -> Arch:
    """The architecture ``--arch`` names, the same way in every command.

    A Pareto id (needs ``run``: a member of its search's front, measured on its weights),
    ``smallest``/``largest``, the space's own notation (a NAS-Bench-201 cell string),
    inline JSON or a JSON file; a JSON object holding an ``arch`` (an export's
    ``arch.json``, a row of ``pareto.json``) stands for that arch.
    """
    if text in ("smallest", "largest"):
        return getattr(space, text)()
    own = space.arch_from_text(text)  # a space's own notation (a NAS-Bench-201 cell string)
    if own is not None:
        return own
    if text.isdigit():
        if run is None:
            raise UserError(
                f"--arch {text} is a Pareto id, which names a member of a run's search; "
                "pass --run-dir DIR or give the architecture as JSON"
            )
        return space.validate(pareto_member(run, int(text))["arch"])
    inline = text.strip().startswith(("{", "["))  # before any file check: long JSON is no name
    if not inline and not ("/" in text or text.endswith(".json") or _exists(text)):
        raise UserError(f"--arch '{text}' is not {ARCH_HELP}")
    raw = read_json_arg(text)
    if isinstance(raw, dict) and isinstance(raw.get("arch"), dict):
        named = raw.get("space")
        if isinstance(named, str) and named != space.name:
            raise UserError(
                f"--arch '{text}' is an architecture of space '{named}', not of '{space.name}'"
            )
        raw = raw["arch"]
    return space.validate(raw)


def _exists(text: str) -> bool:
    """Whether ``text`` names an existing file; False for what cannot be a file name."""
    try:
        return Path(text).exists()
    except (OSError, ValueError):  # too long, or a NUL byte
        return False


def pareto_member(run: RunWeights, index: int) -> dict[str, Any]:
    """Member ``index`` of the run's Pareto front, if the front was measured on its weights."""
    path = Path(run.path) / "search" / "pareto.json"
    if not path.is_file():
        raise UserError(f"no Pareto front in '{run.path}'; run 'samplenas search' first")
    front = _read_front(path)
    _check_front_is_current(run, path)
    if index >= len(front):
        raise UserError(f"Pareto id {index} does not exist; the front has ids 0-{len(front) - 1}")
    return front[index]


def _check_front_is_current(run: RunWeights, path: Path) -> None:
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
