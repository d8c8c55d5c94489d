"""FP-NAS's studies (issue 20, item 5) at our scale, resumable, from the units they keep.

Run:
  python benchmarks/fpnas_study.py [--seeds 0 1 2] [--configs as-1/4 fs-14 ...]
  python benchmarks/fpnas_study.py --part memory   # peak memory of a search step
  python benchmarks/fpnas_study.py --part timing   # AS vs FS vs joint, one at a time, idle
  python benchmarks/fpnas_study.py --report        # JSON, plots, BENCHMARKS.md tables

Every unit is one ``samplenas fpnas`` search (``fpnas_study/fpnas-digits.yaml``: the
FBNetV2-F++-style ``fbnetv2-digits`` space on scikit-learn digits, 10 epochs, mixed
distribution, 0.3-MFLOPs hinge target) followed by ``samplenas retrain`` of its most
probable architecture from scratch (``fpnas_study/retrain-digits.yaml``), selected on the
validation split and reported on the held-out test split. Configurations:

- sampling: AS lambda = 1/8, 1/4, 1/2 vs FS K = 4, 8, 14 (paper Fig. 3);
- distribution: factorized, joint, mixed (AS 1/4; mixed is ``as-1/4``; Fig. 4, Table 5);
- attention (Table 7): searched in the SE-only space (FBNetV2-F), that architecture with
  every SE replaced by Split-Attention with 2 or 4 splits (retrained only), and the
  search with SA placement and splits searched (``as-1/4``, FBNetV2-F++);
- coarse vs fine space (Table 4): ``as-1/4`` / ``fs-14`` vs the same in the fine space.

Runs go to runs/fpnas_study/ (gitignored; killed, a unit resumes its search or
retraining), finished units to benchmarks/results/fpnas_study/ (committed). Timings are
wall-clock on a shared 2-core host: each unit records the load average it ran under.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from md_tables import replace_table

from samplenas.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks" / "fpnas_study"
RUNS = ROOT / "runs" / "fpnas_study"
RESULTS = ROOT / "benchmarks" / "results"
UNITS = RESULTS / "fpnas_study"
SEARCH_RECIPE = HERE / "fpnas-digits.yaml"
RETRAIN_RECIPE = HERE / "retrain-digits.yaml"
SPACE = HERE / "fbnetv2-digits.yaml"
SPACES = {
    "coarse": SPACE,
    "fine": HERE / "fbnetv2-digits-fine.yaml",
    "se": HERE / "fbnetv2-digits-se.yaml",
}

# name -> (sampling, distribution, space)
CONFIGS: dict[str, tuple[str, str, str]] = {
    "as-1/8": ("as:0.125", "mixed:3", "coarse"),
    "as-1/4": ("as:0.25", "mixed:3", "coarse"),
    "as-1/2": ("as:0.5", "mixed:3", "coarse"),
    "fs-4": ("fs:4", "mixed:3", "coarse"),
    "fs-8": ("fs:8", "mixed:3", "coarse"),
    "fs-14": ("fs:14", "mixed:3", "coarse"),
    "factorized": ("as:0.25", "factorized", "coarse"),
    "joint": ("as:0.25", "joint", "coarse"),
    "se-only": ("as:0.25", "mixed:3", "se"),
    "fine-as-1/4": ("as:0.25", "mixed:3", "fine"),
    "fine-fs-14": ("fs:14", "mixed:3", "fine"),
}
# Table 7's variants: the SE-only search's architecture with every SE made SA-k
VARIANTS = {"se-only-sa2": 2, "se-only-sa4": 4}


def cli(*argv: str) -> dict[str, Any]:
    """One ``samplenas`` command's ``--json`` object."""
    cmd = [sys.executable, "-m", "samplenas.cli", *argv, "--no-progress", "--json"]
    proc = subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    return json.loads(proc.stdout)


def unit_name(config: str, seed: int) -> str:
    return f"{config.replace('/', '_')}-s{seed}"


def search(config: str, seed: int) -> dict[str, Any]:
    out = RUNS / unit_name(config, seed) / "search"
    if (out / "result.json").is_file():
        return json.loads((out / "result.json").read_text())
    if (out / "checkpoint.pt").is_file():
        return cli("fpnas", "--out", str(out), "--resume")
    sampling, distribution, space = CONFIGS[config]
    argv = ["fpnas", "--config", str(SEARCH_RECIPE), "--out", str(out)]
    argv += ["--sampling", sampling, "--distribution", distribution, "--seed", str(seed)]
    argv += ["--set", f"space={SPACES[space]}"]
    return cli(*argv)


