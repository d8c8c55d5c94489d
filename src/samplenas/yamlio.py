"""YAML read the way users write it, with mistakes named by file, line and column.

PyYAML follows YAML 1.1, whose float rule needs a dot: ``1e-3`` and ``2E-5`` are read as
strings, and a recipe's ``lr: 1e-3`` would be refused as "wrong type". ``Loader`` is a
``SafeLoader`` whose float rule also takes exponent-only and leading-dot numbers (as YAML
1.2 and every other language do). Every recipe, space file and ``--set`` value is read
through it; non-finite numbers (``.inf``, ``.nan``) are refused, with their key named,
because no setting of samplenas means "infinite" and a NaN learning rate only shows up
later as a diverged run.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from samplenas.errors import UserError

FLOAT_TAG = "tag:yaml.org,2002:float"
_FLOAT = re.compile(
    r"""^(?:
        [-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?   # 1.5, 1.e3, 1.0e-5
      | [-+]?[0-9][0-9_]*[eE][-+]?[0-9]+                # 1e-3, 2E5
      | [-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?         # .5, -.5e2
      | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*     # YAML 1.1 base 60
      | [-+]?\.(?:inf|Inf|INF)
      | \.(?:nan|NaN|NAN)
    )$""",
    re.X,
)


class Loader(yaml.SafeLoader):
    """``SafeLoader`` with the float rule users expect (``1e-3`` is a float)."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(FLOAT_TAG, _FLOAT, list("-+0123456789."))


def parse_yaml(text: str, source: object, what: str = "config file") -> Any:
    """``text`` (the contents of ``what`` ``source``) as data; bad YAML or a non-finite
    number is a ``UserError`` naming the file and the line and column, or the key."""
    try:
        data = yaml.load(text, Loader=Loader)
    except yaml.YAMLError as exc:
        raise UserError(f"{what} '{source}' is not valid YAML: {_describe(exc)}") from exc
    check_finite(data, f"{what} '{source}'")
    return data


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML scalar syntax, else the text itself."""
    try:
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError:
        return text


def _describe(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return str(problem)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


def check_finite(tree: Any, where: str, prefix: str = "") -> None:
    """Refuse ``inf`` and ``nan`` anywhere in ``tree``, naming the dotted key."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            check_finite(value, where, f"{prefix}{key}.")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            check_finite(value, where, f"{prefix}{i}.")
    elif isinstance(tree, float) and not math.isfinite(tree):
        key = prefix.rstrip(".") or "the value"
        raise UserError(f"{where}: key '{key}' is {tree}; use a finite number")
