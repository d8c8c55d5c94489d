"""``samplenas retrain``: one architecture from scratch, checkpointed, resumed identically,
selected on validation (trained weights or their average), tested once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from samplenas.cli import main
from samplenas.space import load_space
from samplenas.supernet.static import build_model
from samplenas.train.checkpoint import CHECKPOINT, load_checkpoint
from samplenas.train.ema import averaged_parameters

ROOT = Path(__file__).parent.parent
TINY = "tiny"
KEYS = {"test_top1", "val_top1", "epochs", "wall_s"}
# two epochs of 17 steps with a weight average; checkpoints every 5 steps (tiny recipe)
RETRAIN = ["--config", TINY, "--space", TINY, "--epochs", "2", "--no-progress", "--json"]
EMA = ["--set", "train.ema_decay=0.8"]
WEIGHTS = (("trained", ""), ("ema", "_ema"))  # kinds of weights, their metrics' suffix


def cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "samplenas.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def retrain(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert main(["retrain", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def found(tmp_path_factory) -> Path:
    """An architecture as a search method hands it over: a JSON object holding an arch
    (an FP-NAS result.json, an export's arch.json, a row of pareto.json)."""
    path = tmp_path_factory.mktemp("found") / "found.json"
    arch = load_space(TINY).largest().to_json()
    path.write_text(json.dumps({"space": TINY, "arch": arch, "mflops": 0.25}))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, found) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("retrain") / "ref"
    assert main(["retrain", *RETRAIN, *EMA, "--arch", str(found), "--out", str(out)]) == 0
    return out, json.loads((out / "result.json").read_text())


def test_retrain_reports_test_top1_of_the_weights_validation_chose(reference, found):
    out, result = reference
    assert set(result) >= KEYS and result["epochs"] == 2 and result["wall_s"] > 0
    assert result["test_top1"] > 30  # 10 classes: chance is 10%
    assert result["arch"] == json.loads(found.read_text())["arch"]
    assert json.loads((out / "retrain.json").read_text())["from"] == str(found)
    # every epoch scored the trained weights and their average on validation ...
    epochs = [r for r in read_jsonl(out / "metrics.jsonl") if "lr" not in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    scores = [(r[f"val_top1{s}"], r["epoch"], w) for r in epochs for w, s in WEIGHTS]
    # ... and kept the best of them (the first of equals), whose score is the result's
    best = max(scores, key=lambda t: t[0])
    assert result["val_top1"] == best[0]
    assert (result["best_epoch"], result["weights"]) == best[1:]
    # the average is really an average: other weights than the trained ones
    state = load_checkpoint(out / CHECKPOINT)
    model = build_model(load_space(TINY), result["arch"])
    averaged = averaged_parameters(state["ema"], model)
    assert averaged and any(not torch.equal(v, state["model"][k]) for k, v in averaged.items())
    # model.pt holds the chosen weights; scored on test they give the reported number
    kept = load_checkpoint(out / "model.pt")
    assert all(torch.equal(kept[k], v) for k, v in state["best_model"].items())
    if result["weights"] == "ema":
        assert all(torch.equal(kept[k], v) for k, v in averaged.items())
    model.load_state_dict(kept)
    assert score_on_test(out, model) == pytest.approx(result["test_top1"])


def score_on_test(out: Path, model: torch.nn.Module) -> float:
    from samplenas.train.config import load_run_config
    from samplenas.train.evaluate import accuracy, eval_loader
    from samplenas.train.trainer import load_run_data

    cfg = load_run_config(out)
    return accuracy(model, eval_loader(load_run_data(cfg), cfg, "test").epoch(0))["top1"]


def test_json_on_stdout_is_result_json_and_a_retrained_dir_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["--config", TINY, "--epochs", "1", "--arch", "smallest", "--out", str(out)]
    result = retrain(capsys, *argv, "--no-progress", "--json")
    assert result == json.loads((out / "result.json").read_text())
    assert result["weights"] == "trained" and result["epochs"] == 1  # tiny keeps no average
    assert main(["retrain", *argv]) == 2
    assert "already holds a retraining; add --resume" in capsys.readouterr().err
    assert main(["eval", "--run", str(out)]) == 2  # no supernet in it: said, not a traceback
    assert "retrained one architecture from scratch" in capsys.readouterr().err


def test_a_killed_retraining_resumes_to_the_same_result(reference, found, tmp_path, capsys):
    ref, expected = reference
    out = tmp_path / "crashed"
    argv = ["retrain", *RETRAIN, *EMA, "--arch", str(found), "--out", str(out)]
    # dies after step 22: epoch 1 (17 steps) validated and kept, last checkpoint step 20
    proc = cli(*argv, env={"SAMPLENAS_FAULT_AT_STEP": "22"})
    assert proc.returncode == 137, proc.stderr
    state = load_checkpoint(out / CHECKPOINT)
    assert state["step"] == 20 and json.loads(state["best"])["epoch"] == 1
    result = retrain(capsys, "--resume", "--out", str(out), "--no-progress", "--json")
    assert {k: v for k, v in result.items() if k != "wall_s"} == {
        k: v for k, v in expected.items() if k != "wall_s"
    }
    for name in ("model.pt", CHECKPOINT):
        got, want = load_checkpoint(out / name), load_checkpoint(ref / name)
        for k in ("model", "ema") if name == CHECKPOINT else (None,):
            a, b = (got, want) if k is None else (got[k], want[k])
            assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in b), (name, k)
    steps = [(r["step"], r["epoch"]) for r in read_jsonl(out / "metrics.jsonl")]
    assert steps == [(r["step"], r["epoch"]) for r in read_jsonl(ref / "metrics.jsonl")]
    # a resume names the retraining by its directory; another arch is refused
    assert main(["retrain", "--resume", "--out", str(out), "--arch", "smallest"]) == 2
    assert "another architecture" in capsys.readouterr().err


