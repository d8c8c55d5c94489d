"""Evaluations spread over torchrun's ranks: the same search, archive and front as one
process, rank 0 alone writes, and a rank that dies loses only the round in flight."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import samplenas
from samplenas.cli import main
from samplenas.search.archive import Archive
from samplenas.search.parallel import (
    FAULT_AFTER_ENV,
    FAULT_RANK_ENV,
    ROUND_PER_RANK,
    Throughput,
    evaluate_many,
    lpt_split,
    throughput_line,
)
from samplenas.space import load_space
from samplenas.train.distributed import DistInfo

SOURCE = str(Path(samplenas.__file__).parents[1])  # this samplenas, from any cwd
SEARCH = ["--population", "16", "--mutations", "8", "--crossovers", "8", "--iterations", "1"]


# -- load balancing and the single-process path ----------------------------------------
def test_lpt_split_balances_expected_cost_not_count():
    costs = [10.0] + [1.0] * 10
    groups = lpt_split(costs, 2)
    assert sorted(i for g in groups for i in g) == list(range(11))
    assert sorted(sum(costs[i] for i in g) for g in groups) == [10.0, 10.0]
    round_robin = [sum(costs[0::2]), sum(costs[1::2])]
    assert max(round_robin) == 15.0  # what the split avoids
    assert lpt_split(costs, 2) == groups  # deterministic: every rank computes the same
    assert lpt_split([3.0, 2.0], 4) == [[0], [1], [], []]


def test_evaluate_many_measures_each_arch_once_and_appends_as_it_goes(tmp_path):
    space = load_space("tiny")
    archs = space.sample_distinct(__import__("numpy").random.default_rng(0), 6)
    measured: list = []

    def measure(arch):
        measured.append(arch)
        assert len(Archive(tmp_path / "a.jsonl")) == len(measured) - 1  # saved before next
        return {"val_top1": float(len(measured))}

    cost = (lambda a: space.cost(a).mflops, Throughput())
    archive = Archive(tmp_path / "a.jsonl")
    rows = evaluate_many(archs[:4] + archs[:2], measure, archive, DistInfo(), *cost)
    assert [r["val_top1"] for r in rows] == [1.0, 2.0, 3.0, 4.0, 1.0, 2.0]
    assert len(measured) == 4 and cost[1].measured == 4
    rows = evaluate_many(archs, measure, Archive(tmp_path / "a.jsonl"), DistInfo(), *cost)
    assert measured[4:] == archs[4:]  # the cache answered the other four
    assert [r["val_top1"] for r in rows] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    report = cost[1].report()
    assert report["devices"] == 1 and report["evaluations_per_minute"] > 0
    assert "evaluations/min" in throughput_line(report)


# -- two processes under torchrun --------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*argv: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1"]
    launch += ["--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    launch += ["--master_port", str(_free_port())]
    return subprocess.run(
        [*launch, *argv],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SOURCE, **(env or {})},
    )


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "trained"
    argv = ["train", "--config", "tiny", "--out", str(out), "--epochs", "1", "--no-progress"]
    assert main(argv) == 0
    return out


def copy_run(trained: Path, to: Path) -> Path:
    shutil.copytree(trained, to)
    return to


@pytest.mark.slow  # about 30 s: a single-process search and a two-process one
def test_torchrun_search_prints_the_single_process_front_once(trained, tmp_path, capsys):
    one, two = copy_run(trained, tmp_path / "one"), copy_run(trained, tmp_path / "two")
    search = ["search", "--population", "16", "--iterations", "1", "--json"]
    capsys.readouterr()
    assert main([search[0], "--run-dir", str(one), *search[1:], "--no-progress"]) == 0
    alone = json.loads(capsys.readouterr().out)
    proc = torchrun(
        "-m", "samplenas.cli", search[0], "--run-dir", str(two), *search[1:], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    together = json.loads(proc.stdout)  # one JSON document: rank 1 printed nothing
    assert together["front"] == alone["front"]
    assert together["devices"] == 2 and alone["devices"] == 1
    assert together["new_evaluations"] == alone["new_evaluations"] == 16 + 64
    assert together["evaluations_per_minute_per_device"] > 0
    for name in ("archive.jsonl", "test.jsonl"):
        assert (two / "search" / name).read_bytes() == (one / "search" / name).read_bytes()


DRIVER = """
import os, sys
from samplenas.cli import main

