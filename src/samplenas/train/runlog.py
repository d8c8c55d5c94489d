"""The run directory's append-only JSONL logs, kept consistent with the checkpoint.

Records are appended as steps happen, but a crash rolls training back to the last
checkpoint; ``truncate_after`` drops what was logged past it, so a resumed run's logs
read exactly like an uninterrupted run's (no step appears twice). A fresh run starts them
empty (``start_fresh``): an earlier run in the same folder may have died before its first
checkpoint and left records that belong to no checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from samplenas.io import atomic_write_text

METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"  # per step: the sub-networks the sampler chose, and how
TENSORBOARD = "tensorboard"  # event files, when the tensorboard extra is installed
SUMMARY = "run.json"


def start_fresh(run_dir: Path) -> None:
    """Remove the logs and TensorBoard event files an earlier run left in ``run_dir``."""
    for name in (METRICS, SAMPLES, SUMMARY):
        (run_dir / name).unlink(missing_ok=True)
    for events in (run_dir / TENSORBOARD).glob("**/events.out.tfevents.*"):
        events.unlink()


def append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def logged_before(record: dict[str, Any], step: int, epochs_done: int) -> bool:
    """Whether a record belongs to the state a checkpoint at ``step`` restores.

    Epoch records (no ``lr``; ``epoch`` counts finished epochs) share their step with the
    epoch's last batch, and a checkpoint can fall on that batch before the epoch's
    evaluation finished: such a record is kept only if its epoch is among those done.
    """
    if int(record.get("step", 0)) > step:
        return False
    return "lr" in record or int(record.get("epoch", 0)) <= epochs_done


def truncate_after(path: Path, step: int, epochs_done: int) -> None:
    """Keep only the records a checkpoint at ``step`` has seen (a torn last line goes too)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if logged_before(record, step, epochs_done):
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))
