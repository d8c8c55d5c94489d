"""Argument types and options shared by the sub-commands (counts, evaluation options)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samplenas.io import read_json_arg

if TYPE_CHECKING:
    from samplenas.search.archive import Archive
    from samplenas.space import Arch, SearchSpace
    from samplenas.train.runs import Run


def read_arch(space: SearchSpace, text: str) -> Arch:
    """An --arch argument: smallest, largest, the space's own notation, or JSON / a JSON file."""
    if text in ("smallest", "largest"):
        return getattr(space, text)()
    arch = space.arch_from_text(text)
    return arch if arch is not None else space.validate(read_json_arg(text))


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


def open_run(args: argparse.Namespace) -> Run:
    """The run of ``--run`` with the data and weights options of ``args``."""
    from samplenas.train.runs import load_run

    return load_run(args.run, args.data_dir, args.weights, args.accept_data_change)


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


def open_cache(path: Path, fingerprint: dict[str, Any]) -> Archive:
    """The score cache at ``path`` for scores measured as ``fingerprint`` says.

    Scores measured another way are set aside, never mixed in; the user is told in one line.
    """
    from samplenas.search.archive import Archive

    cache = Archive(path, fingerprint=fingerprint)
    if cache.notice:
        print(f"samplenas: {cache.notice}", file=sys.stderr)
    return cache
