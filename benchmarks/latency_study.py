"""Latency study (issue 22): table build time, table vs FLOPs as predictors of measured
latency (with and without the fitted correction, on held-out networks), and a search on
the default supernet under a latency budget beside one under a FLOPs budget.

Run:    python benchmarks/latency_study.py [--parts build-fashion check-fashion ...]
Report: python benchmarks/latency_study.py --report   (rewrites the BENCHMARKS.md tables)

Every part writes its own JSON under benchmarks/results/latency/ and is skipped when that
file exists, so a killed study resumes where it stopped (a table build itself resumes
from its table file). Timing needs a quiet machine: every timed part records
``os.getloadavg()`` before, during (every 10 s) and after, and the report prints the
highest load seen next to each figure.

The search part needs a trained supernet run: by default ``runs/demo``, the run of ``make
demo`` (the embedded default: ``attentive-fashion`` on Fashion-MNIST, ~7 min here); the
full recipe's run (``python benchmarks/default_run.py``, ~1 h) works the same way with
``--run runs/fashion-gemm``. Each of the two searches runs on its own copy of the run
without its ``search/`` folder, so neither front is drawn from the other's archive.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from md_tables import replace_table

from samplenas.io import atomic_write, atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "latency"
SPACES = {"fashion": "attentive-fashion", "attentive": "attentive"}
# attentive: the smallest resolution (the minimum) unless --all-resolutions
BUILD_GOAL_S = 600.0
LOAD_QUIET = 1.5
LOAD_LIMIT = LOAD_QUIET + 1.0  # during a part: its own process adds about 1 to the load


@contextmanager
def load_watch(every_s: float = 10.0) -> Iterator[dict[str, Any]]:
    """The 1-minute load average before, every ``every_s`` during, and after a block."""
    rec: dict[str, Any] = {"load_before": os.getloadavg()[0], "load_during": []}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every_s):
            rec["load_during"].append(os.getloadavg()[0])

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        stop.set()
        thread.join()
        rec["load_after"] = os.getloadavg()[0]
        rec["load_max"] = max([rec["load_before"], rec["load_after"], *rec["load_during"]])


def cli(*argv: str) -> Any:
    """``samplenas ARGV --json`` in a child process, its JSON output."""
    proc = subprocess.run(
        [sys.executable, "-m", "samplenas.cli", *argv, "--json"], capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(f"samplenas {' '.join(argv)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def table_path(key: str) -> Path:
    return OUT / f"{SPACES[key]}.table.json"


def wait_for_quiet(max_wait_s: float, every_s: float = 30.0) -> None:
    """Wait until the 1-minute load is below LOAD_QUIET; give up after ``max_wait_s``
    (a time taken on a loaded machine is not this machine's latency)."""
    waited = 0.0
    while os.getloadavg()[0] > LOAD_QUIET:
        if waited >= max_wait_s:
            raise SystemExit(
                f"the machine is busy (1-minute load {os.getloadavg()[0]:.1f} > {LOAD_QUIET}) "
                f"after {waited:.0f} s; run this part again when it is quiet"
            )
        time.sleep(every_s)
        waited += every_s


def part(
    name: str,
    run: Callable[[], dict[str, Any]],
    max_wait_s: float = 0.0,
    undo: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The part's JSON, computed (and written) only when its file does not exist yet,
    on a quiet machine (waiting up to ``max_wait_s`` for one). A part during which other
    jobs loaded the machine is kept as ``loaded-NAME.json`` only, ``undo`` reverts what it
    changed (a table's correction, a table), and the study stops: run it again later."""
    path = OUT / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    wait_for_quiet(max_wait_s)
    result = run()
    if result["load_max"] > LOAD_LIMIT:
        atomic_write_json(OUT / f"loaded-{name}.json", result)
        if undo is not None:
            undo()
        raise SystemExit(
            f"{name}: the load reached {result['load_max']:.1f} (> {LOAD_LIMIT}) while timing; "
            f"kept as loaded-{name}.json only: run this part again when the machine is quiet"
        )
    atomic_write_json(path, result)
    print(name, json.dumps({k: v for k, v in result.items() if k != "networks"})[:600])
    return result


def build(key: str, resolutions: list[int]) -> dict[str, Any]:
    """Time ``latency build`` of a space (1 thread, batch 1, channels-last)."""
    path = table_path(key)
    resumed = path.is_file()
    argv = ["latency", "build", "--space", SPACES[key], "--out", str(path), "--no-progress"]
    for r in resolutions:
        argv += ["--resolution", str(r)]
    with load_watch() as load:
        t0 = time.perf_counter()
        summary = cli(*argv)
        seconds = time.perf_counter() - t0
    return {
        "space": SPACES[key],
        "seconds": seconds,
        "resumed": resumed,  # True: the time is of the rest only, not a whole build
        "entries": summary["entries"],
        "resolutions": resolutions,
        "settings": summary["settings"],
        **load,
    }


def check(key: str, n: int, fit_n: int) -> dict[str, Any]:
    """Fit the correction on ``fit_n`` networks (seed 0), then check the table with and
    without it on ``n`` other networks (seed 2, drawn to exclude the fitted ones)."""
    space = ["--space", SPACES[key], "--table", str(table_path(key)), "--no-progress"]
    with load_watch() as load:
        t0 = time.perf_counter()
        fit = cli("latency", "fit", *space, "--n", str(fit_n), "--seed", "0")
        report = cli("latency", "check", *space, "--n", str(n), "--seed", "2")
        seconds = time.perf_counter() - t0
    return {"fit": fit, "check": report, "seconds": seconds, **load}


def budgets(space: Any, cost: Any, n: int = 2000) -> tuple[float, float]:
    """The median predicted ms and median MFLOPs of ``n`` random archs (seeded): each
    search is bounded at its cost's median, so both keep about half of the space."""
    import numpy as np

    from samplenas.space.cost import FlopsCost

    idx = space.sample_indices(np.random.default_rng(0), n)
    return float(np.median(cost.values(idx))), float(np.median(FlopsCost(space).values(idx)))


def search(run: Path, search_args: list[str]) -> dict[str, Any]:
    """The same evolutionary search on ``run`` twice: under a latency budget (the table's
    prediction) and under a FLOPs budget; both fronts timed end to end in ms."""
    import yaml

    from samplenas.latency import load_table
    from samplenas.latency.cost import LatencyCost
    from samplenas.space import load_space

    space = load_space(yaml.safe_load((run / "config.yaml").read_text())["space"])
    path = OUT / f"{space.name}.table.json"
    if not path.is_file():
        raise SystemExit(f"no latency table {path}: run the build part (or latency build)")
    table = load_table(path)
    cost = LatencyCost.of(space, table)
    max_ms, max_mflops = budgets(space, cost)
    out: dict[str, Any] = {"run": str(run), "max_latency_ms": max_ms, "max_mflops": max_mflops}
    with tempfile.TemporaryDirectory() as tmp, load_watch() as load:

        def fresh_copy(name: str) -> list[str]:
            copy = Path(tmp) / name
            shutil.copytree(run, copy, ignore=shutil.ignore_patterns("search"))
            return ["search", "--run-dir", str(copy), *search_args, "--no-progress"]

        lat = cli(*fresh_copy("latency"), "--latency", str(path), "--max-latency-ms", f"{max_ms}")
        flops_lo = space.cost(space.smallest()).mflops
        flo = cli(*fresh_copy("flops"), "--mflops-range", f"{flops_lo}", f"{max_mflops}")
        for m in flo["front"]:  # the FLOPs front, timed under the table's settings too
            arch = space.validate(m["arch"])
            m["latency_ms"] = cost(arch)
            # in a fresh process, as the latency search times its front: timed in this
            # one (after the budgets' 2,000 cost evaluations) the same smallest network
            # measured 1.67 ms against 1.06-1.20 ms in fresh processes
            measured = cli(
                "latency",
                "measure",
                "--space",
                space.name,
                "--table",
                str(path),
                "--arch",
                json.dumps(arch.to_json()),
            )
            m["measured_ms"] = measured["latency_ms"]
    out.update(latency_front=lat["front"], flops_front=flo["front"], search_args=search_args)
    out["latency_search"] = {k: v for k, v in lat.items() if k != "front"}
    out["flops_search"] = {k: v for k, v in flo.items() if k != "front"}
    out.update(load)
    return out


def plot_search(result: dict[str, Any], path: Path) -> None:
    """Val top-1 of both fronts against their members' measured ms, the budget marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name, label, style in (
        ("latency_front", "latency budget (table)", "o"),
        ("flops_front", "FLOPs budget", "s"),
    ):
        front = sorted(result[name], key=lambda m: m["measured_ms"])
        x = [m["measured_ms"] for m in front]
        ax.plot(x, [m["val_top1"] for m in front], style, label=f"front under a {label}")
    ax.axvline(result["max_latency_ms"], color="grey", lw=0.8, label="latency budget")
    ax.set_xlabel("measured latency (ms, 1 thread, batch 1)")
    ax.set_ylabel("val top-1 (%)")
    ax.set_title("search under a latency budget vs a FLOPs budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)


def best_within(front: list[dict[str, Any]], max_ms: float, key: str) -> str:
    """The best ``key`` (a top-1) among members measured at or under ``max_ms``."""
    ok = [m[key] for m in front if m["measured_ms"] <= max_ms]
    return f"{max(ok):.2f}" if ok else "–"


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def build_rows(parts: dict[str, dict[str, Any]]) -> str:
    rows = ["| space | blocks | build time | goal ≤ 10 min | highest load seen |"]
    rows.append("|---|---|---|---|---|")
    for key in SPACES:
        b = parts.get(f"build-{key}")
        if b:
            met = "yes" if b["seconds"] <= BUILD_GOAL_S else "no"
            rows.append(
                f"| `{b['space']}` | {b['entries']} | {duration(b['seconds'])} | {met} "
                f"| {b['load_max']:.1f} |"
            )
    return "\n".join(rows)


def check_rows(parts: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| space | fitted on | held out | table τ | table MAPE | corrected τ | corrected MAPE "
        "| FLOPs τ | measured/predicted per resolution, before → after | highest load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in SPACES:
        c = parts.get(f"check-{key}")
        if not c:
            continue
        raw, cor = c["check"], c["check"]["corrected"]
        ratios = ", ".join(
            f"{r}: {raw['ratio_by_resolution'][r]:.2f} → {cor['ratio_by_resolution'][r]:.2f}"
            for r in raw["ratio_by_resolution"]
        )
        rows.append(
            f"| `{raw['space']}` | {cor['fitted_on']} | {cor['held_out']} "
            f"| {raw['kendall_tau']:.3f} | {raw['mape']:.1f} % | {cor['kendall_tau']:.3f} "
            f"| {cor['mape']:.1f} % | {raw['flops_tau']:.3f} | {ratios} | {c['load_max']:.1f} |"
        )
    missing = [f"check-{k}" for k in SPACES if f"check-{k}" not in parts]
    if missing:
        rows.append(
            f"\nNot run yet on a quiet machine: `python benchmarks/latency_study.py --parts "
            f"{' '.join(missing)}`."
        )
    return "\n".join(rows)


def search_rows(s: dict[str, Any] | None) -> str:
    if not s:
        return (
            "Not run yet: it needs the default supernet run (`python benchmarks/default_run.py`), "
            "then `python benchmarks/latency_study.py --parts search --run runs/demo`."
        )
    x = s["max_latency_ms"]
    rows = [
        "| search bounded by | budget | front members | measured ms | "
        f"measured ≤ {x:.2f} ms | best val top-1 there | best test top-1 there |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label, budget in (
        ("latency_front", "latency (table)", f"≤ {x:.2f} ms predicted"),
        ("flops_front", "FLOPs", f"≤ {s['max_mflops']:.2f} MFLOPs"),
    ):
        ms = [m["measured_ms"] for m in s[name]]
        rows.append(
            f"| {label} | {budget} | {len(ms)} | {min(ms):.2f}–{max(ms):.2f} "
            f"| {sum(v <= x for v in ms)} | {best_within(s[name], x, 'val_top1')} "
            f"| {best_within(s[name], x, 'test_top1')} |"
        )
    rows.append(f"\nHighest load during the searches: {s['load_max']:.1f}.")
    return "\n".join(rows)


def report(parts: dict[str, dict[str, Any]]) -> dict[str, str]:
    """BENCHMARKS.md's latency tables, from the parts' JSON."""
    return {
        "latency_build": build_rows(parts),
        "latency_check": check_rows(parts),
        "latency_search": search_rows(parts.get("search")),
    }


def load_parts(where: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every part's JSON under ``where`` (default OUT), by part name (tables excluded)."""
    files = sorted((where or OUT).glob("*.json"))
    return {p.stem: json.loads(p.read_text()) for p in files if not p.name.endswith(".table.json")}


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser()
    parts = ["build-fashion", "build-attentive", "check-fashion", "check-attentive", "search"]
    ap.add_argument("--parts", nargs="+", default=parts, choices=parts)
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "demo")
    ap.add_argument("--n", type=int, default=60, help="held-out networks per check")
    ap.add_argument("--fit-n", type=int, default=40, help="networks the correction is fit on")
    ap.add_argument(
        "--search-args",
        default="--population 64 --mutations 32 --crossovers 32 --iterations 6 --seed 0",
        help="passed to both searches (default: samplenas search's defaults)",
    )
    ap.add_argument("--results", type=Path, default=OUT, help="where the parts' JSON go")
    ap.add_argument(
        "--max-wait", type=float, default=1800.0, help="seconds to wait for a quiet machine"
    )
    ap.add_argument("--report", action="store_true", help="rewrite BENCHMARKS.md's tables")
    args = ap.parse_args()
    OUT = args.results
    if args.report:
        for name, table in report(load_parts()).items():
            replace_table(name, table)
            print(table, end="\n\n")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for key in SPACES:
        if f"build-{key}" in args.parts:
            part(
                f"build-{key}",
                lambda key=key: build(key, []),
                args.max_wait,
                undo=lambda key=key: table_path(key).rename(
                    OUT / f"loaded-{SPACES[key]}.table.json"
                ),
            )
    for key in SPACES:
        if f"check-{key}" in args.parts:
            table = table_path(key).read_bytes() if table_path(key).is_file() else b""
            part(
                f"check-{key}",
                lambda key=key: check(key, args.n, args.fit_n),
                args.max_wait,
                undo=lambda key=key, table=table: atomic_write(
                    table_path(key), lambda f: f.write(table)
                ),
            )
    if "search" in args.parts:
        if not (args.run / "run.json").is_file():
            raise SystemExit(
                f"{args.run} is not a finished run; train it first "
                f"(python benchmarks/default_run.py {args.run})"
            )
        result = part("search", lambda: search(args.run, args.search_args.split()), args.max_wait)
        plot_search(result, OUT / "search_front.png")


if __name__ == "__main__":
    main()
