"""Find spaces by name (the YAML files shipped in ``space/spaces``) or by a user's path."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from samplenas.errors import UserError
from samplenas.space.base import SearchSpace
from samplenas.space.fbnet import FBNetConfig, FBNetSpace
from samplenas.space.mbconv import MBConvConfig, MBConvSpace
from samplenas.yamlio import parse_yaml

SPACES_DIR = Path(__file__).parent / "spaces"
_KINDS = {
    "mbconv": lambda cfg, name: MBConvSpace(MBConvConfig.from_dict(cfg, name)),
    "fbnet": lambda cfg, name: FBNetSpace(FBNetConfig.from_dict(cfg, name)),
}
_BUILTIN: dict[str, Callable[[], SearchSpace]] = {}  # spaces defined in code (cell spaces)


def register_kind(kind: str, factory) -> None:
    """Let another module add a space kind (``factory(yaml_dict, name) -> SearchSpace``)."""
    _KINDS[kind] = factory


def register_space(name: str, factory: Callable[[], SearchSpace]) -> None:
    """Ship a space defined in code (e.g. a tabular benchmark's cell space) under ``name``."""
    _BUILTIN[name] = factory


def list_spaces() -> list[str]:
    """Names of the spaces that ship with samplenas."""
    _register_builtin()
    return sorted({p.stem for p in SPACES_DIR.glob("*.yaml")} | set(_BUILTIN))


def _register_builtin() -> None:
    import samplenas.space.cells  # noqa: F401  (registers the cell spaces)


def load_space(spec: str | Path | Mapping[str, Any]) -> SearchSpace:
    """A space by shipped name (``attentive``), from a YAML file path, or from a mapping:
    a run's own copy of a user's space file (``space_declaration``)."""
    if isinstance(spec, Mapping):
        return _build(dict(spec), "space", "the run's space declaration")
    return _load(str(spec))


def space_declaration(spec: str | Path | Mapping[str, Any]) -> dict[str, Any] | None:
    """A user's space file as the mapping a run keeps (``name`` included), so that editing
    the file later changes nothing about the run; None for a shipped space's name."""
    if isinstance(spec, Mapping):
        return dict(spec)
    path = _user_file(str(spec))
    if path is None:
        return None
    declaration = _read_file(path)
    return {"name": str(declaration.get("name", path.stem)), **declaration}


def _user_file(name_or_path: str) -> Path | None:
    """The YAML file a space argument names, or None when it names a shipped space."""
    _register_builtin()
    if name_or_path in _BUILTIN:
        return None
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError(f"space file '{path}' does not exist")
        return path
    return None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read space file '{path}': {exc.strerror or exc}") from exc
    declaration = parse_yaml(text, path, "space file")
    if not isinstance(declaration, dict):
        raise UserError(f"space file '{path}' must hold a YAML mapping")
    return declaration


@lru_cache(maxsize=32)
def _load(name_or_path: str) -> SearchSpace:
    path = _user_file(name_or_path)
    if path is not None:
        return _build(_read_file(path), path.stem, f"space file '{path}'")
    if name_or_path in _BUILTIN:
        return _BUILTIN[name_or_path]()
    path = SPACES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UserError(
            f"unknown space '{name_or_path}'; choose one of {list_spaces()} or give a YAML path"
        )
    return _build(_read_file(path), name_or_path, f"space file '{path}'")


def _build(declaration: dict[str, Any], name: str, source: str) -> SearchSpace:
    name = str(declaration.get("name", name))
    cfg = {k: v for k, v in declaration.items() if k != "name"}
    kind = cfg.get("kind", "mbconv")
    if kind not in _KINDS:
        raise UserError(f"{source} has unknown kind '{kind}'; known: {sorted(_KINDS)}")
    return _KINDS[kind](cfg, name)