@pytest.fixture(scope="module")
def searched_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("search") / "tiny"
    argv = ["train", "--config", TINY, "--out", str(run), "--epochs", "1", "--no-progress"]
    assert main(argv) == 0
    search = ["--population", "8", "--mutations", "4", "--crossovers", "4", "--iterations", "1"]
    assert main(["search", "--run", str(run), *search, "--no-progress"]) == 0
    return run


def test_a_pareto_id_of_a_search_retrains_that_member_on_the_runs_data(
    searched_run, tmp_path, capsys
):
    front = json.loads((searched_run / "search" / "pareto.json").read_text())["front"]
    out = tmp_path / "member"
    argv = ["--run", str(searched_run), "--config", TINY, "--epochs", "1", "--arch", "1"]
    result = retrain(capsys, *argv, "--out", str(out), "--no-progress", "--json")
    assert result["arch"] == front[1]["arch"] and result["space"] == TINY
    record = json.loads((out / "retrain.json").read_text())
    assert record["run"] == str(searched_run.resolve()) and record["from"] == "1"
    # the data are the run's, as it recorded them
    run_data = json.loads((searched_run / "data.json").read_text())
    mine = json.loads((out / "data.json").read_text())
    assert mine["files"] == run_data["files"] and mine["classes"] == run_data["classes"]
    # --space must be the run's
    assert main(["retrain", *argv, "--space", "attentive", "--out", str(tmp_path / "x")]) == 2
    assert "is not the space of run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("0", "is a Pareto id"),  # without --run
        ("nonsense", "is not a Pareto id"),
        ('{"resolution": 8}', "arch"),
        ("missing.json", "missing.json"),
        ('{"space": "attentive", "arch": {"resolution": 192}}', "of space 'attentive'"),
    ],
)
def test_a_bad_arch_exits_2_with_one_sentence(arch, message, tmp_path, capsys):
    argv = ["retrain", "--config", TINY, "--space", TINY, "--arch", arch]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / CHECKPOINT).exists()


def test_missing_config_or_arch_and_resume_without_a_retraining_exit_2(tmp_path, capsys):
    assert main(["retrain", "--space", TINY, "--arch", "largest", "--out", str(tmp_path)]) == 2
    assert "--config is required" in capsys.readouterr().err
    assert main(["retrain", "--config", TINY, "--out", str(tmp_path / "a")]) == 2
    assert "--arch is required" in capsys.readouterr().err
    assert main(["retrain", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_a_space_without_a_standalone_model_exits_2(tmp_path, capsys):
    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|"
    argv = ["retrain", "--config", TINY, "--space", "nas-bench-201", "--arch", cell]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "has no standalone model to retrain" in err and "Traceback" not in err
