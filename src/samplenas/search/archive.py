"""Archive: every evaluated (Arch, metrics) pair of a run, appended durably.

One JSON line per evaluation, flushed and fsynced, so a killed search loses at most the
evaluation in flight; on reopening, a torn last line is ignored and everything else is
reused without re-evaluating.

A score is only worth reusing if it was measured the same way (same weights, calibration
images, evaluation images, data split). An archive opened with a ``fingerprint`` keeps it
as its first line; a file measured another way (or an old file without one) is moved
aside as ``<stem>.<hash>.jsonl`` and a new archive starts, or an earlier file measured
exactly this way is moved back in. ``notice`` then says what happened.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from samplenas.io import atomic_write_text
from samplenas.space import Arch


def fingerprint_id(fingerprint: dict[str, Any] | None) -> str:
    """A short stable name for a fingerprint (``None``: a file from before fingerprints)."""
    text = json.dumps(fingerprint, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def read_fingerprint(path: Path) -> dict[str, Any] | None:
    """The fingerprint a cache file starts with, or None (old format, torn or foreign)."""
    try:
        with open(path, "rb") as f:
            header = json.loads(f.readline())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    fp = header.get("fingerprint") if isinstance(header, dict) else None
    return fp if isinstance(fp, dict) else None


def describe_change(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """``checkpoint_step 17 -> 34, eval_images 300 -> 100``: the keys that differ."""
    if old is None:
        return "it has no evaluation fingerprint (written by an older samplenas)"
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return ", ".join(f"{k} {old.get(k)} -> {new.get(k)}" for k in keys)


class Archive:
    """Append-only store keyed by Arch; ``get`` answers repeated queries for free."""

    def __init__(
        self, path: str | Path | None = None, fingerprint: dict[str, Any] | None = None
    ) -> None:
        self.path = Path(path) if path else None
        self.fingerprint = fingerprint
        self.notice: str | None = None  # set when an earlier file was moved aside
        self._rows: dict[Arch, dict[str, Any]] = {}
        if self.path and fingerprint is not None:
            self._match_fingerprint(self.path, fingerprint)
        if self.path and self.path.is_file():
            self._load()

    def _match_fingerprint(self, path: Path, fingerprint: dict[str, Any]) -> None:
        """Make ``path`` the cache of ``fingerprint``: never mix two ways of measuring."""
        if path.is_file():
            old = read_fingerprint(path)
            if old == fingerprint:
                return
            kept = self._aside(path, fingerprint_id(old))
            os.replace(path, kept)
            self.notice = f"'{path}' was measured differently ({describe_change(old, fingerprint)})"
            earlier = self._aside(path, fingerprint_id(fingerprint), fresh=False)
            if earlier.is_file() and read_fingerprint(earlier) == fingerprint:
                os.replace(earlier, path)
                self.notice += f"; moved it to '{kept.name}', reusing '{earlier.name}' (same way)"
                return
            self.notice += f"; moved it to '{kept.name}', starting a new cache"
        atomic_write_text(path, json.dumps({"fingerprint": fingerprint}) + "\n")

    @staticmethod
    def _aside(path: Path, tag: str, fresh: bool = True) -> Path:
        """``archive.<tag>.jsonl`` next to ``path``; with ``fresh``, one that does not exist."""
        target = path.with_name(f"{path.stem}.{tag}{path.suffix}")
        n = 1
        while fresh and target.exists():
            target = path.with_name(f"{path.stem}.{tag}-{n}{path.suffix}")
            n += 1
        return target

    def _load(self) -> None:
        assert self.path is not None
        valid = 0
        with open(self.path, "rb") as f:
            for i, line in enumerate(f):
                try:
                    row = json.loads(line)
                    if i == 0 and "fingerprint" in row:
                        valid += len(line)
                        continue
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
