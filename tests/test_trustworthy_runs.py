"""Scores are reused only when measured the same way; a resume cannot change what a run is;
a fresh run starts with clean logs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from samplenas.cli import main
from samplenas.search.archive import Archive, read_fingerprint
from samplenas.space import load_space
from samplenas.train.checkpoint import CHECKPOINT, load_checkpoint
from samplenas.train.config import (
    RECIPES,
    load_config,
    load_run_config,
    parse_overrides,
    resume_changes,
)
from samplenas.train.trainer import load_run_data

TINY = "tiny"  # a shipped recipe, by name
SEARCH = ["--population", "8", "--mutations", "4", "--crossovers", "4", "--iterations", "1"]


def train_one_epoch(out: Path) -> Path:
    assert (
        main(["train", "--config", TINY, "--out", str(out), "--epochs", "1", "--no-progress"]) == 0
    )
    return out


def search(run: Path, capsys, *extra: str) -> tuple[dict, str]:
    capsys.readouterr()
    assert main(["search", "--run", str(run), *SEARCH, "--no-progress", "--json", *extra]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def fit(run: Path, capsys, *extra: str) -> tuple[dict, str]:
    capsys.readouterr()
    argv = ["predictor", "fit", "--run", str(run), "--n", "8", "--no-progress", "--json"]
    assert main([*argv, *extra]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def cache_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory) -> Path:
    return train_one_epoch(tmp_path_factory.mktemp("trust") / "tiny")


# -- 1. evaluation caches carry a fingerprint --------------------------------------------
def test_export_by_pareto_id_refuses_a_front_of_older_weights(tmp_path, capsys):
    run = train_one_epoch(tmp_path / "run")
    search(run, capsys)
    export = ["export", "--run", str(run), "--arch", "0", "--out", str(tmp_path / "model")]
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(export) == 2
    assert "was measured on other weights" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()
    pareto = run / "search" / "pareto.json"  # a front written before fingerprints ...
    front = json.loads(pareto.read_text())
    del front["fingerprint"]
    pareto.write_text(json.dumps(front))
    os.utime(pareto, (1, 1))  # ... and before the resume's checkpoint
    assert main(export) == 2
    assert "was measured on other weights (step ?" in capsys.readouterr().err
    search(run, capsys)  # a front of the current weights: its ids are valid again
    assert main(export) == 0 and (tmp_path / "model" / "arch.json").is_file()


def test_search_and_predictor_after_a_longer_resume_evaluate_anew(tmp_path, capsys):
    run = train_one_epoch(tmp_path / "run")
    before, _ = search(run, capsys)
    fitted, _ = fit(run, capsys)
    assert before["new_evaluations"] > 0 and fitted["new_evaluations"] == 8
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    step = int(load_checkpoint(run / CHECKPOINT)["step"])
    assert step == 2 * fitted["fingerprint"]["checkpoint_step"]

    after, err = search(run, capsys)
    assert after["new_evaluations"] > 0
    assert "archive.jsonl' was measured differently (checkpoint_step" in err
    assert "test.jsonl' was measured differently" in err
    archive = run / "search" / "archive.jsonl"
    assert read_fingerprint(archive)["checkpoint_step"] == step
    assert read_fingerprint(run / "search" / "test.jsonl")["checkpoint_step"] == step
    pareto = json.loads((run / "search" / "pareto.json").read_text())
    assert pareto["fingerprint"]["checkpoint_step"] == step
    # every front row was measured on the new weights: it is in the new cache, same numbers
    new_rows = {json.dumps(r["arch"], sort_keys=True): r["metrics"] for r in cache_rows(archive)}
    assert len(new_rows) == after["new_evaluations"]
    for member in after["front"]:
        metrics = new_rows[json.dumps(member["arch"], sort_keys=True)]
        assert member["val_top1"] == metrics["val_top1"]
    # the old scores are kept aside, whole, not mixed in
    (old,) = [p for p in (run / "search").glob("archive.*.jsonl")]
    assert read_fingerprint(old)["checkpoint_step"] == step // 2
    assert len(cache_rows(old)) == before["new_evaluations"]

    refitted, err = fit(run, capsys)
    assert refitted["new_evaluations"] == 8 and "dataset.jsonl' was measured differently" in err
    assert refitted["fingerprint"]["checkpoint_step"] == step
    kept = json.loads((run / "predictor" / "fit.json").read_text())
    assert kept["fingerprint"]["checkpoint_step"] == step
    assert len(cache_rows(run / "predictor" / "dataset.jsonl")) == 8


def test_other_evaluation_settings_start_a_new_cache_and_the_same_reuse_it(one_epoch_run, capsys):
    first, err = search(one_epoch_run, capsys, "--val-images", "100")
    assert first["new_evaluations"] > 0 and err == ""
    same, err = search(one_epoch_run, capsys, "--val-images", "100")
    assert same["new_evaluations"] == 0 and err == "" and same["front"] == first["front"]
    other, err = search(one_epoch_run, capsys, "--val-images", "100", "--calib-batches", "1")
    assert other["new_evaluations"] > 0
    assert "calibration_batches 2 -> 1" in err and "starting a new cache" in err
    images, err = search(one_epoch_run, capsys)
    assert images["new_evaluations"] > 0
    assert "eval_images 100 -> 300" in err
    # going back to settings measured before brings their scores back: nothing measured twice
    back, err = search(one_epoch_run, capsys, "--val-images", "100")
    assert back["new_evaluations"] == 0 and back["front"] == first["front"]
    assert "reusing 'archive." in err

    fitted, err = fit(one_epoch_run, capsys, "--val-images", "100")
    assert fitted["new_evaluations"] == 8 and fitted["fingerprint"]["eval_images"] == 100
    again, err = fit(one_epoch_run, capsys, "--val-images", "100")
    assert again["new_evaluations"] == 0 and err == ""
    other, err = fit(one_epoch_run, capsys, "--val-images", "100", "--calib-batches", "1")
    assert other["new_evaluations"] == 8 and "calibration_batches 2 -> 1" in err


def test_a_cache_without_a_fingerprint_is_set_aside_and_torn_lines_still_recover(tmp_path):
    space = load_space("tiny")
    archs = space.sample_many(np.random.default_rng(0), 3)
    path = tmp_path / "archive.jsonl"
    legacy = Archive(path)  # the old format: rows only
    for i, a in enumerate(archs):
        legacy.add(a, {"top1": float(i)})
    fingerprint = {"checkpoint_step": 5, "eval_images": 10}
    fresh = Archive(path, fingerprint=fingerprint)
    assert len(fresh) == 0 and "no evaluation fingerprint" in fresh.notice
    (aside,) = tmp_path.glob("archive.*.jsonl")
    assert len(Archive(aside)) == len(set(archs))
    fresh.add(archs[0], {"top1": 7.0})
    with open(path, "a") as f:
        f.write('{"arch": {"resolution": 8, "wid')  # the process died mid-line
    reopened = Archive(path, fingerprint=fingerprint)
    assert reopened.notice is None and len(reopened) == 1
    assert reopened.get(archs[0]) == {"top1": 7.0}
    assert read_fingerprint(path) == fingerprint


# -- 2. resume cannot change what a run is -----------------------------------------------
@pytest.mark.parametrize(
    "extra, key",
    [
        (["--seed", "1"], "seed (0 -> 1)"),
        (["--set", "data.val_size=200"], "data.val_size (300 -> 200)"),
        (["--set", "data.split_seed=3"], "data.split_seed (0 -> 3)"),
        (["--sampler", "bestup-3-loss"], "sampler.name ('uniform' -> 'bestup-3-loss')"),
        (["--set", "train.batch_size=32"], "train.batch_size (64 -> 32)"),
        (["--set", "train.num_random=1"], "train.num_random (2 -> 1)"),
    ],
)
def test_resume_refuses_to_change_what_the_run_is(one_epoch_run, capsys, extra, key):
    saved = (one_epoch_run / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", str(one_epoch_run), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err
    assert key in err and "cannot change on resume" in err and len(err.splitlines()) == 1
    assert (one_epoch_run / "config.yaml").read_text() == saved


def test_resume_with_config_exits_2(one_epoch_run, capsys):
    capsys.readouterr()
    assert main(["train", "--resume", str(one_epoch_run), "--config", TINY]) == 2
    assert "--config cannot be combined with --resume" in capsys.readouterr().err


def test_a_longer_resume_runs_and_is_recorded(tmp_path):
    run = train_one_epoch(tmp_path / "run")
    argv = ["train", "--resume", str(run), "--no-progress", "--epochs", "2"]
    assert main([*argv, "--set", "checkpoint.every_steps=7"]) == 0
    assert load_checkpoint(run / CHECKPOINT)["epoch"] == 2
    saved = yaml.safe_load((run / "config.yaml").read_text())
    (resume,) = saved["resumes"]
    assert resume["from_step"] == 17
    assert resume["changed"] == {"train.epochs": [1, 2], "checkpoint.every_steps": [5, 7]}
    cfg = load_config(run / "config.yaml")  # the history is not a recipe key
    assert cfg.train.epochs == 2 and cfg.checkpoint.every_steps == 7
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0  # nothing left to do
    history = yaml.safe_load((run / "config.yaml").read_text())["resumes"]
    assert len(history) == 2 and history[1]["changed"] == {}


def test_the_split_has_its_own_seed():
    def val_images(*overrides: str) -> torch.Tensor:
        return load_run_data(load_config(TINY, parse_overrides(list(overrides)))).val.images

    reference = val_images()
    assert torch.equal(val_images("seed=7"), reference)  # seeds vary training, not the split
    assert not torch.equal(val_images("data.split_seed=7"), reference)
    assert torch.equal(val_images("seed=3", "data.split_seed=7"), val_images("data.split_seed=7"))


def test_runs_from_before_split_seed_keep_the_split_they_were_trained_on(tmp_path):
    recipe = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**recipe, "seed": 4}))
    assert load_run_config(tmp_path).data.split_seed == 4


# -- 11. a fresh run starts with clean logs ----------------------------------------------
def test_a_fresh_run_drops_the_logs_of_one_that_died_before_its_first_checkpoint(tmp_path):
    run = tmp_path / "run"
    events = run / "tensorboard" / "events.out.tfevents.1.host.1.0"
    events.parent.mkdir(parents=True)
    events.write_bytes(b"stale")
    stale = json.dumps({"step": 99, "epoch": 0, "lr": 9.0, "stale": True}) + "\n"
    for name in ("metrics.jsonl", "samples.jsonl"):
        (run / name).write_text(stale * 3)
    assert not (run / CHECKPOINT).exists()
    train_one_epoch(run)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert not [r for r in metrics + samples if r.get("stale")]
    assert metrics[0]["step"] == 1 and [r["step"] for r in samples] == list(range(1, 18))
    assert not events.exists()


@pytest.mark.parametrize(
    ("sampler", "read_as"),
    [
        ({"name": "flops-uniform", "options": {}}, {"name": "flops-prior", "options": {}}),
        (
            {"name": "bestup-3-loss", "options": {}},
            {"name": "bestup-3-loss", "options": {"loss": "ce"}},
        ),
        ({"name": "uniform", "options": {}}, {"name": "uniform", "options": {}}),
    ],
)
def test_runs_from_before_the_renames_resume_with_the_sampler_they_trained_with(
    tmp_path, sampler, read_as
):
    recipe = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**recipe, "sampler": sampler}))
    cfg = load_run_config(tmp_path)
    assert {"name": cfg.sampler.name, "options": cfg.sampler.options} == read_as
    assert resume_changes(tmp_path, cfg) == {}  # what the resume will run is what it ran


def test_a_sampler_option_of_the_wrong_kind_exits_2_naming_it(tmp_path, capsys):
    argv = ["train", "--config", TINY, "--out", str(tmp_path / "run"), "--sampler", "flops-prior"]
    for option in ("prior_samples=abc", "target_mflops=abc", "prior=1"):
        assert main([*argv, "--set", f"sampler.options.{option}", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "sampler 'flops-prior' cannot use sampler.options" in err
        assert option.split("=")[0] in err and "Traceback" not in err
