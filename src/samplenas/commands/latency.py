"""``samplenas latency build | check | measure``: latency measured on this device."""

from __future__ import annotations

import argparse
import json

from samplenas.commands.common import (
    ARCH_HELP,
    add_num_archs_option,
    positive_int,
    resolve_arch,
)
from samplenas.errors import UserError
from samplenas.io import print_json
from samplenas.space import load_space


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency", help="per-block latency tables measured on this device")
    cmds = p.add_subparsers(dest="latency_command", required=True, parser_class=type(p))

    b = cmds.add_parser("build", help="time every block of a space into a JSON table (resumable)")
    b.add_argument("--space", required=True, help="space name or YAML path")
    add_timing_options(b)
    b.add_argument(
        "--resolution",
        type=positive_int,
        action="append",
        help="only this input resolution (repeatable; default: all of the space's)",
    )
    b.add_argument("--out", required=True, help="the table's JSON file (resumed if it exists)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.set_defaults(func=cmd_build)

    c = cmds.add_parser("check", help="time random networks whole; score the table and FLOPs")
    c.add_argument("--space", required=True, help="space name or YAML path")
    c.add_argument("--table", required=True, help="a table from 'samplenas latency build'")
    add_num_archs_option(c, 50, "how many networks (default 50)", positive_int)
    c.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_check)

    f = cmds.add_parser(
        "fit", help="fit a per-resolution correction on timed networks, stored in the table"
    )
    f.add_argument("--space", required=True, help="space name or YAML path")
    f.add_argument("--table", required=True, help="a table from 'samplenas latency build'")
    add_num_archs_option(f, 40, "networks to fit on (default 40)", positive_int)
    f.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.add_argument("--json", action="store_true", help="print JSON")
    f.set_defaults(func=cmd_fit)

    m = cmds.add_parser("measure", help="time one architecture end to end")
    m.add_argument("--space", required=True, help="space name or YAML path")
    m.add_argument("--arch", required=True, help=ARCH_HELP)
    add_timing_options(m)
    m.add_argument("--table", help="also print this table's prediction")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(func=cmd_measure)


def add_timing_options(p: argparse.ArgumentParser) -> None:
    """--device, --threads, --batch, --format, --warmup, --repeats, --rounds (what a time
    depends on)."""
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="default cpu")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    p.add_argument(
        "--format",
        choices=["channels-last", "nchw"],
        default="channels-last",
        help="memory format (default channels-last)",
    )
    p.add_argument("--warmup", type=positive_int, default=10, help="untimed runs (default 10)")
    p.add_argument("--repeats", type=positive_int, default=30, help="timed runs (default 30)")
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=3,
        help="rounds of --repeats runs; the time is the smallest round median (default 3)",
    )


def timing_settings(args: argparse.Namespace):
    from samplenas.latency import TimingSettings

    return TimingSettings(
        device=args.device,
        threads=args.threads,
        batch=args.batch,
        memory_format=args.format,
        warmup=args.warmup,
        repeats=args.repeats,
        rounds=args.rounds,
    )


def _mbconv_space(text: str):
    from samplenas.latency.blocks import require_mbconv

    return require_mbconv(load_space(text))


def cmd_build(args: argparse.Namespace) -> int:
    from samplenas.latency import build_table

    space = _mbconv_space(args.space)
    settings = timing_settings(args)
    res = tuple(args.resolution) if args.resolution else None
    table = build_table(space, settings, args.out, res, progress=not args.no_progress)
    summary = {
        "table": str(args.out),
        "entries": len(table.entries),
        "constant_ms": table.constant_ms,
        "settings": table.settings_json(),
    }
    if args.json:
        print_json(summary)
    else:
        print(
            f"{len(table.entries)} block entries, constant {table.constant_ms:.3f} ms "
            f"({settings.device}, {settings.threads} thread(s), batch {settings.batch}, "
            f"{settings.memory_format}) -> {args.out}"
        )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from samplenas.latency import check_table, load_table

    space = _mbconv_space(args.space)
    report = check_table(
        space, load_table(args.table), args.n, args.seed, progress=not args.no_progress
    )
    if args.json:
        print_json(report)
        return 0
    print(
        f"{report['n']} networks: table Kendall tau {report['kendall_tau']:.3f}, "
        f"MAPE {report['mape']:.1f} %; FLOPs Kendall tau {report['flops_tau']:.3f}"
    )
    for w in report["worst"]:
        print(
            f"  worst: measured {w['measured_ms']:.3f} ms, predicted {w['predicted_ms']:.3f} ms "
            f"({w['error_pct']:.1f} %)  {json.dumps(w['arch'])}"
        )
    corr = report["corrected"]
    if corr:
        print(
            f"with the correction (fitted on {corr['fitted_on']} other networks; these "
            f"{corr['held_out']} are held out): Kendall tau {report['kendall_tau']:.3f} -> "
            f"{corr['kendall_tau']:.3f}, MAPE {report['mape']:.1f} % -> {corr['mape']:.1f} %"
        )
    else:
        print("no correction in the table ('samplenas latency fit' fits one)")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from samplenas.latency import load_table
    from samplenas.latency.check import fit_correction

    space = _mbconv_space(args.space)
    table = load_table(args.table)
    corr = fit_correction(space, table, args.n, args.seed, progress=not args.no_progress)
    table.save(args.table)
    fit = corr["fitted_on"]
    summary = {
        "table": str(args.table),
        "scale": corr["scale"],
        "offset_ms": corr["offset_ms"],
        **{k: v for k, v in fit.items() if k not in ("archs", "measured_ms", "blocks_ms")},
    }
    if args.json:
        print_json(summary)
        return 0
    for r in corr["scale"]:
        print(f"resolution {r}: {corr['scale'][r]:.3f} x blocks + {corr['offset_ms'][r]:.3f} ms")
    print(
        f"fitted on {fit['n']} networks (in-sample MAPE {fit['in_sample_mape_before']:.1f} % -> "
        f"{fit['in_sample_mape_after']:.1f} %); 'latency check' scores it on others -> "
        f"{args.table}"
    )
    return 0


def _same_conditions(recorded: dict, here: dict, path: str) -> None:
    """A prediction printed beside a measurement must be of the same conditions (the
    number of warm-up and timed runs aside), or the two numbers are not comparable."""
    from samplenas.latency.table import differing_setting

    timing_only = {k: v for k, v in recorded.items() if k not in ("space", "resolutions")}
    for k in ("warmup", "repeats", "rounds"):
        timing_only.pop(k), here.pop(k)
    diff = differing_setting(timing_only, dict(here))
    if diff:
        raise UserError(
            f"latency table '{path}' was measured with {diff} (this measurement); "
            "pass the table's settings or leave out --table"
        )


def cmd_measure(args: argparse.Namespace) -> int:
    from samplenas.latency import load_table, time_arch

    space = _mbconv_space(args.space)
    arch = resolve_arch(args.arch, space)
    settings = timing_settings(args)
    result = {
        "arch": arch.to_json(),
        "latency_ms": time_arch(space, arch, settings),
        "mflops": space.cost(arch).mflops,
        "settings": settings.to_json(),
    }
    if args.table:
        table = load_table(args.table)
        _same_conditions(table.settings_json(), settings.to_json(), args.table)
        result["predicted_ms"] = table.predict(space, arch)
    if args.json:
        print_json(result)
        return 0
    line = f"{result['latency_ms']:.3f} ms measured, {result['mflops']:.2f} MFLOPs"
    if args.table:
        line += f", {result['predicted_ms']:.3f} ms predicted by the table"
    print(line)
    return 0
