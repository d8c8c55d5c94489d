"""Training throughput of the smallest and largest static models of a space.

Run: python benchmarks/space_throughput.py [SPACE] [--threads N]
  ->  benchmarks/results/space_throughput.json (attentive-fashion, 2 threads), else
      benchmarks/results/space_throughput_SPACE_Nt.json
(SGD step, batch 128, both memory formats; median of 5 timed steps after warm-up.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from samplenas.space import load_space
from samplenas.supernet import build_model


def images_per_second(space, arch, channels_last: bool, batch: int = 128) -> float:
    model = build_model(space, arch)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, space.config.in_channels, 28, 28)
    y = torch.randint(0, space.config.num_classes, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(8):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("space", nargs="?", default="attentive-fashion")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = args.space
    space = load_space(name)
    rows = {}
    for label, arch in (("smallest", space.smallest()), ("largest", space.largest())):
        cost = space.cost(arch)
        rows[label] = {
            "mflops": cost.mflops,
            "params_m": cost.params_m,
            "images_per_second_contiguous": round(images_per_second(space, arch, False)),
            "images_per_second_channels_last": round(images_per_second(space, arch, True)),
        }
    result = {
        "space": name,
        "size": space.size(),
        "batch": 128,
        "threads": args.threads,
        "archs": rows,
    }
    default = name == "attentive-fashion" and args.threads == 2
    stem = "space_throughput" if default else f"space_throughput_{name}_{args.threads}t"
    out = Path(__file__).parent / "results" / f"{stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
