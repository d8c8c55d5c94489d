"""The latency table: one measured entry per block configuration, plus a per-network constant.

Plain JSON, ``{"settings": {...}, "entries": {key: ms}, "constant_ms": c, ...}``. The
predicted latency of an Arch is the sum of its blocks' entries plus ``constant_ms``.

The constant is what the whole network costs beyond its blocks timed one by one (the
input tensor, module calls between blocks, caches warm from the previous block) or saves
(a block timed alone starts with cold caches): the MEDIAN over a few calibration networks
(the smallest, the largest and random ones, seeded) of their end-to-end time minus the
sum of their blocks' entries. The residuals it came from are kept in the file.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from samplenas.errors import UserError
from samplenas.io import atomic_write_json
from samplenas.latency.blocks import arch_blocks, inventory
from samplenas.latency.measure import sample_archs, time_arch, time_block
from samplenas.latency.timing import TimingSettings
from samplenas.space import Arch, MBConvSpace

SAVE_EVERY_S = 5.0  # a resumed build loses at most this much measuring


@dataclass
class LatencyTable:
    space: str
    resolutions: tuple[int, ...]
    settings: TimingSettings
    entries: dict[str, float] = field(default_factory=dict)
    constant_ms: float | None = None
    constant_residuals_ms: list[float] = field(default_factory=list)
    # per-resolution scale and offset fitted on measured networks (latency.correction)
    correction: dict[str, Any] | None = None

    def settings_json(self) -> dict[str, Any]:
        return {
            **self.settings.to_json(),
            "space": self.space,
            "resolutions": list(self.resolutions),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings_json(),
            "entries": self.entries,
            "constant_ms": self.constant_ms,
            "constant_residuals_ms": self.constant_residuals_ms,
            "correction": self.correction,
        }

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_json())

    def blocks_ms(self, space: MBConvSpace, arch: Arch) -> float:
        """Sum of the entries of ``arch``'s blocks (no constant)."""
        total = 0.0
        for block in arch_blocks(space, arch):
            key = block.key(space)
            if key not in self.entries:
                raise UserError(
                    f"the latency table lacks block '{key}' (resolution {arch['resolution']}; "
                    f"the table holds {list(self.resolutions)}); run 'samplenas latency "
                    "build' with that --resolution into a new table"
                )
            total += self.entries[key]
        return total

    def predict(self, space: MBConvSpace, arch: Arch, corrected: bool = True) -> float:
        """Predicted ms of ``arch``: the sum of its blocks' entries plus the constant, or,
        when the table carries a correction (and ``corrected``), the sum scaled and
        offset by the correction fitted for the arch's resolution."""
        self.require_usable(space)
        blocks = self.blocks_ms(space, arch)
        scale, offset = self.affine(int(arch["resolution"]), corrected)
        return scale * blocks + offset

    def require_usable(self, space: MBConvSpace) -> None:
        """A prediction needs the table of this space, finished (its constant measured)."""
        if space.name != self.space:
            raise UserError(
                f"the latency table is of space '{self.space}', not '{space.name}'; "
                "build one for this space with 'samplenas latency build'"
            )
        if self.constant_ms is None:
            raise UserError(
                "the latency table is unfinished (no constant yet); run the same "
                "'samplenas latency build' again to finish it"
            )

    def affine(self, resolution: int, corrected: bool = True) -> tuple[float, float]:
        """(scale, offset ms) turning the blocks' sum into the prediction at ``resolution``."""
        if corrected and self.correction is not None:
            key = str(resolution)
            return self.correction["scale"][key], self.correction["offset_ms"][key]
        return 1.0, float(self.constant_ms or 0.0)


