"""Small I/O helpers every command uses: reading an Arch argument, atomic JSON writes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from samplenas.errors import UserError


def read_json_arg(text: str, what: str = "architecture") -> Any:
    """Parse ``text`` as inline JSON, or as the path of a JSON file."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"the {what} is not valid JSON ({exc.msg} at column {exc.colno})"
            ) from exc
    path = Path(text)
    try:
        raw = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {what} file '{text}': {exc.strerror or exc}") from exc
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{what} file '{text}' is not valid JSON ({exc.msg}, line {exc.lineno})"
        ) from exc


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through ``write(file)`` into a temp file in the same folder, fsync, rename:
    readers (and a resumed run) never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))
