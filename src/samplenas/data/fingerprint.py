"""What a dataset is read from: every file's path (relative to its folder) and size.

A run records this when it starts, so that eval, search, resume and export notice a
folder that has changed since (images added, removed or replaced by others of another
size) instead of silently drawing another validation split from it. Sizes, not contents,
are hashed: listing a million files is seconds, reading them is not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DataFiles:
    """The files of a dataset: ``sizes`` maps each path, relative to ``root``, to bytes."""

    root: str  # absolute
    sizes: dict[str, int]

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self.sizes):
            digest.update(f"{name}\t{self.sizes[name]}\n".encode())
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        """What a run records besides the list: where, how many, how large, the hash."""
        return {
            "root": self.root,
            "count": len(self.sizes),
            "bytes": sum(self.sizes.values()),
            "sha256": self.sha256,
        }

    def changes_since(self, old: dict[str, int]) -> str | None:
        """``"3 added, 1 removed, 2 resized"`` against an earlier listing, or None."""
        added = len(self.sizes.keys() - old.keys())
        removed = len(old.keys() - self.sizes.keys())
        resized = sum(1 for k in self.sizes.keys() & old.keys() if self.sizes[k] != old[k])
        parts = [
            f"{n} {what}"
            for n, what in ((added, "added"), (removed, "removed"), (resized, "resized"))
            if n
        ]
        return ", ".join(parts) or None


def files_of(root: str | Path, paths: Iterable[str | Path]) -> DataFiles:
    """The ``DataFiles`` of ``paths``, each ``root / relative path``."""
    root = Path(root)
    sizes = {Path(p).relative_to(root).as_posix(): Path(p).stat().st_size for p in paths}
    return DataFiles(str(root.resolve()), sizes)
