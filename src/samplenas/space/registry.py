"""Find spaces by name (the YAML files shipped in ``space/spaces``) or by a user's path."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from samplenas.errors import UserError
from samplenas.space.base import SearchSpace
from samplenas.space.mbconv import MBConvConfig, MBConvSpace
from samplenas.yamlio import parse_yaml

SPACES_DIR = Path(__file__).parent / "spaces"
_KINDS = {"mbconv": lambda cfg, name: MBConvSpace(MBConvConfig.from_dict(cfg, name))}
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


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A space by shipped name (``attentive``) or from a YAML file path."""
    return _load(str(name_or_path))


@lru_cache(maxsize=32)
def _load(name_or_path: str) -> SearchSpace:
    _register_builtin()
    if name_or_path in _BUILTIN:
        return _BUILTIN[name_or_path]()
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError(f"space file '{path}' does not exist")
        name = path.stem
    else:
        path = SPACES_DIR / f"{name_or_path}.yaml"
        name = name_or_path
        if not path.is_file():
            raise UserError(
                f"unknown space '{name_or_path}'; choose one of {list_spaces()} or give a YAML path"
            )
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read space file '{path}': {exc.strerror or exc}") from exc
    cfg = parse_yaml(text, path, "space file")
    if not isinstance(cfg, dict):
        raise UserError(f"space file '{path}' must hold a YAML mapping")
    name = str(cfg.get("name", name))
    cfg = {k: v for k, v in cfg.items() if k != "name"}
    kind = cfg.get("kind", "mbconv")
    if kind not in _KINDS:
        raise UserError(f"space file '{path}' has unknown kind '{kind}'; known: {sorted(_KINDS)}")
    return _KINDS[kind](cfg, name)
