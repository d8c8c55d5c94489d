"""Archive: every evaluated (Arch, metrics) pair of a run, appended durably.

One JSON line per evaluation, flushed and fsynced, so a killed search loses at most the
evaluation in flight; on reopening, a torn last line is ignored and everything else is
reused without re-evaluating.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from samplenas.space import Arch


class Archive:
    """Append-only store keyed by Arch; ``get`` answers repeated queries for free."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self._rows: dict[Arch, dict[str, Any]] = {}
        if self.path and self.path.is_file():
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        valid = 0
        with open(self.path, "rb") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    self._rows[Arch(row["arch"])] = row["metrics"]
                    valid += len(line)
                except (json.JSONDecodeError, KeyError, TypeError):
                    break  # a torn write at the end of a crashed run
        if valid < self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(valid)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, arch: object) -> bool:
        return arch in self._rows

    def __iter__(self) -> Iterator[tuple[Arch, dict[str, Any]]]:
        return iter(self._rows.items())

    def get(self, arch: Arch) -> dict[str, Any] | None:
        return self._rows.get(arch)

    def add(self, arch: Arch, metrics: dict[str, Any]) -> None:
        self._rows[arch] = dict(metrics)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"arch": arch.to_json(), "metrics": metrics}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rows(self) -> list[tuple[Arch, dict[str, Any]]]:
        return list(self._rows.items())
