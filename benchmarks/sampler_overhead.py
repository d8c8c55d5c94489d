"""What attentive sampling costs per training step, next to uniform sampling.

Run: python benchmarks/sampler_overhead.py  ->  benchmarks/results/sampler_overhead.json
One trainer per sampler on the default recipe (`fashion`, batch 128), all
fed the same minibatches. Steps are timed in rounds (uniform, then each attentive
sampler, one step each) so the host's drift hits all alike; the step-time ratio to the
uniform step of the same round is reported as a median. BestUp-3 (loss) scores 2 x 3
candidates per step with forward passes without gradients; BestUp-50 (acc) asks the
random-forest predictor about 2 x 50 candidates instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from samplenas.io import atomic_write_json
from samplenas.train import Trainer, load_config

OUT = Path(__file__).parent / "results" / "sampler_overhead.json"
PREDICTOR = Path(__file__).parent / "results" / "attentive_study" / "predictor-s0" / "forest.npz"


def make_trainer(sampler: str, out: Path) -> Trainer:
    options = {"predictor": str(PREDICTOR)} if sampler.endswith("-acc") else {}
    cfg = load_config(
        "fashion",
        {
            "sampler": {"name": sampler, "options": options},
            "train": {"num_random": 2},  # the paper's sandwich, as measured
            "eval_every_epochs": 0,
        },
    )
    return Trainer(cfg, out / sampler, progress=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--samplers", nargs="+", default=["uniform", "bestup-3-loss", "bestup-50-acc"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {s: make_trainer(s, Path(tmp)) for s in args.samplers}
        batches = trainers[args.samplers[0]].loader.epoch(0, 0)
        seconds: dict[str, list[float]] = {s: [] for s in args.samplers}
        for r, (x, y) in enumerate(batches):
            if r > args.rounds:
                break
            for name, trainer in trainers.items():
                t = time.perf_counter()
                trainer.train_step(x, y)
                if r > 0:  # the first round warms up allocator and kernels
                    seconds[name].append(time.perf_counter() - t)
        extra = {s: t.sampler.stats() for s, t in trainers.items()}
    base = seconds[args.samplers[0]]
    result = {
        "recipe": "fashion (batch 128, sandwich: largest + 2 sampled + smallest)",
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "samplers": {
            s: {
                "median_step_ms": round(1000 * statistics.median(v), 1),
                "median_ratio_to_uniform": round(
                    statistics.median(a / b for a, b in zip(v, base, strict=True)), 3
                ),
                "candidates_scored_per_step": extra[s].get("candidates_scored", 0.0)
                / (args.rounds + 1),
                "extra_forward_passes_per_step": extra[s].get("extra_forward_passes", 0.0)
                / (args.rounds + 1),
            }
            for s, v in seconds.items()
        },
    }
    atomic_write_json(OUT, result)
    print(json.dumps(result["samplers"], indent=2))


if __name__ == "__main__":
    main()
