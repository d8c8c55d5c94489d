"""``samplenas demo``: the main job on the embedded default, for a first look.

Until the supernet trainer lands, this shows the Foundation: the shipped spaces and
FLOPs-conditioned sampling across the `attentive-fashion` FLOPs range.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job on the embedded default")
    p.add_argument("--space", default="attentive-fashion")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from samplenas.commands.spaces import cmd_spaces
    from samplenas.samplers import FlopsConditionedSampler
    from samplenas.space import load_space

    cmd_spaces(argparse.Namespace(json=False))
    space = load_space(args.space)
    t = time.perf_counter()
    sampler = FlopsConditionedSampler(space, seed=args.seed)
    print(
        f"\nFLOPs prior for '{space.name}': {sampler.prior.n_buckets} buckets of "
        f"{sampler.prior.step:g} MFLOPs (built or loaded in {time.perf_counter() - t:.1f} s)"
    )
    lo, hi = sampler.prior.min_mflops, sampler.prior.max_mflops
    print(f"{'target':>8} {'MFLOPs':>8} {'params M':>9} {'trials':>6}  architecture")
    for target in np.linspace(lo, hi, 6):
        fixed = FlopsConditionedSampler(
            space, seed=args.seed, prior=sampler.prior, target_mflops=float(target)
        )
        arch = fixed.ask(1)[0]
        cost = space.cost(arch)
        trials = int(fixed.last_trials[0])
        print(
            f"{target:8.2f} {cost.mflops:8.2f} {cost.params_m:9.3f} {trials:6d}"
            f"  {arch.to_json_str()}"
        )
    archs = sampler.ask(10_000)
    mean_mflops = np.mean([space.mflops(a) for a in archs])
    print(
        f"\n10,000 samples with τ ~ π(τ): {sampler.mean_trials():.2f} rejection trials each "
        f"on average; mean {mean_mflops:.2f} MFLOPs"
    )
    return 0
