"""Stage 2 on a tiny trained run: predictor fit, resumable search, Pareto front, export."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from samplenas.cli import main
from samplenas.predictors import RandomForestPredictor, kendall_tau, load_predictor
from samplenas.supernet import calibrate_bn
from samplenas.train.runs import load_run

TINY = "tiny"  # a shipped recipe, by name


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipeline") / "tiny"
    assert main(["train", "--config", TINY, "--out", str(out), "--no-progress"]) == 0
    return out


def search(run_dir: Path, capsys, *extra: str) -> dict:
    capsys.readouterr()
    argv = [
        "search",
        "--run",
        str(run_dir),
        "--population",
        "12",
        "--mutations",
        "6",
        "--crossovers",
        "6",
        "--iterations",
        "2",
        "--no-progress",
        "--json",
        *extra,
    ]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_search_is_resumable_and_reports_a_tested_front(run_dir, capsys):
    partial = search(run_dir, capsys, "--budget", "10")
    assert partial["evaluations"] == 10 and partial["new_evaluations"] == 10
    full = search(run_dir, capsys)
    assert full["evaluations"] == 12 + 2 * 12
    assert full["new_evaluations"] == full["evaluations"] - 10  # nothing measured twice
    again = search(run_dir, capsys)
    assert again["new_evaluations"] == 0 and again["front"] == full["front"]
    front = full["front"]
    mflops = [m["mflops"] for m in front]
    val = [m["val_top1"] for m in front]
    assert mflops == sorted(mflops) and val == sorted(val) and len(set(val)) == len(val)
    assert all(0 <= m["test_top1"] <= 100 for m in front)
    assert (run_dir / "search" / "pareto.png").stat().st_size > 1000
    lines = (run_dir / "search" / "archive.jsonl").read_text().splitlines()
    assert len(lines) == 1 + full["evaluations"]  # the evaluation fingerprint, then rows


def test_search_flops_bounds_and_bad_range(run_dir, capsys):
    space_min = 0.05
    res = search(run_dir, capsys, "--mflops-range", str(space_min), "0.12", "--seed", "3")
    assert all(space_min <= m["mflops"] <= 0.12 for m in res["front"])
    assert main(["search", "--run", str(run_dir), "--mflops-range", "50", "60"]) == 2
    assert "does not meet the space's range" in capsys.readouterr().err


def test_export_round_trip(run_dir, tmp_path, capsys, monkeypatch):
    search(run_dir, capsys)
    out = tmp_path / "model"
    assert main(["export", "--run", str(run_dir), "--arch", "0", "--out", str(out), "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    run = load_run(run_dir)
    arch = run.space.validate(json.loads((out / "arch.json").read_text())["arch"])
    reference = run.supernet.export(arch)
    calib = run.calibration()
    calibrate_bn(reference, iter(calib), len(calib))
    reference.eval()
    x = torch.randn(5, 1, 8, 8)
    expected = reference(x)
    program = torch.export.load(files["torch_export"]).module()
    assert torch.allclose(program(x), expected, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(files["torchscript"])
    assert torch.allclose(scripted(x), expected, atol=1e-5)
    from onnx.reference import ReferenceEvaluator

    (logits,) = ReferenceEvaluator(files["onnx"]).run(None, {"image": x.numpy()})
    assert torch.allclose(torch.from_numpy(logits), expected, atol=1e-4)
    assert main(["export", "--run", str(run_dir), "--arch", "99", "--out", str(out)]) == 2
    assert "Pareto id 99 does not exist" in capsys.readouterr().err
    # without the optional onnx package the other formats are written and the gap is named;
    # the earlier export's model.onnx does not linger beside the new weights
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", "--run", str(run_dir), "--arch", "1", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "onnx" not in result["files"] and "torch_export" in result["files"]
    assert "not installed" in result["skipped"]["onnx"] and not (out / "model.onnx").exists()


def test_scoring_runs_on_the_runs_device(run_dir, monkeypatch):
    import samplenas.train.runs as runs

    devices = []
    real = runs.evaluate_subnet

    def spy(*args, **kwargs):
        devices.append(args[5])
        return real(*args, **kwargs)

    monkeypatch.setattr(runs, "evaluate_subnet", spy)
    run = load_run(run_dir)
    # eval, search and predictor fits score on the GPU when there is one
    assert run.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    run.device = torch.device("cpu")
    assert 0 <= run.evaluate(run.space.smallest())["top1"] <= 100
    assert devices == [torch.device("cpu")]


def learnable_score(self, arch, calib, loader, halves=False):
    """A top-1 that is a smooth function of the architecture's FLOPs, with split halves
    that disagree a little: what a working predictor must rank well."""
    top1 = 50.0 + 150.0 * self.space.mflops(arch)  # 55-85 % on tiny
    wobble = 0.05 * (sum(arch["depth"]) % 3 - 1)
    return {"top1": top1, "loss": 1.0, "top1_a": top1 + wobble, "top1_b": top1 - wobble}


def test_predictor_fit_reports_kendall_tau(run_dir, tmp_path, capsys, monkeypatch):
    import shutil

    from samplenas.train.runs import Run

    run = tmp_path / "run"  # its own copy: the labels below are made up
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("search", "predictor"))
    monkeypatch.setattr(Run, "score", learnable_score)
    capsys.readouterr()
    argv = ["predictor", "fit", "--run", str(run), "--n", "40", "--no-progress", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    # held-out tau on this target measured 0.73 / 0.52 / 0.67 with --seed 0 / 1 / 2
    assert result["n"] == 40 and result["kendall_tau"] > 0.3
    assert result["split_half_tau"] > 0.5 and 0 <= result["tau_ceiling"] <= 1
    assert result["tau_ceiling_all_val"] >= result["tau_ceiling"]  # more images, less noise
    dataset = json.loads(Path(result["dataset"]).read_text())
    assert len(dataset) == 40 and {"arch", "val_top1", "mflops"} <= set(dataset[0])
    for row in dataset:  # equal halves: the label is the mean of the two measurements
        assert row["val_top1"] == pytest.approx((row["val_top1_a"] + row["val_top1_b"]) / 2)
    predictor = load_predictor(result["predictor"])
    archs = [predictor.space.validate(d["arch"]) for d in dataset]
    pred = predictor.predict(archs)
    assert pred.shape == (40,)
    assert kendall_tau([d["val_top1"] for d in dataset], pred) > 0.3  # the saved forest
    kept = json.loads((run / "predictor" / "fit.json").read_text())
    assert kept["predictor"] == "forest.npz"  # relative: the folder can move
    assert main(argv) == 0  # a second fit re-evaluates nothing
    assert (run / "predictor" / "dataset.jsonl").read_text().count("\n") == 1 + 40


def test_accuracy_halves_split_images_by_parity_across_batches():
    from samplenas.train.evaluate import accuracy

    class Echo(torch.nn.Module):  # logits = the input, so the prediction is known
        def forward(self, x):
            return x

    labels = torch.zeros(7, dtype=torch.long)
    guess = torch.tensor([0, 1, 0, 0, 1, 1, 0])  # right on images 0, 2, 3, 6
    logits = torch.nn.functional.one_hot(guess, 2).float()
    batches = [(logits[:3], labels[:3]), (logits[3:], labels[3:])]  # odd-sized first batch
    r = accuracy(Echo(), batches, halves=True)
    assert r["top1"] == pytest.approx(100 * 4 / 7)
    assert r["top1_a"] == pytest.approx(100 * 3 / 4)  # even images 0, 2, 4, 6: 0, 2, 6 right
    assert r["top1_b"] == pytest.approx(100 * 1 / 3)  # odd images 1, 3, 5: 3 right


def test_tau_ceiling_matches_a_perfect_predictor_on_simulated_noise():
    from samplenas.predictors import tau_ceiling

    rng = np.random.default_rng(0)
    truth = rng.normal(90, 1.0, 4000)
    for noise in (0.3, 1.0, 2.0):  # per-half noise; the label averages the two halves
        a = truth + rng.normal(0, noise, truth.size)
        b = truth + rng.normal(0, noise, truth.size)
        perfect = kendall_tau((a + b) / 2, truth)
        assert tau_ceiling(a, b) == pytest.approx(perfect, abs=0.02)
        more = truth + rng.normal(0, noise / 5**0.5, truth.size)  # 5 halves' worth of images
        projected = tau_ceiling(a, b, halves_per_label=5)
        assert projected == pytest.approx(kendall_tau(more, truth), abs=0.02)
    assert tau_ceiling(truth, truth) == pytest.approx(1.0)
    assert tau_ceiling(rng.normal(size=50), rng.normal(size=50)) < 0.3


def test_kendall_tau_and_forest_on_a_known_function():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    from samplenas import load_space

    space = load_space("attentive-fashion")
    archs = space.sample_many(np.random.default_rng(0), 600)
    y = np.array([space.mflops(a) for a in archs])  # a learnable smooth target
    forest = RandomForestPredictor(space).fit(archs[:300], y[:300])
    assert forest.score(archs[300:], y[300:]) > 0.7


def test_demo_runs_the_whole_job_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--config", TINY, "--out", str(out), "--no-progress"]
    assert main([*argv, "--population", "8", "--iterations", "1"]) == 0
    text = capsys.readouterr().out
    assert "uniform sampling" in text and "held-out digits test set" in text
    front = json.loads((out / "search" / "pareto.json").read_text())["front"]
    assert front and all("test_top1" in member for member in front)
    assert (out / "search" / "pareto.png").is_file()
    exported = sorted(p.name for p in (out / "models").iterdir())
    assert len(exported) == min(3, len(front))
    for folder in exported:
        assert (out / "models" / folder / "model.pt2").is_file()


def test_predictor_fit_asking_for_more_than_the_space_exits_2_at_once(run_dir, capsys):
    import time

    start = time.perf_counter()
    code = main(["predictor", "fit", "--run", str(run_dir), "--n", "1024", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "more than the 512 architectures of space 'tiny'" in err
    assert "--num-archs 512 or fewer" in err and time.perf_counter() - start < 30


def test_export_replaces_an_old_export_whole_or_not_at_all(run_dir, tmp_path, capsys, monkeypatch):
    search(run_dir, capsys)
    out = tmp_path / "model"
    assert main(["export", "--run", str(run_dir), "--arch", "0", "--out", str(out)]) == 0
    (out / "stale.txt").write_text("from an older export")
    assert main(["export", "--run", str(run_dir), "--arch", "largest", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "stale.txt" not in names and "model.pt2" in names
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def failing_trace(*args, **kwargs):
        raise RuntimeError("the TorchScript writer failed")

    monkeypatch.setattr(torch.jit, "trace", failing_trace)
    with pytest.raises(RuntimeError, match="TorchScript writer failed"):
        main(["export", "--run", str(run_dir), "--arch", "smallest", "--out", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old one, intact
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left
    # a folder that is not an earlier export is never replaced
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    assert main(["export", "--run", str(run_dir), "--arch", "0", "--out", str(other)]) == 2
    assert "is not an earlier export" in capsys.readouterr().err
    assert (other / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "content", ["{cut short", '{"front": 3}', '{"front": [{"mflops": 1}]}', "[1, 2]"]
)
def test_export_of_a_malformed_pareto_front_exits_2_naming_it(run_dir, tmp_path, capsys, content):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("predictor"))
    (run / "search").mkdir(exist_ok=True)
    pareto = run / "search" / "pareto.json"
    pareto.write_text(content)
    assert main(["export", "--run", str(run), "--arch", "0", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert str(pareto) in err and "Traceback" not in err
