"""Cost of weight sharing: a training step inside the supernet vs the same static model.

Run: python benchmarks/supernet_overhead.py  ->  benchmarks/results/supernet_overhead.json
For the smallest, a median-FLOPs and the largest arch of `attentive` (batch 8, 224x224x3)
and `attentive-fashion` (batch 128, 28x28x1): forward + backward + SGD step (the
trainer's fused SGD), channels-last, 2 threads; supernet and exported model timed
alternately (ABAB...) for 30 s per arch, and the median of the pairwise ratios reported.
Also images/s of one full sandwich step and the peak resident memory.

python benchmarks/supernet_overhead.py --retime SPACE ARCH SECONDS  ->
supernet_overhead_retime.json: one row of the table (ARCH smallest|median|largest) timed
for longer, keyed "SPACE ARCH".

python benchmarks/supernet_overhead.py --batch-sweep  ->  supernet_overhead_batch.json:
the smallest `attentive-fashion` arch at batch 2..512, to split the supernet's extra time
into a fixed cost per step (slice views, full-size gradients, the full-size update) and a
cost per image.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from samplenas.io import atomic_write_json
from samplenas.space import load_space
from samplenas.supernet import MBConvSupernet
from samplenas.train.optim import sgd

OUT = Path(__file__).parent / "results" / "supernet_overhead.json"
SWEEP_OUT = OUT.with_name("supernet_overhead_batch.json")
RETIME_OUT = OUT.with_name("supernet_overhead_retime.json")
SWEEP_BATCHES = (2, 32, 128, 512)
SETTINGS = {"attentive-fashion": (128, 28, 30.0), "attentive": (8, 224, 30.0)}


def step_time(model, x, y, opt, before=None) -> float:
    if before:
        before()
    t = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - t


def median_arch(space, rng):
    archs = space.sample_many(rng, 2001)
    flops = [space.mflops(a) for a in archs]
    return archs[int(np.argsort(flops)[len(flops) // 2])]


def compare(space, arch, batch: int, size: int, seconds: float) -> dict:
    """Median of pairwise ratios of adjacent supernet / static steps.

    The hosts this runs on are shared VMs whose speed drifts by 10-20% within minutes;
    the ratio of two adjacent steps cancels that drift, a ratio of separate medians does
    not. Pairs are timed for ``seconds`` (at least 5, at most 200 pairs).
    """
    supernet = MBConvSupernet(space).to(memory_format=torch.channels_last)
    supernet.set_arch(arch)
    static = supernet.export(arch).to(memory_format=torch.channels_last)
    x = torch.randn(batch, space.config.in_channels, size, size).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, space.config.num_classes, (batch,))
    opt_s = sgd(supernet.parameters(), lr=1e-4, momentum=0.9, nesterov=False)
    opt_m = sgd(static.parameters(), lr=1e-4, momentum=0.9, nesterov=False)
    for _ in range(3):  # warm-up
        step_time(supernet, x, y, opt_s)
        step_time(static, x, y, opt_m)
    sup, sta = [], []
    started = time.perf_counter()
    while len(sup) < 200 and (len(sup) < 5 or time.perf_counter() - started < seconds):
        sup.append(step_time(supernet, x, y, opt_s, lambda: supernet.set_arch(arch)))
        sta.append(step_time(static, x, y, opt_m))
    ratios = np.array(sup) / np.array(sta)
    return {
        "mflops": space.mflops(arch),
        "pairs": len(sup),
        "supernet_ms": 1000 * statistics.median(sup),
        "static_ms": 1000 * statistics.median(sta),
        "extra_ms": 1000 * float(np.median(np.array(sup) - np.array(sta))),
        "ratio": float(np.median(ratios)),
        "ratio_iqr": [float(q) for q in np.percentile(ratios, [25, 75])],
    }


def sandwich_rate(space, batch: int = 128, steps: int = 10) -> float:
    net = MBConvSupernet(space).to(memory_format=torch.channels_last)
    opt = sgd(net.parameters(), lr=1e-4, momentum=0.9, nesterov=False)
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    rng = np.random.default_rng(0)
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        for arch in (space.largest(), space.sample(rng), space.sample(rng), space.smallest()):
            net.set_arch(arch)
            F.cross_entropy(net(x), y).backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def batch_sweep() -> None:
    """The smallest arch's overhead against batch size: fixed vs per-image cost."""
    space = load_space("attentive-fashion")
    rows = {}
    for batch in SWEEP_BATCHES:
        rows[str(batch)] = compare(space, space.smallest(), batch, 28, 30.0)
        print("batch", batch, json.dumps(rows[str(batch)]), flush=True)
    atomic_write_json(
        SWEEP_OUT, {"space": "attentive-fashion", "arch": "smallest", "batches": rows}
    )


def table_archs(space) -> list[tuple[str, dict]]:
    rng = np.random.default_rng(0)
    return [
        ("smallest", space.smallest()),
        ("median", median_arch(space, rng)),
        ("largest", space.largest()),
    ]


def retime(name: str, label: str, seconds: float) -> None:
    """One table row timed for ``seconds`` instead of 30 (the big space's rows are noisy)."""
    space = load_space(name)
    batch, size, _ = SETTINGS[name]
    arch = dict(table_archs(space))[label]
    row = {"batch": batch, "input": size, "seconds": seconds}
    row.update(compare(space, arch, batch, size, seconds))
    result = json.loads(RETIME_OUT.read_text()) if RETIME_OUT.is_file() else {}
    result[f"{name} {label}"] = row
    atomic_write_json(RETIME_OUT, result)
    print(json.dumps(row))


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    if sys.argv[1:] == ["--batch-sweep"]:
        batch_sweep()
        return
    if sys.argv[1:2] == ["--retime"]:
        retime(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    which = sys.argv[1:] or ["attentive-fashion", "attentive"]
    result: dict = {"threads": 2, "memory_format": "channels_last", "spaces": {}}
    for name in which:
        space = load_space(name)
        batch, size, seconds = SETTINGS[name]
        rows = {}
        for label, arch in table_archs(space):
            rows[label] = compare(space, arch, batch, size, seconds)
            print(name, label, json.dumps(rows[label]), flush=True)
        result["spaces"][name] = {"batch": batch, "input": size, "archs": rows}
    if "attentive-fashion" in which:
        result["sandwich_images_per_second_fashion"] = sandwich_rate(
            load_space("attentive-fashion")
        )
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    atomic_write_json(OUT, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
