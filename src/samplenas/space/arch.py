"""Arch: one architecture as an immutable, hashable, JSON-serialisable value."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any


def _freeze(value: Any) -> Any:
    """Turn lists (also nested) into tuples so the value can be hashed."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, bool):
        return value
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return value.item()
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class Arch(Mapping[str, Any]):
    """An architecture: a read-only mapping from field names to ints or (nested) tuples.

    Equality and hashing are by value, so Archs can be dictionary keys, set members and
    archive identifiers. ``to_json()`` gives the plain-JSON form spaces document.
    """

    __slots__ = ("_items", "_hash")

    def __init__(self, fields: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        data = dict(fields or {}, **kwargs)
        items = tuple((str(k), _freeze(v)) for k, v in data.items())
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_hash", hash(tuple(sorted(items))))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Arch is immutable")

    def __getitem__(self, key: str) -> Any:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Arch):
            return self._hash == other._hash and dict(self._items) == dict(other._items)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Arch({self.to_json_str()})"

    def __reduce__(self) -> tuple:
        return (Arch, (self.to_json(),))

    def to_json(self) -> dict[str, Any]:
        """The plain-JSON form (lists, not tuples), in the space's field order."""
        return {k: _thaw(v) for k, v in self._items}

    def to_json_str(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    def replace(self, **changes: Any) -> Arch:
        """A copy with some fields changed."""
        data = self.to_json()
        data.update(changes)
        return Arch(data)