os.chdir(f"node{os.environ['RANK']}")  # each rank its own copy of the run: two machines
search = ["search", "--run-dir", "run", *sys.argv[1:], "--no-progress", "--json"]
fit = ["predictor", "fit", "--run-dir", "run", "--num-archs", "8", "--no-progress", "--json"]
sys.exit(main(search) or main(fit))
"""


@pytest.mark.slow  # about 60 s: two two-process runs and a single-process reference
def test_rank_0_alone_writes_and_a_killed_rank_costs_only_the_round_in_flight(
    trained, tmp_path, capsys
):
    # the reference: one process
    reference = copy_run(trained, tmp_path / "reference")
    capsys.readouterr()
    assert main(["search", "--run-dir", str(reference), *SEARCH, "--no-progress"]) == 0
    fit = ["predictor", "fit", "--run-dir", str(reference), "--num-archs", "8", "--no-progress"]
    assert main(fit) == 0
    # two "machines" without a shared file system: each rank sees its own copy of the run
    (tmp_path / "driver.py").write_text(DRIVER)
    nodes = [copy_run(trained, tmp_path / f"node{r}" / "run") for r in (0, 1)]
    untouched = snapshot(nodes[1])
    # generation 0 is one round of 2 x 8; rank 1 dies 6 evaluations into generation 1
    assert ROUND_PER_RANK == 8
    die = {FAULT_RANK_ENV: "1", FAULT_AFTER_ENV: str(ROUND_PER_RANK + 6)}
    proc = torchrun(str(tmp_path / "driver.py"), *SEARCH, cwd=tmp_path, env=die)
    assert proc.returncode != 0
    archive = nodes[0] / "search" / "archive.jsonl"
    saved = archive.read_text().splitlines()[1:]
    assert len(saved) == 16  # generation 0, gathered and appended before the crash
    # the rerun measures only what was lost, then the predictor's dataset
    proc = torchrun(str(tmp_path / "driver.py"), *SEARCH, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    decoder = json.JSONDecoder()
    searched, end = decoder.raw_decode(proc.stdout)
    fitted = json.loads(proc.stdout[end:])
    assert searched["new_evaluations"] == 32 - 16 and fitted["new_evaluations"] == 8
    assert archive.read_text().splitlines()[1:17] == saved  # kept, not measured again
    # the same search and dataset as one process
    for name in ("search/archive.jsonl", "search/test.jsonl", "search/pareto.png"):
        assert (nodes[0] / name).read_bytes() == (reference / name).read_bytes(), name
    front = json.loads((nodes[0] / "search" / "pareto.json").read_text())["front"]
    assert front == json.loads((reference / "search" / "pareto.json").read_text())["front"]
    dataset = (nodes[0] / "predictor" / "dataset.json").read_text()
    assert dataset == (reference / "predictor" / "dataset.json").read_text()
    # rank 1 wrote nothing to its run directory, in either run
    assert snapshot(nodes[1]) == untouched


def test_eval_of_several_archs_scores_each_as_eval_of_one(trained, capsys):
    capsys.readouterr()
    argv = ["eval", "--run-dir", str(trained), "--arch", "largest", "--arch", "smallest"]
    assert main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r.pop("arch") for r in rows] == ["largest", "smallest"]
    assert main(["eval", "--run-dir", str(trained), "--arch", "smallest", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == rows[1]
    assert rows[0]["mflops"] > rows[1]["mflops"]


def test_export_and_cost_under_torchrun_are_rank_0s(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    capsys.readouterr()
    out = tmp_path / "model"
    assert main(["export", "--run-dir", str(trained), "--arch", "largest", "--out", str(out)]) == 0
    assert main(["cost", "--run-dir", str(trained), "--arch", "largest"]) == 0
    assert not out.exists() and capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    assert main(["cost", "--run-dir", str(trained), "--arch", "largest", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mflops"] > 0
