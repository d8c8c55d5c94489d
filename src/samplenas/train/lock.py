"""One run at a time per directory: ``train`` holds ``run.lock`` while it writes there
(and eval, search and export while they record an accepted data change).

Two trainers writing one checkpoint would each overwrite the other's state. The lock is
an OS file lock (``flock``) on ``run.lock``, which also holds the owner's pid and host
for the message: the OS drops the lock when its process dies however it dies, so a lock
file left by a killed run is stale and is taken over (and the user told so). The file
is removed on a normal exit, on Ctrl-C and on errors (with the directory, when the lock
created it and the run wrote nothing there).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from samplenas.errors import UserError

LOCK = "run.lock"


def _owner(path: Path) -> dict[str, object]:
    try:
        owner = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


TRAIN_ADVICE = "wait for it to finish or stop it, or use another --out"


def _acquire(path: Path, advice: str) -> int:
    """An open descriptor of ``path`` holding its lock; the live owner is a UserError."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = _owner(path)
            raise UserError(
                f"run directory '{path.parent}' is in use by another samplenas train "
                f"(pid {owner.get('pid', '?')} on {owner.get('host', '?')}); {advice}"
            ) from None
        try:  # the lock holder may have removed the file meanwhile: lock the new one
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def run_lock(run_dir: str | Path, advice: str = TRAIN_ADVICE) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the body (see the module docstring); ``advice`` ends
    the message when another process holds it."""
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    fd = _acquire(path, advice)
    try:
        stale = _owner(path)
        if stale:
            print(
                f"samplenas: taking over the lock of '{run_dir}' left by pid "
                f"{stale.get('pid', '?')} on {stale.get('host', '?')}, which no longer runs",
                file=sys.stderr,
            )
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        os.fsync(fd)
        yield
    finally:
        path.unlink(missing_ok=True)  # before unlocking: a waiter then locks a new file
        os.close(fd)
        if created and not any(run_dir.iterdir()):  # a run that never started leaves none
            run_dir.rmdir()