def load_table(path: str | Path) -> LatencyTable:
    """A table file, or UserError naming what is wrong with it."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read latency table '{path}': {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"'{path}' is not a JSON latency table") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("settings"), dict):
        raise UserError(f"'{path}' lacks 'settings'; build it with 'samplenas latency build'")
    s = raw["settings"]
    entries = raw.get("entries")
    constant = raw.get("constant_ms")
    ok = (
        isinstance(entries, dict)
        and all(isinstance(v, (int, float)) for v in entries.values())
        and (constant is None or isinstance(constant, (int, float)))
        and isinstance(s.get("space"), str)
        and isinstance(s.get("resolutions"), list)
    )
    if not ok:
        raise UserError(
            f"'{path}' is damaged (entries must map block keys to ms, constant_ms a number); "
            "build it again with 'samplenas latency build'"
        )
    return LatencyTable(
        space=s["space"],
        resolutions=tuple(s["resolutions"]),
        settings=TimingSettings.from_json(s, str(path)),
        entries={k: float(v) for k, v in entries.items()},
        constant_ms=None if constant is None else float(constant),
        constant_residuals_ms=list(raw.get("constant_residuals_ms") or []),
        correction=_correction(raw.get("correction"), s["resolutions"], path),
    )


def _correction(raw: Any, resolutions: list[int], path: Path) -> dict[str, Any] | None:
    """A stored correction, checked: a number per resolution for scale and offset."""
    if raw is None:
        return None
    keys = {str(r) for r in resolutions}
    ok = isinstance(raw, dict) and all(
        isinstance(raw.get(f), dict)
        and set(raw[f]) == keys
        and all(isinstance(v, (int, float)) for v in raw[f].values())
        for f in ("scale", "offset_ms")
    )
    if not ok:
        raise UserError(
            f"'{path}' has a damaged 'correction' (scale and offset_ms per resolution); "
            "fit it again with 'samplenas latency fit'"
        )
    return raw


def differing_setting(recorded: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """The first setting two tables disagree on, as 'name=recorded, not wanted'."""
    for name in sorted(set(recorded) | set(wanted)):
        if recorded.get(name) != wanted.get(name):
            return f"{name}={recorded.get(name)!r}, not {wanted.get(name)!r}"
    return None


def build_table(
    space: MBConvSpace,
    settings: TimingSettings,
    out: str | Path,
    resolutions: tuple[int, ...] | None = None,
    calibration: int = 5,
    progress: bool = True,
) -> LatencyTable:
    """Measure every block of the space (at ``resolutions``) into ``out``, then the constant.

    Resumable: entries ``out`` already holds under the same settings are kept, and the
    file is rewritten atomically every few seconds; a file of other settings is refused.
    """
    resolutions = tuple(sorted(set(resolutions or space.config.resolution)))
    unknown = sorted(set(resolutions) - set(space.config.resolution))
    if unknown:
        raise UserError(
            f"--resolution {unknown[0]} is not a resolution of space '{space.name}' "
            f"({list(space.config.resolution)})"
        )
    table = LatencyTable(space.name, resolutions, settings)
    out = Path(out)
    if out.exists():
        old = load_table(out)
        diff = differing_setting(old.settings_json(), table.settings_json())
        if diff:
            raise UserError(
                f"'{out}' was measured with {diff}; tables of different settings are not "
                "mixed: choose another --out or the same settings"
            )
        table = old
    todo = [b for b in inventory(space, resolutions) if b.key(space) not in table.entries]
    saved = time.monotonic()
    try:
        for block in tqdm(todo, disable=not progress, unit="block", desc="blocks"):
            table.entries[block.key(space)] = time_block(space, block, settings)
            if time.monotonic() - saved > SAVE_EVERY_S:
                table.save(out)
                saved = time.monotonic()
        if todo or table.constant_ms is None:
            table.constant_ms = None
            table.correction = None  # fitted on other entries: fit it again
            _measure_constant(space, table, calibration)
    finally:
        table.save(out)
    return table


def calibration_archs(space: MBConvSpace, resolutions: tuple[int, ...], n: int) -> list[Arch]:
    """The smallest and largest archs at the table's resolutions, then seeded random ones."""
    ends = [
        space.smallest().replace(resolution=min(resolutions)),
        space.largest().replace(resolution=max(resolutions)),
    ]
    archs = list(dict.fromkeys(space.validate(a) for a in ends))
    for arch in sample_archs(space, n + len(archs), resolutions, seed=0):
        if len(archs) >= n:
            break
        if arch not in archs:
            archs.append(arch)
    return archs[:n]


def _measure_constant(space: MBConvSpace, table: LatencyTable, n: int) -> None:
    residuals = [
        time_arch(space, arch, table.settings) - table.blocks_ms(space, arch)
        for arch in calibration_archs(space, table.resolutions, n)
    ]
    table.constant_residuals_ms = residuals
    table.constant_ms = statistics.median(residuals)