def retrain(name: str, arch: dict, space: Path, seed: int) -> dict[str, Any]:
    out = RUNS / name / "retrain"
    if (out / "result.json").is_file():
        return json.loads((out / "result.json").read_text())
    if (out / "checkpoint.pt").is_file():
        return cli("retrain", "--out", str(out), "--resume")
    arch_file = RUNS / name / "arch.json"
    atomic_write_json(arch_file, arch)
    argv = ["retrain", "--arch", str(arch_file), "--space", str(space)]
    argv += ["--config", str(RETRAIN_RECIPE), "--out", str(out), "--seed", str(seed)]
    return cli(*argv)


def run_unit(config: str, seed: int) -> dict[str, Any]:
    """Search and retrain one (configuration, seed); kept in UNITS when done."""
    name = unit_name(config, seed)
    path = UNITS / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    found = search(config, seed)
    space = SPACES["fine"] if CONFIGS[config][2] == "fine" else SPACE
    unit = {
        "config": config,
        "seed": seed,
        "sampling": CONFIGS[config][0],
        "distribution": CONFIGS[config][1],
        "space": CONFIGS[config][2],
        "search": found,
        "retrain": retrain(name, found["arch"], space, seed),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    atomic_write_json(path, unit)
    return unit


def with_attention(arch: dict, splits: int) -> dict:
    """``arch`` with Squeeze-Excite (attention 1) made Split-Attention with ``splits``."""
    return {**arch, "attention": [splits if a == 1 else a for a in arch["attention"]]}


def run_variant(variant: str, seed: int) -> dict[str, Any]:
    name = unit_name(variant, seed)
    path = UNITS / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    base = run_unit("se-only", seed)
    arch = with_attention(base["search"]["arch"], VARIANTS[variant])
    retrained = retrain(name, arch, SPACE, seed)
    unit = {"config": variant, "seed": seed, "arch": arch, "retrain": retrained}
    unit["load_average_1min"] = round(os.getloadavg()[0], 2)
    atomic_write_json(path, unit)
    return unit


def claim(config: str, seed: int) -> int | None:
    """Take (config, seed) for this worker (an flock on runs/fpnas_study/NAME.claim, which
    the OS releases when the worker dies), so that two workers can share the list; None
    when another worker holds it. Close the returned descriptor to release it."""
    RUNS.mkdir(parents=True, exist_ok=True)
    fd = os.open(RUNS / f"{unit_name(config, seed)}.claim", os.O_CREAT | os.O_WRONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def pending(config: str, seed: int) -> bool:
    return not (UNITS / f"{unit_name(config, seed)}.json").is_file()


def ready(config: str, seed: int) -> bool:
    """A Table 7 variant waits for its seed's SE-only search (another worker may run it)."""
    return config not in VARIANTS or not pending("se-only", seed)


def work(configs: list[str], seeds: list[int]) -> None:
    """Every pending (config, seed) this worker can claim, variants once their base is
    done; passes repeat while another worker still holds what this one waits for."""
    todo = [(c, s) for s in seeds for c in configs if pending(c, s)]
    while todo:
        waiting = []
        for config, seed in todo:
            fd = claim(config, seed) if ready(config, seed) else None
            if fd is None:
                waiting.append((config, seed))
                continue
            try:
                if pending(config, seed):
                    started = time.perf_counter()
                    unit = (run_variant if config in VARIANTS else run_unit)(config, seed)
                    print(
                        f"{config} seed {seed}: test {unit['retrain']['test_top1']:.2f} "
                        f"({time.perf_counter() - started:.0f} s)",
                        flush=True,
                    )
            finally:
                os.close(fd)
        todo = [(c, s) for c, s in waiting if pending(c, s)]
        if todo:
            time.sleep(30)  # another worker holds them


# -- quiet timing --------------------------------------------------------------------

TIMED = ["as-1/4", "fs-14", "joint"]


def timing(seed: int = 0) -> dict[str, Any]:
    """Search wall time of AS 1/4 (mixed), FS 14 and joint, one after another on an idle
    host: the units' own wall times were taken beside other jobs whose number changed."""
    path = RESULTS / "fpnas_timing.json"
    report = json.loads(path.read_text()) if path.is_file() else {"seed": seed, "runs": {}}
    for config in TIMED:
        if config in report["runs"]:
            continue
        while os.getloadavg()[0] > 1.0:  # the other jobs' processes, or ours, winding down
            time.sleep(15)
        load = os.getloadavg()[0]
        out = RUNS / "timing" / unit_name(config, seed)
        shutil.rmtree(out, ignore_errors=True)
        sampling, distribution, space = CONFIGS[config]
        result = cli(
            "fpnas", "--config", str(SEARCH_RECIPE), "--out", str(out), "--seed", str(seed),
            "--sampling", sampling, "--distribution", distribution,
            "--set", f"space={SPACES[space]}",
        )  # fmt: skip
        report["runs"][config] = {
            "samples_total": result["samples_total"],
            "wall_s": result["wall_s"],
            "load_average_1min_before": round(load, 2),
            "load_average_1min_after": round(os.getloadavg()[0], 2),
        }
        atomic_write_json(path, report)
    return report


def timing_table(t: dict[str, Any] | None) -> str:
    if not t or not t["runs"]:
        return ""
    runs = t["runs"]
    lines = [
        "| configuration | samples | search wall (s), idle host | load before, after |",
        "|---|---|---|---|",
    ]
    for config, r in runs.items():
        load = f"{r['load_average_1min_before']:.2f} / {r['load_average_1min_after']:.2f}"
        lines.append(f"| {config} | {r['samples_total']} | {r['wall_s']:.0f} | {load} |")
    for a, b in (("as-1/4", "fs-14"), ("as-1/4", "joint")):
        if a in runs and b in runs:
            lines.append(
                f"| **{a} ÷ {b}** | {runs[a]['samples_total'] / runs[b]['samples_total']:.2f} | "
                f"{runs[a]['wall_s'] / runs[b]['wall_s']:.2f} "
                f"({runs[b]['wall_s'] / runs[a]['wall_s']:.2f}× faster) | |"
            )
    return "\n".join(lines)


# -- peak memory ----------------------------------------------------------------------


def peak_rss_mb(argv: list[str]) -> float:
    """Peak resident memory (MB) of one ``samplenas`` command in a fresh process."""
    code = (
        "import resource, runpy, sys; sys.argv = ['samplenas', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('samplenas.cli', run_name='__main__')\n"
        "except SystemExit as exc:\n    if exc.code:\n        raise\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv, "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(f"{argv[0]} failed: {proc.stderr.strip()}")
    return int(proc.stderr.strip().splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def baseline_rss_mb(steps_images: int) -> float:
    """Peak memory (MB) of loading the search's data and building its supernet."""
    code = (
        "import resource, sys\n"
        "from samplenas.space import load_space\n"
        "from samplenas.supernet import build_supernet\n"
        "from samplenas.train.config import load_config\n"
        "from samplenas.train.trainer import load_run_data\n"
        f"cfg = load_config('fpnas-fashion', {{'data': {{'train_subset': {steps_images}, "
        "'val_size': 1000}})\n"
        "data = load_run_data(cfg)\n"
        "net = build_supernet(load_space(cfg.space))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)
    return int(out.stdout.decode().split()[-1]) / 1024


def memory(steps_images: int = 2048) -> dict[str, Any]:
    """Peak memory of FP-NAS search steps vs training the largest sub-network alone.

    Both on ``fbnetv2-fashion`` (the real-scale space) with the ``fpnas-fashion`` batch of
    128, the same data, one epoch over ``steps_images`` training images; the search
    samples K networks a step (AS 1/4: K = 10 at uniform) and accumulates their
    gradients one network at a time. Both totals hold torch and the dataset, so the
    baseline (a process that loads the same data and builds the supernet, no training)
    is measured too, and the ratio of what each adds to it is reported beside the ratio
    of the totals.
    """
    path = RESULTS / "fpnas_memory.json"
    if path.is_file():
        return json.loads(path.read_text())
    tmp = RUNS / "memory"
    shutil.rmtree(tmp, ignore_errors=True)  # a re-measurement starts fresh runs
    subset = ["--set", f"data.train_subset={steps_images}", "--set", "data.val_size=1000"]
    search_mb = peak_rss_mb(
        ["fpnas", "--config", "fpnas-fashion", "--out", str(tmp / "search"), "--epochs", "1"]
        + ["--distribution", "factorized"]
        + ["--set", "fpnas.supernet_warmup_epochs=0", "--set", "train.threads=1", *subset]
    )
    largest_mb = peak_rss_mb(
        ["retrain", "--arch", "largest", "--space", "fbnetv2-fashion"]
        + ["--config", "fpnas-fashion", "--out", str(tmp / "largest"), "--epochs", "1"]
        + ["--set", "train.threads=1", *subset]
    )
    base_mb = baseline_rss_mb(steps_images)
    report = {
        "space": "fbnetv2-fashion",
        "batch": 128,
        "train_images": steps_images,
        "search_peak_rss_mb": round(search_mb, 1),
        "largest_alone_peak_rss_mb": round(largest_mb, 1),
        "baseline_rss_mb": round(base_mb, 1),
        "ratio": round(search_mb / largest_mb, 3),
        "ratio_above_baseline": round((search_mb - base_mb) / (largest_mb - base_mb), 3),
        "goal": 1.2,
    }
    atomic_write_json(path, report)
    return report


# -- aggregation, plots and tables ------------------------------------------------------


def load_units() -> dict[str, list[dict]]:
    by_config: dict[str, list[dict]] = {}
    for path in sorted(UNITS.glob("*.json")):
        unit = json.loads(path.read_text())
        by_config.setdefault(unit["config"], []).append(unit)
    return by_config


def mean_sd(values: list[float], digits: int = 1) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def summary(units: dict[str, list[dict]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for config, rows in units.items():
        entry: dict[str, Any] = {
            "seeds": [r["seed"] for r in rows],
            "test_top1": [r["retrain"]["test_top1"] for r in rows],
            "val_top1": [r["retrain"]["val_top1"] for r in rows],
        }
        if "search" in rows[0]:
            entry["samples_total"] = [r["search"]["samples_total"] for r in rows]
            entry["wall_s"] = [r["search"]["wall_s"] for r in rows]
            entry["mflops"] = [r["search"]["mflops"] for r in rows]
            entry["final_entropy"] = [r["search"]["epochs"][-1]["entropy"] for r in rows]
        else:
            entry["mflops"] = [r["retrain"]["mflops"] for r in rows]
        out[config] = entry
    return out


def ratio(s: dict, a: str, b: str, key: str) -> tuple[float, float | None, int] | None:
    """Mean and seed std of a's ``key`` over b's, paired by seed (seeds both have)."""
    if a not in s or b not in s:
        return None
    of_b = dict(zip(s[b]["seeds"], s[b][key], strict=True))
    per_seed = [
        v / of_b[seed] for seed, v in zip(s[a]["seeds"], s[a][key], strict=True) if seed in of_b
    ]
    if not per_seed:
        return None
    spread = statistics.stdev(per_seed) if len(per_seed) > 1 else None
    return statistics.mean(per_seed), spread, len(per_seed)


def table(s: dict, configs: list[str]) -> str:
    lines = [
        "| configuration | seeds | architectures sampled | search wall (s) | final entropy "
        "(nats) | MFLOPs (target 0.3) | retrained test top-1 % | retrained val top-1 % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config in configs:
        e = s.get(config)
        if e is None:
            continue
        cells = [config, str(len(e["seeds"]))]
        if "samples_total" in e:
            cells += [
                mean_sd(e["samples_total"], 0),
                mean_sd(e["wall_s"], 0),
                mean_sd(e["final_entropy"]),
            ]
        else:
            cells += ["—", "—", "—"]
        cells += [mean_sd(e["mflops"], 3), mean_sd(e["test_top1"], 2), mean_sd(e["val_top1"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(s: dict) -> str:
    """The acceptance ratios: AS 1/4 vs FS 14, and mixed vs joint."""
    rows = [
        "| comparison | seeds | samples ratio | search wall ratio | paper |",
        "|---|---|---|---|---|",
    ]
    pairs = [
        ("as-1/4", "fs-14", "0.40 samples, 1.8× faster (1/1.8 = 0.56 wall)"),
        ("as-1/4", "joint", "mixed vs joint: 0.91 samples, 1.2× faster (0.83 wall)"),
        ("fine-as-1/4", "fine-fs-14", "—"),
    ]
    for a, b, paper in pairs:
        rs, rw = ratio(s, a, b, "samples_total"), ratio(s, a, b, "wall_s")
        if rs is not None and rw is not None:
            cells = [f"{a} ÷ {b}", str(rs[2])]
            cells += [
                f"{m:.2f}" + (f" ± {sd:.2f}" if sd is not None else "") for m, sd, _ in (rs, rw)
            ]
            rows.append("| " + " | ".join([*cells, paper]) + " |")
    return "\n".join(rows)


def plot(units: dict[str, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {
        "fpnas_fig3": ["as-1/8", "as-1/4", "as-1/2", "fs-4", "fs-8", "fs-14"],
        "fpnas_fig4": ["factorized", "joint", "as-1/4"],
    }
    for name, configs in groups.items():
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
        for config in configs:
            rows = units.get(config)
            if not rows:
                continue
            epochs = [[e for e in r["search"]["epochs"]] for r in rows]
            x = np.array([e["epoch"] for e in epochs[0]])
            label = "mixed (as-1/4)" if name == "fpnas_fig4" and config == "as-1/4" else config
            for ax, key in zip(axes[:2], ("entropy", "val_top1"), strict=True):
                y = np.array([[e[key] for e in run] for run in epochs])
                ax.plot(x, y.mean(0), marker="o", ms=3, label=label)
                ax.fill_between(x, y.min(0), y.max(0), alpha=0.15)
            samples = [r["search"]["samples_total"] for r in rows]
            walls = [r["search"]["wall_s"] for r in rows]
            axes[2].scatter(samples, walls, label=label)
        axes[0].set_ylabel("entropy of P(A|alpha) (nats)")
        axes[1].set_ylabel("most probable arch: val top-1 (%, supernet weights)")
        for ax in axes[:2]:
            ax.set_xlabel("epoch")
        axes[2].set_xlabel("architectures sampled")
        axes[2].set_ylabel("search wall time (s)")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(RESULTS / f"{name}.png", dpi=110)
        plt.close(fig)


SECTIONS = {
    "fpnas_sampling": ["as-1/8", "as-1/4", "as-1/2", "fs-4", "fs-8", "fs-14"],
    "fpnas_distribution": ["factorized", "joint", "as-1/4"],
    "fpnas_attention": ["se-only", "se-only-sa2", "se-only-sa4", "as-1/4"],
    "fpnas_space": ["as-1/4", "fs-14", "fine-as-1/4", "fine-fs-14"],
}


def memory_table(m: dict[str, Any] | None) -> str:
    if m is None:
        return ""
    return "\n".join(
        [
            "| process | peak RSS (MB) |",
            "|---|---|",
            f"| FP-NAS search epoch (K networks a step) | {m['search_peak_rss_mb']:.0f} |",
            f"| largest sub-network trained alone | {m['largest_alone_peak_rss_mb']:.0f} |",
            f"| baseline: data loaded, supernet built | {m['baseline_rss_mb']:.0f} |",
            f"| **ratio search ÷ largest** (goal ≤ {m['goal']}) | **{m['ratio']:.2f}** |",
            f"| ratio of what each adds to the baseline | {m['ratio_above_baseline']:.2f} |",
        ]
    )


def tables(results: dict[str, Any]) -> dict[str, str]:
    """BENCHMARKS.md's FP-NAS tables from fpnas_study.json's object."""
    s = results["summary"]
    out = {name: table(s, configs) for name, configs in SECTIONS.items()}
    out["fpnas_ratios"] = ratios(s)
    out["fpnas_memory"] = memory_table(results.get("memory"))
    out["fpnas_timing"] = timing_table(results.get("timing"))
    return out


def report() -> dict[str, Any]:
    """fpnas_study.json, the figures and BENCHMARKS.md's tables from the kept units."""
    units = load_units()
    s = summary(units)
    results: dict[str, Any] = {"summary": s, "units": units}
    for part in ("memory", "timing"):
        if (RESULTS / f"fpnas_{part}.json").is_file():
            results[part] = json.loads((RESULTS / f"fpnas_{part}.json").read_text())
    atomic_write_json(RESULTS / "fpnas_study.json", results)
    if units:
        plot(units)
    for name, text in tables(results).items():
        replace_table(name, text)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--configs", nargs="+", default=[*CONFIGS, *VARIANTS])
    ap.add_argument("--part", choices=["units", "memory", "timing"], default="units")
    ap.add_argument("--report", action="store_true", help="only rebuild JSON, plots, tables")
    args = ap.parse_args()
    if not args.report:
        if args.part != "units":
            print(json.dumps((memory if args.part == "memory" else timing)(), indent=2))
            return
        work(args.configs, args.seeds)
    results = report()
    print(json.dumps(results["summary"], indent=1))


if __name__ == "__main__":
    main()
