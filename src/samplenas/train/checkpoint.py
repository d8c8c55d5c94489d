"""Atomic checkpoints that load with ``weights_only=True`` (nothing is unpickled)."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path
from typing import Any

import torch

from samplenas.errors import UserError
from samplenas.io import atomic_write

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Written atomically: a crash mid-save leaves the previous checkpoint intact."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Checkpoints are written atomically, so an unreadable one was damaged afterwards."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise UserError(
            f"checkpoint '{path}' cannot be read ({reason[:120]}); it was changed or cut "
            "short after it was written"
        ) from exc


def capture_rng() -> dict[str, Any]:
    """Global RNG states (torch CPU/CUDA, Python) in weights_only-loadable form."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
