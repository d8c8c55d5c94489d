"""Which sliced 1x1 convolutions should take ``SlicedLinear``'s hand-written backward.

Run: python benchmarks/sliced_linear.py  ->  benchmarks/results/sliced_linear.json
For the smallest arch of `attentive-fashion` (batch 128) and `attentive` (batch 8, 224²):
steps with ``FUNCTION_MIN_ELEMENTS`` at each candidate (0 = every sliced weight,
never = autograd slicing only, the shipped 2**18 in between) and a static-model step
are timed in rotation, and each candidate's step is divided by the static step of its
round, which cancels the host's drift. Then the default recipe's step (largest + one
random + smallest, same random arch for both) with the shipped threshold vs never.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from overhead_alternatives import make_models  # seeded supernet, its static model, one batch

from samplenas.io import atomic_write_json
from samplenas.space import load_space
from samplenas.supernet import sliced_linear
from samplenas.train.optim import sgd

OUT = Path(__file__).parent / "results" / "sliced_linear.json"
CANDIDATES = {"0": 0, "2**14": 2**14, "2**16": 2**16, "2**18": 2**18, "never": 2**62}
SETTINGS = {"attentive-fashion": (128, 28, 60.0), "attentive": (8, 224, 120.0)}
SHIPPED = sliced_linear.FUNCTION_MIN_ELEMENTS


def step(model, x, y, opt, archs=None) -> float:
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    for arch in archs or [None]:
        if arch is not None:
            model.set_arch(arch)
        F.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - start


def with_threshold(elements: int, run: Callable[[], float]) -> float:
    sliced_linear.FUNCTION_MIN_ELEMENTS = elements
    try:
        return run()
    finally:
        sliced_linear.FUNCTION_MIN_ELEMENTS = SHIPPED


def median_iqr(values: list[float]) -> dict:
    q1, q3 = np.percentile(values, [25, 75])
    return {"median": statistics.median(values), "iqr": [float(q1), float(q3)]}


def space_rows(name: str) -> dict:
    batch, size, seconds = SETTINGS[name]
    space = load_space(name)
    supernet, static, x, y = make_models("smallest", name, batch, size)
    opt_s = sgd(supernet.parameters(), 1e-4, 0.9, False)
    opt_m = sgd(static.parameters(), 1e-4, 0.9, False)
    smallest = [space.smallest()]

    def candidate(elements: int) -> float:
        return with_threshold(elements, lambda: step(supernet, x, y, opt_s, smallest))

    for elements in CANDIDATES.values():  # warm-up
        candidate(elements), step(static, x, y, opt_m)
    ratios: dict[str, list[float]] = {label: [] for label in CANDIDATES}
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        base = step(static, x, y, opt_m)
        for label, elements in CANDIDATES.items():
            ratios[label].append(candidate(elements) / base)
    row: dict = {"batch": batch, "rounds": len(ratios["0"]), "smallest_over_static": {}}
    for label, values in ratios.items():
        row["smallest_over_static"][label] = median_iqr(values)

    rng = np.random.default_rng(0)
    sandwich: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        archs = [space.largest(), space.sample(rng), space.smallest()]
        order = [SHIPPED, CANDIDATES["never"]]
        if len(sandwich) % 2:  # alternate which goes first
            order.reverse()
        took = {e: with_threshold(e, lambda a=archs: step(supernet, x, y, opt_s, a)) for e in order}
        sandwich.append(took[SHIPPED] / took[CANDIDATES["never"]])
    row["sandwich_shipped_over_never"] = {"pairs": len(sandwich), **median_iqr(sandwich)}
    return row


def main() -> None:
    torch.set_num_threads(2)
    result = {"shipped": SHIPPED, "spaces": {}}
    for name in SETTINGS:
        result["spaces"][name] = space_rows(name)
        print(name, result["spaces"][name], flush=True)
        atomic_write_json(OUT, result)


if __name__ == "__main__":
    main()
