"""``samplenas spaces | cost | sample``: look at search spaces without training anything."""

from __future__ import annotations

import argparse
import json

from samplenas.commands.common import positive_int, read_arch
from samplenas.io import print_json
from samplenas.space import list_spaces, load_space


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spaces", help="list the shipped search spaces with size and FLOPs range")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("cost", help="analytic MFLOPs and parameters of one architecture")
    p.add_argument("--space", required=True, help="space name or YAML path")
    p.add_argument(
        "--arch",
        required=True,
        help="inline JSON, a JSON file, smallest, largest, or a NAS-Bench-201 cell string",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("sample", help="sample architectures, optionally at a FLOPs target")
    p.add_argument("--space", required=True, help="space name or YAML path")
    p.add_argument("-n", type=positive_int, default=5, help="how many (default 5)")
    p.add_argument("--target-mflops", type=float, default=None, help="FLOPs-conditioned target")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_sample)


def cmd_spaces(args: argparse.Namespace) -> int:
    rows = [load_space(name).describe() for name in list_spaces()]
    if args.json:
        print_json(rows)
        return 0
    print(f"{'name':<30} {'architectures':>14} {'min MFLOPs':>11} {'max MFLOPs':>11}")
    for r in rows:
        if "needs" in r:
            print(f"{r['name']:<30} {'needs ' + r['needs']}")
            continue
        lo = "-" if r["min_mflops"] is None else f"{r['min_mflops']:.1f}"
        hi = "-" if r["max_mflops"] is None else f"{r['max_mflops']:.1f}"
        print(f"{r['name']:<30} {r['size']:>14.3g} {lo:>11} {hi:>11}")
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    arch = read_arch(space, args.arch)
    cost = space.cost(arch)
    if args.json:
        print_json({"mflops": cost.mflops, "params_m": cost.params_m})
    else:
        print(f"{cost.mflops:.2f} MFLOPs, {cost.params_m:.3f} M parameters")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from samplenas.samplers import FlopsConditionedSampler, UniformSampler

    space = load_space(args.space)
    if args.target_mflops is None:
        sampler = UniformSampler(space, seed=args.seed)
        archs, mean_trials = sampler.ask(args.n), None
    else:
        fsampler = FlopsConditionedSampler(space, seed=args.seed, target_mflops=args.target_mflops)
        archs = fsampler.ask(args.n)
        mean_trials = fsampler.mean_trials()
    rows = []
    for a in archs:
        c = space.cost(a)
        rows.append({"arch": a.to_json(), "mflops": c.mflops, "params_m": c.params_m})
    if args.json:
        print_json({"archs": rows, "mean_trials": mean_trials})
        return 0
    for r in rows:
        print(f"{r['mflops']:9.2f} MFLOPs {r['params_m']:7.3f} M params  {json.dumps(r['arch'])}")
    if mean_trials is not None:
        print(f"mean rejection trials per sample: {mean_trials:.2f}")
    return 0
