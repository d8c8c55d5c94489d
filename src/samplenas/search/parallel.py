"""Evaluate many architectures across the ranks of a torchrun job, cached in an Archive.

Every rank holds the same list of candidates (the evolution's draws are seeded and do not
depend on the world size). Rank 0 alone reads and writes the archive: it says which
candidates are already scored, the rest are measured in rounds, each round split across
ranks by expected cost (greedy longest-processing-time on MFLOPs, not round-robin), and
the scores are gathered to every rank, so every rank tells its sampler the same thing.
Rank 0 appends each round to the archive as soon as it is gathered: a rank that dies
loses only the round in flight, and a rerun finds everything before it in the cache.
With one process a round is one evaluation, as before.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from samplenas.search.archive import Archive
from samplenas.space import Arch
from samplenas.train.distributed import DistInfo, broadcast_object, gather_objects

Row = dict[str, Any]
ROUND_PER_RANK = 8  # evaluations per rank between two gathers (and archive appends)
FAULT_RANK_ENV = "SAMPLENAS_FAULT_RANK"  # tests: this rank dies abruptly ...
FAULT_AFTER_ENV = "SAMPLENAS_FAULT_AFTER_EVALUATIONS"  # ... after this many evaluations


def lpt_split(costs: Sequence[float], parts: int) -> list[list[int]]:
    """Indices of ``costs`` in ``parts`` groups of near-equal total cost: the most
    expensive item first, each to the group with the least cost so far (ties: the lower
    group). Within a group, indices keep their order. Deterministic."""
    heap = [(0.0, g) for g in range(parts)]
    groups: list[list[int]] = [[] for _ in range(parts)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, g = heapq.heappop(heap)
        groups[g].append(i)
        heapq.heappush(heap, (load + costs[i], g))
    return [sorted(g) for g in groups]


@dataclass
class Throughput:
    """Evaluations measured and the wall time they took: evaluations per minute overall
    and per device (rank), and how busy the devices were (waiting at gathers is idle)."""

    devices: int = 1
    measured: int = 0
    wall_seconds: float = 0.0
    busy_seconds: float = 0.0  # summed over ranks

    def report(self) -> dict[str, Any]:
        rate = 60.0 * self.measured / self.wall_seconds if self.wall_seconds else None
        return {
            "devices": self.devices,
            "evaluations_per_minute": rate,
            "evaluations_per_minute_per_device": rate / self.devices if rate else None,
            "evaluation_seconds": self.wall_seconds,
            "device_busy_fraction": (
                self.busy_seconds / (self.wall_seconds * self.devices)
                if self.wall_seconds
                else None
            ),
        }


def throughput_line(report: dict[str, Any]) -> str:
    """``120 evaluations/min (60/min per device, 2 devices)`` from a ``Throughput.report``
    (its keys may sit among others); '' when nothing was measured."""
    rate = report.get("evaluations_per_minute")
    if not rate:
        return ""
    devices = report["devices"]
    return (
        f"{rate:.0f} evaluations/min ({report['evaluations_per_minute_per_device']:.0f}/min "
        f"per device, {devices} device{'s' if devices > 1 else ''})"
    )


class _Fault:
    """Test hook: die like SIGKILL after N evaluations on one rank (see the env names)."""

    def __init__(self, rank: int) -> None:
        after = int(os.environ.get(FAULT_AFTER_ENV, "0") or 0)
        self.after = after if int(os.environ.get(FAULT_RANK_ENV, "0") or 0) == rank else 0
        self.count = 0

    def tick(self) -> None:
        self.count += 1
        if self.after and self.count >= self.after:
            os._exit(137)


_faults: dict[int, _Fault] = {}


def evaluate_many(
    archs: Sequence[Arch],
    measure: Callable[[Arch], Row],
    archive: Archive | None,
    info: DistInfo,
    expected_cost: Callable[[Arch], float],
    throughput: Throughput | None = None,
    on_round: Callable[[list[Row]], None] | None = None,
) -> list[Row]:
    """The row of every arch in ``archs``, measured once across all ranks.

    ``archive`` is rank 0's cache (pass None on the other ranks; an ``Archive()`` without
    a path when nothing is kept); ``measure`` turns an arch into its row; ``on_round``
    hears the rows each gathered round added (a progress bar). Every rank must call
    this with the same ``archs``, and gets the same rows back.
    """
    known = _known_rows(archs, archive, info)
    todo = list(dict.fromkeys(a for a in archs if a not in known))
    per_round = 1 if not info.enabled else ROUND_PER_RANK * info.world_size
    fault = _faults.setdefault(info.rank, _Fault(info.rank))
    for start in range(0, len(todo), per_round):
        part = todo[start : start + per_round]
        t0 = time.perf_counter()
        mine = lpt_split([expected_cost(a) for a in part], info.world_size)[info.rank]
        measured = []
        for j in mine:
            t = time.perf_counter()
            row = measure(part[j])
            measured.append((j, row, time.perf_counter() - t))
            fault.tick()
        rows = sorted(r for rank_rows in gather_objects(measured, info) for r in rank_rows)
        for j, row, _ in rows:
            known[part[j]] = row
            if archive is not None:
                archive.add(part[j], row)
        if throughput is not None:
            throughput.measured += len(rows)
            throughput.busy_seconds += sum(seconds for _, _, seconds in rows)
            throughput.wall_seconds += time.perf_counter() - t0
        if on_round is not None:
            on_round([row for _, row, _ in rows])
    return [known[a] for a in archs]


def _known_rows(archs: Sequence[Arch], archive: Archive | None, info: DistInfo) -> dict[Arch, Row]:
    """The rows rank 0's archive already holds for ``archs``, on every rank."""
    cached = None
    if info.is_main:
        if archive is None:
            raise ValueError("rank 0 needs the archive (an Archive() keeps nothing)")
        cached = {i: archive.get(a) for i, a in enumerate(archs) if a in archive}
    cached = broadcast_object(cached, info)
    return {archs[i]: row for i, row in cached.items()}
