"""Small I/O helpers every command uses: reading an Arch argument, atomic writes of files
and of whole folders."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from samplenas.errors import UserError

# what reading a truncated or corrupted .npz raises (np.load reads members lazily)
DAMAGED_FILE_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


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
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would hide results
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def current_umask() -> int:
    """The process umask: read from /proc where Linux shows it, since elsewhere reading it
    means setting it, and a file another thread creates meanwhile would get the wrong mode."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (the entry lives in the folder, not the file)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms that cannot open folders have nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Fill a temporary sibling folder, then swap it in for ``path`` whole.

    Readers see the old folder or the new one, never a mix; when the body raises, the
    old folder is left as it was and the temporary one is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    old = None
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        yield tmp
        for f in tmp.rglob("*"):  # the contents must be on disk before the swap is
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():  # the swap itself failed: put it back
            os.replace(old / path.name, path)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only the globals it was given: a data file must not run code on load."""

    def __init__(self, file: BinaryIO, allowed: Mapping[tuple[str, str], Any], source: Path):
        super().__init__(file)
        self.allowed, self.source = allowed, source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UserError(
                f"'{self.source}' holds a pickled '{module}.{name}', which samplenas does not "
                "load (only plain data); reinstall the package that ships this file"
            ) from None


def load_restricted_pickle(
    path: str | Path, allowed: Mapping[tuple[str, str], Any] | None = None
) -> Any:
    """Load a pickle whose only globals are the ``(module, name)`` keys of ``allowed``
    (mapped to the given objects); any other global is refused with a UserError naming
    the file. Never ``pickle.load`` a file: it can run any code."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, allowed or {}, path).load()
    except UserError:
        raise
    except OSError as exc:
        raise UserError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise UserError(f"'{path}' is not a readable pickle ({exc})") from exc
