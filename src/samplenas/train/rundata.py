"""A run directory is self-contained: what it was trained on is kept in it.

At the start of a fresh run the recipe's user space file is copied into ``config.yaml``
as a mapping and ``data.data_dir`` is made absolute (``resolve_run_inputs``), so editing
the space file or changing directory later changes nothing. ``data.json`` records the
class names in label order, the channels, image size, normalisation and resize rule, where
the splits came from, and the data's fingerprint (``data-files.json.gz`` lists every file
with its size). Eval, search, export and resume compare the data they read against it
(``data_guard``): a changed dataset is refused, or, when the user accepts it, recorded in
``data.json``'s ``history`` — never silently used with a re-drawn validation split.
Runs from before this record keep working; they are not checked.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from samplenas.data import Splits
from samplenas.data.datasets import OnFiles
from samplenas.data.fingerprint import DataFiles
from samplenas.errors import UserError
from samplenas.io import atomic_write, atomic_write_json
from samplenas.space.registry import space_declaration
from samplenas.train.config import RunConfig

DATA_RECORD = "data.json"
DATA_FILES = "data-files.json.gz"  # {relative path: bytes} of every file the data reads
ACCEPT_FLAG = "--accept-data-change"


def resolve_run_inputs(cfg: RunConfig, fresh: bool = True) -> RunConfig:
    """``cfg`` with an absolute ``data.data_dir`` and, for a fresh run, a user's space file
    replaced by its contents (a resume keeps what its run recorded)."""
    data = cfg.data
    if data.data_dir:
        data = dataclasses.replace(data, data_dir=str(Path(data.data_dir).resolve()))
    space = cfg.space
    if fresh:
        space = space_declaration(space) or space
    return dataclasses.replace(cfg, data=data, space=space)


def write_data_record(run_dir: Path, data: Splits) -> None:
    """Record what a fresh run trains on (see the module docstring)."""
    if data.files is None:
        return
    _write_files(run_dir, data.files)
    record = {
        "dataset": data.name,
        "classes": list(data.classes),
        "channels": data.channels,
        "image_size": data.image_size,
        "mean": list(data.mean),
        "std": list(data.std),
        "resize": data.resize,
        "splits": {s: len(data.split(s)) for s in ("train", "val", "test")},
        "notes": list(data.notes),
        "files": data.files.summary(),
        "history": [],
    }
    atomic_write_json(run_dir / DATA_RECORD, record)


def read_data_record(run_dir: Path) -> dict[str, Any] | None:
    """A run's ``data.json``, or None for a run from before it was kept."""
    path = Path(run_dir) / DATA_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"'{path}' cannot be read ({exc}); it was changed after the run") from exc
    if not isinstance(record, dict):
        raise UserError(f"'{path}' is not a run's data record; it was changed after the run")
    return record


def _write_files(run_dir: Path, files: DataFiles) -> None:
    payload = gzip.compress(json.dumps(files.sizes, sort_keys=True).encode(), mtime=0)
    atomic_write(run_dir / DATA_FILES, lambda f: f.write(payload))


def _read_files(run_dir: Path) -> dict[str, int]:
    path = run_dir / DATA_FILES
    try:
        return json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(
            f"'{path}' cannot be read ({exc.__class__.__name__}); the run's list of data "
            "files was removed or damaged"
        ) from exc


def data_guard(run_dir: Path, accept: bool = False, write: bool = True) -> OnFiles | None:
    """A ``load_dataset`` hook that holds a run to the data it was trained on.

    Changed files exit 2 naming what changed, unless ``accept``: then the change is
    recorded in ``data.json`` (when ``write``; under torchrun only rank 0 writes) and the
    data are used as they are now. None for a run without a record.
    """
    run_dir = Path(run_dir)
    record = read_data_record(run_dir)
    if record is None:
        return None

    def check(files: DataFiles) -> None:
        if files.sha256 == record["files"]["sha256"]:
            return
        change = files.changes_since(_read_files(run_dir)) or "the same files, other sizes"
        where = record["files"]["root"]
        if not accept:
            raise UserError(
                f"the data of run '{run_dir}' changed since it was trained (in '{files.root}' "
                f"against '{where}': {change}); its validation split would no longer be the "
                f"one it was trained beside: restore the data, or pass {ACCEPT_FLAG} to use "
                "it as it is now (recorded in the run)"
            )
        print(
            f"samplenas: data changed ({change}); accepted and recorded in "
            f"'{run_dir / DATA_RECORD}'",
            file=sys.stderr,
        )
        if write:
            _record_change(run_dir, record, files, change)

    return check


def _record_change(run_dir: Path, record: dict[str, Any], files: DataFiles, change: str) -> None:
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entry = {
        "when": when,
        "accepted": change,
        "command": " ".join(["samplenas", *sys.argv[1:]]),
        "from": record["files"],
        "to": files.summary(),
    }
    history = [*record.get("history", []), entry]
    _write_files(run_dir, files)
    atomic_write_json(
        run_dir / DATA_RECORD, {**record, "files": files.summary(), "history": history}
    )
