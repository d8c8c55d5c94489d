"""Options shared by the commands that evaluate sub-networks of a trained run."""

from __future__ import annotations

import argparse


def add_evaluation_options(p: argparse.ArgumentParser) -> None:
    """--calib-batches, --val-images, --data-dir, --no-progress and --json."""
    p.add_argument("--calib-batches", type=int, help="BN calibration batches (default: recipe's)")
    p.add_argument("--val-images", type=int, help="score on the first N validation images only")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print JSON")
