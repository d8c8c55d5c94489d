"""``samplenas spaces | cost | sample``: look at search spaces without training anything."""

from __future__ import annotations

import argparse
import json
from typing import Any

from samplenas.commands.common import (
    ARCH_HELP,
    add_run_dir_option,
    positive_int,
    resolve_arch,
    torchrun_rank,
)
from samplenas.errors import UserError
from samplenas.io import print_json
from samplenas.space import (
    FBNetSpace,
    MBConvSpace,
    SearchSpace,
    SupernetSpace,
    list_spaces,
    load_space,
)
from samplenas.space.fbnet import BLOCK_FIELDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "spaces",
        help="list the shipped search spaces with size and FLOPs range, or describe one space",
    )
    p.add_argument(
        "space",
        nargs="?",
        help="a space file of your own (or a shipped name): its size, FLOPs and params range, "
        "input, classes and stages",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("cost", help="analytic MFLOPs and parameters of one architecture")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--space", help="space name or YAML path")
    add_run_dir_option(where, "a run directory: its space, and Pareto ids of its search", False)
    p.add_argument("--arch", required=True, help=ARCH_HELP)
    p.add_argument(
        "--latency", metavar="FILE", help="a 'samplenas latency build' table: add latency_ms"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("sample", help="sample architectures, optionally at a FLOPs target")
    p.add_argument("--space", required=True, help="space name or YAML path")
    p.add_argument("-n", type=positive_int, default=5, help="how many (default 5)")
    p.add_argument("--target-mflops", type=float, default=None, help="FLOPs-conditioned target")
    p.add_argument(
        "--latency", metavar="TABLE", help="a latency table: condition on its predicted ms"
    )
    p.add_argument(
        "--target-ms", type=float, default=None, help="latency-conditioned target (--latency)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_sample)


def cmd_spaces(args: argparse.Namespace) -> int:
    if args.space:
        return describe_one(load_space(args.space), args.json)
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


def describe_space(space: SearchSpace) -> dict[str, Any]:
    """What a space holds: size and cost range, and for MobileNet-style spaces the input,
    classes and every stage's choices (what a user checks a space file of their own by)."""
    info = space.describe()
    if isinstance(space, FBNetSpace):
        return {**info, **_input_facts(space), **_fbnet_facts(space)}
    if not isinstance(space, MBConvSpace):
        return info
    c = space.config
    return {
        **info,
        **_input_facts(space),
        "stem": {
            "width": list(c.stem_width),
            "kernel_size": c.stem_kernel,
            "stride": c.stem_stride,
        },
        "stages": [
            {
                "name": st.name,
                "width": list(st.width),
                "depth": list(st.depth),
                "kernel_size": list(st.kernel_size),
                "expand_ratio": list(st.expand_ratio),
                "stride": st.stride,
                "se": st.se,
            }
            for st in c.stages
        ],
        "head": {"width": list(c.head_width), "expand": c.head_expand},
    }


def _input_facts(space: SupernetSpace) -> dict[str, Any]:
    c = space.config
    return {
        "min_params_m": space.cost(space.smallest()).params_m,
        "max_params_m": space.cost(space.largest()).params_m,
        "in_channels": c.in_channels,
        "num_classes": c.num_classes,
        "resolution": list(c.resolution),
    }


def _fbnet_facts(space: FBNetSpace) -> dict[str, Any]:
    """Stem, every block group's choices (one per block when fine) and the head."""
    c = space.config
    return {
        "distinct_networks": space.distinct_size(),
        "fine": c.fine,
        "stem": {"width": c.stem_width, "kernel_size": c.stem_kernel, "stride": c.stem_stride},
        "groups": [
            {
                "name": g.name,
                "repeat": g.repeat,
                "stride": g.stride,
                **{f: list(g.choices(f)) for f in BLOCK_FIELDS},
            }
            for g in c.groups
        ],
        "head": {"width": c.head_width},
    }


def describe_one(space: SearchSpace, as_json: bool) -> int:
    info = describe_space(space)
    if as_json:
        print_json(info)
        return 0
    if "needs" in info:
        raise UserError(f"space '{space.name}' needs an optional package: {info['needs']}")
    print(f"space {info['name']}: {info['size']:.4g} architectures")
    if info.get("min_mflops") is not None:
        print(f"  MFLOPs {info['min_mflops']:.3f} - {info['max_mflops']:.3f}", end="")
        if "min_params_m" in info:
            print(f", params {info['min_params_m']:.4f} - {info['max_params_m']:.4f} M", end="")
        print()
    if "groups" in info:
        _print_groups(info)
        return 0
    if "stages" not in info:
        return 0
    res = "/".join(map(str, info["resolution"]))
    print(
        f"  input {info['in_channels']} channel(s), resolution {res}; {info['num_classes']} classes"
    )
    stem = info["stem"]
    print(
        f"  {'stem':<6} width {_choices(stem['width'])}, {stem['kernel_size']}x"
        f"{stem['kernel_size']} stride {stem['stride']}"
    )
    for st in info["stages"]:
        print(
            f"  {st['name']:<6} width {_choices(st['width'])}, depth {_choices(st['depth'])}, "
            f"kernel {_choices(st['kernel_size'])}, expand {_choices(st['expand_ratio'])}, "
            f"stride {st['stride']}" + (", SE" if st["se"] else "")
        )
    head = info["head"]
    print(f"  {'head':<6} width {_choices(head['width'])}, expand {head['expand']}")
    return 0


def _print_groups(info: dict[str, Any]) -> None:
    res = "/".join(map(str, info["resolution"]))
    print(
        f"  {info['distinct_networks']:.4g} distinct networks (skipping makes other choices moot)"
    )
    print(
        f"  input {info['in_channels']} channel(s), resolution {res}; {info['num_classes']} classes"
    )
    stem = info["stem"]
    print(
        f"  {'stem':<6} width {stem['width']}, {stem['kernel_size']}x{stem['kernel_size']} "
        f"stride {stem['stride']}"
    )
    for g in info["groups"]:
        print(
            f"  {g['name']:<6} x{g['repeat']} stride {g['stride']}: kernel "
            f"{_choices(g['kernel'])} (0 = skip), swish {_choices(g['swish'])}, attention "
            f"{_choices(g['attention'])} (1 SE, 2/4 split-attention), expand % "
            f"{_choices(g['expand_pct'])}, width {_choices(g['width'])}"
        )
    print(f"  {'head':<6} 1x1 conv to {info['head']['width']}, pool, linear")


def _choices(values: list[int]) -> str:
    return "/".join(map(str, values))


def cmd_cost(args: argparse.Namespace) -> int:
    if torchrun_rank():  # printed once, by rank 0
        return 0
    if args.run:  # the run's recipe, and its weights only to check a Pareto id: no data
        from samplenas.train.runs import load_run_weights, run_space

        pareto_id = args.arch.isdigit()
        run = load_run_weights(args.run) if pareto_id else None
        space: SearchSpace = run.space if run else run_space(args.run)
        arch = resolve_arch(args.arch, space, run)
    else:
        space = load_space(args.space)
        arch = resolve_arch(args.arch, space)
    cost = space.cost(arch)
    result = {"mflops": cost.mflops, "params_m": cost.params_m}
    if args.latency:
        from samplenas.latency import load_table
        from samplenas.latency.blocks import require_mbconv

        result["latency_ms"] = load_table(args.latency).predict(require_mbconv(space), arch)
    if args.json:
        print_json(result)
        return 0
    line = f"{cost.mflops:.2f} MFLOPs, {cost.params_m:.3f} M parameters"
    if args.latency:
        line += f", {result['latency_ms']:.3f} ms (latency table)"
    print(line)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from samplenas.samplers import FlopsConditionedSampler, UniformSampler
    from samplenas.space.cost import make_cost

    space = load_space(args.space)
    if args.target_mflops is None and args.target_ms is None:
        sampler = UniformSampler(space, seed=args.seed)
        archs, mean_trials = sampler.ask(args.n), None
    else:
        fsampler = FlopsConditionedSampler(
            space,
            seed=args.seed,
            target_mflops=args.target_mflops,
            latency_table=args.latency,
            target_ms=args.target_ms,
        )
        archs = fsampler.ask(args.n)
        mean_trials = fsampler.mean_trials()
    latency = make_cost(space, "latency", args.latency) if args.latency else None
    rows = []
    for a in archs:
        c = space.cost(a)
        rows.append({"arch": a.to_json(), "mflops": c.mflops, "params_m": c.params_m})
        if latency is not None:
            rows[-1]["latency_ms"] = latency(a)
    if args.json:
        print_json({"archs": rows, "mean_trials": mean_trials})
        return 0
    for r in rows:
        ms = f" {r['latency_ms']:8.3f} ms" if "latency_ms" in r else ""
        print(
            f"{r['mflops']:9.2f} MFLOPs {r['params_m']:7.3f} M params{ms}  {json.dumps(r['arch'])}"
        )
    if mean_trials is not None:
        print(f"mean rejection trials per sample: {mean_trials:.2f}")
    return 0
