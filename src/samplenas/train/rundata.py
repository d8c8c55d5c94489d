"""A run directory is self-contained: what it was trained on is kept in it.

At the start of a fresh run the recipe's user space file is copied into ``config.yaml``
as a mapping and ``data.data_dir`` is made absolute (``resolve_run_inputs``), so editing
the space file or changing directory later changes nothing. ``data.json`` records the
class names in label order, the preprocessing rule (channels, size, resize, mean, std), where
the splits came from, and the data's fingerprint (``data-files.json.gz`` lists every file
with its size). Eval, search, export and resume compare the data they read against it
(``data_guard``): a changed dataset is refused, or, when the user accepts it, recorded in
``data.json``'s ``history`` once the command's checks passed — never silently used with a
re-drawn validation split, nor with other class names.
Runs from before this record keep working; they are not checked.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import sys
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from samplenas.data import DataSplits, Splits
from samplenas.data.fingerprint import DataFiles
from samplenas.data.preprocess import preprocessing
from samplenas.errors import UserError
from samplenas.io import atomic_write, atomic_write_json
from samplenas.space.registry import space_declaration
from samplenas.train.config import RunConfig
from samplenas.train.lock import run_lock

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
        "preprocessing": preprocessing(data),  # what exports record and predict replays
        "decoding": data.resize,  # the same, in words
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


class DataGuard:
    """Holds a run to the data it was trained on: a ``load_dataset`` ``on_files`` hook,
    then ``hold`` on the loaded data and ``commit`` once the command's checks passed.

    Changed files exit 2 naming what changed, unless ``accept``: then the change is only
    noted, the run's decoded copy is left alone, and ``commit`` records it in ``data.json``
    — so a command that fails after loading the data leaves the run as it was. Changed
    class names are refused even when accepted: the run's logits follow its own classes.
    """

    def __init__(self, run_dir: Path, record: dict[str, Any], accept: bool) -> None:
        self.run_dir, self.record, self.accept = run_dir, record, accept
        self.change: tuple[DataFiles, str] | None = None  # accepted, not yet recorded

    def __call__(self, files: DataFiles) -> bool:
        """Whether ``files`` are the run's own (only they may be kept decoded in the run)."""
        if files.sha256 == self.record["files"]["sha256"]:
            return True
        change = files.changes_since(_read_files(self.run_dir)) or "the same files, other sizes"
        if not self.accept:
            raise UserError(
                f"the data of run '{self.run_dir}' changed since it was trained (in "
                f"'{files.root}' against '{self.record['files']['root']}': {change}); its "
                "validation split would no longer be the one it was trained beside: restore "
                f"the data, or pass {ACCEPT_FLAG} to use it as it is now (recorded in the run)"
            )
        self.change = (files, change)
        return False

    def hold(self, data: Splits) -> None:
        """``data`` labelled and normalised as the run was trained: the same class names
        in the same order (else exit 2), the recorded mean and std."""
        old = self.record.get("classes")
        if old is not None and list(data.classes) != list(old):
            raise UserError(
                f"the classes of run '{self.run_dir}' changed since it was trained (was "
                f"{old}, now {list(data.classes)}); its outputs follow the old list, so "
                f"images would be scored against the wrong labels even with {ACCEPT_FLAG}: "
                "restore the class folders' names, or train a new run on this data"
            )
        if isinstance(data, DataSplits):  # streamed folders normalise by fixed constants
            rule = self.record.get("preprocessing", self.record)  # top level: older records
            data.mean, data.std = tuple(rule["mean"]), tuple(rule["std"])

    def commit(self, lock: bool = True) -> None:
        """Record an accepted change in ``data.json``, under the run's lock when ``lock``
        (``train`` holds it already)."""
        if self.change is None:
            return
        files, change = self.change
        advice = "let it finish, then accept the data change again"
        with run_lock(self.run_dir, advice) if lock else nullcontext():
            _record_change(self.run_dir, self.record, files, change)
        self.change = None
        print(
            f"samplenas: data changed ({change}); accepted and recorded in "
            f"'{self.run_dir / DATA_RECORD}'",
            file=sys.stderr,
        )


def data_guard(run_dir: Path, accept: bool = False) -> DataGuard | None:
    """The ``DataGuard`` of a run; None for a run without a data record."""
    run_dir = Path(run_dir)
    record = read_data_record(run_dir)
    return None if record is None else DataGuard(run_dir, record, accept)


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
