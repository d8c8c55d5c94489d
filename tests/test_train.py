"""Stage-1 training on the tiny recipe: determinism, crash + resume, divergence, DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from samplenas.cli import main
from samplenas.space import Arch, load_space
from samplenas.train import Trainer, load_config
from samplenas.train.checkpoint import CHECKPOINT, load_checkpoint

ROOT = Path(__file__).parent.parent
TINY = "tiny"  # a shipped recipe, by name


def cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "samplenas.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def eval_json(run: Path, arch: str, capsys) -> dict:
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--arch", arch, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--config", TINY, "--out", str(out), "--no-progress"]) == 0
    return out


def test_tiny_run_trains_and_evaluates(tiny_run, capsys):
    for name in ("config.yaml", "metrics.jsonl", CHECKPOINT, "run.json"):
        assert (tiny_run / name).is_file()
    largest = eval_json(tiny_run, "largest", capsys)
    smallest = eval_json(tiny_run, "smallest", capsys)
    assert set(largest) == {"top1", "loss", "mflops", "params_m", "split"}
    assert largest["top1"] > 85 and smallest["top1"] > 70  # 10 classes: chance is 10%
    assert largest["mflops"] > smallest["mflops"]
    history = json.loads((tiny_run / "run.json").read_text())["history"]
    assert len(history) == 12 and "val_top1_largest" in history[-1]
    # every step's sampled sub-networks are logged, with their analytic cost
    space = load_space("tiny")
    samples = read_jsonl(tiny_run / "samples.jsonl")
    assert [r["step"] for r in samples] == list(range(1, history[-1]["step"] + 1))
    for r in samples[:20]:
        assert len(r["archs"]) == 2  # num_random; largest and smallest are implied
        archs = [Arch(a) for a in r["archs"]]
        assert r["mflops"] == [round(space.mflops(a), 3) for a in archs]


def test_same_seed_gives_identical_numbers(tiny_run, tmp_path, capsys):
    again = tmp_path / "again"
    assert main(["train", "--config", TINY, "--out", str(again), "--no-progress"]) == 0
    for arch in ("largest", "smallest"):
        assert eval_json(again, arch, capsys) == eval_json(tiny_run, arch, capsys)
    capsys.readouterr()
    test = main(["eval", "--run", str(again), "--arch", "largest", "--split", "test", "--json"])
    assert test == 0 and json.loads(capsys.readouterr().out)["split"] == "test"


def test_killed_run_resumes_to_the_same_weights(tiny_run, tmp_path, capsys):
    out = tmp_path / "crashed"
    # checkpoints every 5 steps; the process dies abruptly after step 7 (mid-epoch)
    proc = cli(
        "train",
        "--config",
        TINY,
        "--out",
        str(out),
        "--no-progress",
        env={"SAMPLENAS_FAULT_AT_STEP": "7"},
    )
    assert proc.returncode == 137, proc.stderr
    assert load_checkpoint(out / CHECKPOINT)["step"] == 5
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    resumed = load_checkpoint(out / CHECKPOINT)["model"]
    reference = load_checkpoint(tiny_run / CHECKPOINT)["model"]
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k
    assert eval_json(out, "largest", capsys) == eval_json(tiny_run, "largest", capsys)
    # the logs forget the two steps the crash rolled back: no step appears twice
    samples = (out / "samples.jsonl").read_text()
    assert samples == (tiny_run / "samples.jsonl").read_text()
    steps = [r["step"] for r in read_jsonl(out / "metrics.jsonl")]
    assert steps == [r["step"] for r in read_jsonl(tiny_run / "metrics.jsonl")]


def tensorboard_scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_tensorboard_logs_survive_a_crash_without_repeats(tmp_path):
    pytest.importorskip("tensorboard")
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    args = ("--config", TINY, "--epochs", "2", "--no-progress", "--set", "checkpoint.every_steps=8")
    assert main(["train", *args, "--out", str(reference)]) == 0
    # the last checkpoint before the crash is epoch 1's (step 17); step 20 was logged after it
    proc = cli("train", *args, "--out", str(crashed), env={"SAMPLENAS_FAULT_AT_STEP": "22"})
    assert proc.returncode == 137, proc.stderr
    assert load_checkpoint(crashed / CHECKPOINT)["step"] == 17
    time.sleep(1.1)  # event files are named by the second: the resumed one must sort last
    assert main(["train", "--resume", str(crashed), "--no-progress"]) == 0
    for tag in ("loss_largest", "val_top1_largest"):
        expected = tensorboard_scalars(reference, tag)
        assert len(expected) >= 2
        # what the checkpoint saw is kept, what came after it is replaced: no step twice
        got = tensorboard_scalars(crashed, tag)
        assert [step for step, _ in got] == [step for step, _ in expected]
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], abs=1e-6)


def test_resumed_logs_keep_what_the_checkpoint_saw(tmp_path):
    from samplenas.train.runlog import truncate_after

    log = tmp_path / "metrics.jsonl"
    records = [
        {"step": 20, "epoch": 0, "lr": 0.1},
        {"step": 40, "epoch": 0, "lr": 0.1},
        {"epoch": 1, "step": 40, "val_top1_largest": 80.0},  # epoch 1 ended at step 40
        {"step": 60, "epoch": 1, "lr": 0.1},
    ]
    text = "".join(json.dumps(r) + "\n" for r in records) + '{"step": 8'  # torn last line
    log.write_text(text)
    truncate_after(log, 40, 1)  # the end-of-epoch checkpoint: epoch 1 done
    assert read_jsonl(log) == records[:3]
    truncate_after(log, 40, 0)  # saved at step 40 before epoch 1's evaluation finished
    assert read_jsonl(log) == records[:2]


def test_checkpoint_is_weights_only_and_atomic(tiny_run):
    state = torch.load(tiny_run / CHECKPOINT, weights_only=True)
    assert {"model", "optimizer", "scheduler", "sampler", "rng", "step", "loader"} <= set(state)
    assert not [p for p in tiny_run.iterdir() if p.name.endswith(".tmp")]


def test_divergence_stops_with_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    original = Trainer.train_step

    def poisoned(self, x, y):
        if self.step == 3:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return original(self, x, y)

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    out = tmp_path / "nan"
    code = main(
        [
            "train",
            "--config",
            TINY,
            "--out",
            str(out),
            "--no-progress",
            "--set",
            "checkpoint.every_steps=2",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "diverged" in err and "last good checkpoint" in err
    state = load_checkpoint(out / CHECKPOINT)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "train.bogus=1"], "unknown config key 'train.bogus'"),
        (["--set", "train.lr=-1"], "config key 'train.lr' must be positive"),
        (["--sampler", "nope"], "unknown sampler 'nope'"),
        (["--sampler", "nope"], "worstup-K-acc"),  # the families are named in full
        (["--set", "train.grad_clip_mode=max"], "'train.grad_clip_mode' must be norm or value"),
        (
            ["--set", "data.dataset=fashion-mnist", "--data-dir", "/nonexistent"],
            "apt-get install -y dataset-fashion-mnist",
        ),
    ],
)
def test_bad_training_input_exits_2(tmp_path, extra, message):
    proc = cli("train", "--config", TINY, "--out", str(tmp_path / "r"), "--no-progress", *extra)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_gradient_clipping_by_norm_and_by_value():
    from samplenas.train.trainer import clip_gradients

    def grads():
        a, b = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)
        a.grad, b.grad = torch.tensor([3.0, -0.5]), torch.tensor([0.0])
        return [a, b]

    params = grads()  # norm: the whole gradient is rescaled to norm 1
    assert clip_gradients(params, 1.0, "norm") == pytest.approx(9.25**0.5)
    assert float(params[0].grad.norm()) == pytest.approx(1.0, rel=1e-4)
    params = grads()  # value: only the element beyond the limit changes
    assert clip_gradients(params, 1.0, "value") == pytest.approx(9.25**0.5)
    assert params[0].grad.tolist() == [1.0, -0.5]
    params = grads()  # 0 disables clipping, the norm is still reported
    assert clip_gradients(params, 0.0, "norm") == pytest.approx(9.25**0.5)
    assert params[0].grad.tolist() == [3.0, -0.5]


def test_fused_sgd_makes_the_same_update_as_the_reference_sgd():
    """Also when a weight misses steps (a shortcut projection the largest does not use)."""
    from samplenas.train.optim import sgd

    torch.manual_seed(0)
    start = [torch.randn(40, 3), torch.randn(5, 3), torch.randn(7)]
    grads = [[torch.randn_like(w) for w in start] for _ in range(4)]
    grads[0][1] = None
    grads[2][0] = None
    results = []
    for make in (sgd, torch.optim.SGD):
        params = [w.clone().requires_grad_() for w in start]
        groups = [
            {"params": params[:2], "weight_decay": 1e-3},
            {"params": params[2:], "weight_decay": 0.0},
        ]
        opt = make(groups, lr=0.1, momentum=0.9, nesterov=True)
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = None if g is None else g.clone()
            opt.step()
        results.append([p.detach() for p in params])
    for ours, reference in zip(*results, strict=True):
        assert torch.allclose(ours, reference, atol=1e-6)


def test_distillation_target_ramps_from_smoothed_labels_to_the_teacher():
    import torch.nn.functional as F

    from samplenas.train.trainer import distill_targets, soft_cross_entropy

    torch.manual_seed(0)
    logits, y = torch.randn(6, 10), torch.randint(0, 10, (6,))
    teacher = torch.softmax(torch.randn(6, 10), dim=1)
    at_start = distill_targets(teacher, y, 0.1, 0.0)
    assert torch.allclose(
        soft_cross_entropy(logits, at_start), F.cross_entropy(logits, y, label_smoothing=0.1)
    )
    assert distill_targets(teacher, y, 0.1, 1.0) is teacher
    halfway = distill_targets(teacher, y, 0.1, 0.5)
    assert torch.allclose(halfway, (teacher + at_start) / 2)
    assert torch.allclose(halfway.sum(dim=1), torch.ones(6))
    from types import SimpleNamespace

    weight = [  # the teacher's share by step: a linear ramp, then 1 for good
        Trainer.distill_weight(SimpleNamespace(step=s, distill_warmup_steps=w))
        for s, w in ((0, 10), (5, 10), (10, 10), (50, 10), (0, 0))
    ]
    assert weight == [0.0, 0.5, 1.0, 1.0, 1.0]


def test_weight_average_follows_the_ema_formula():
    from samplenas.train.ema import averaged_parameters, make_ema

    model = torch.nn.Linear(3, 2)
    ema = make_ema(model, 0.9)
    first = model.weight.detach().clone()
    ema.update_parameters(model)  # the first update copies
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update_parameters(model)
    expected = 0.9 * first + 0.1 * (first + 1.0)
    averaged = averaged_parameters(ema.state_dict(), model)
    assert set(averaged) == {"weight", "bias"}
    assert torch.allclose(averaged["weight"], expected, atol=1e-6)


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "ema"
    argv = ["train", "--config", TINY, "--out", str(out), "--no-progress"]
    assert main([*argv, "--set", "train.ema_decay=0.8"]) == 0
    return out


def test_ema_run_trains_the_same_weights_and_scores_their_average(tiny_run, ema_run, capsys):
    state = load_checkpoint(ema_run / CHECKPOINT)
    reference = load_checkpoint(tiny_run / CHECKPOINT)["model"]
    for k in reference:  # the average is a by-product: training is unchanged
        assert torch.equal(state["model"][k], reference[k]), k
    assert "ema" in state and "ema" not in load_checkpoint(tiny_run / CHECKPOINT)
    capsys.readouterr()
    argv = ["eval", "--run", str(ema_run), "--arch", "largest", "--json"]
    assert main([*argv, "--weights", "trained"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained == eval_json(tiny_run, "largest", capsys)
    averaged = eval_json(ema_run, "largest", capsys)  # auto: the average
    assert averaged != trained and averaged["top1"] > 85
    history = json.loads((ema_run / "run.json").read_text())["history"]
    assert history[-1]["val_top1_largest"] == pytest.approx(averaged["top1"])
    proc = cli("eval", "--run", str(tiny_run), "--weights", "ema")
    assert proc.returncode == 2 and "kept no weight average" in proc.stderr


def test_killed_ema_run_resumes_to_the_same_average(ema_run, tmp_path):
    out = tmp_path / "crashed"
    argv = ["train", "--config", TINY, "--out", str(out), "--no-progress"]
    proc = cli(*argv, "--set", "train.ema_decay=0.8", env={"SAMPLENAS_FAULT_AT_STEP": "7"})
    assert proc.returncode == 137, proc.stderr
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    resumed = load_checkpoint(out / CHECKPOINT)["ema"]
    reference = load_checkpoint(ema_run / CHECKPOINT)["ema"]
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k


def test_eval_of_a_missing_run_exits_2(tmp_path):
    proc = cli("eval", "--run", str(tmp_path), "--arch", "largest")
    assert proc.returncode == 2 and "not a trained run directory" in proc.stderr


def test_a_damaged_run_directory_exits_2_naming_the_file(tiny_run, tmp_path, capsys):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_run, damaged)
    checkpoint = damaged / CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # cut short, e.g. by a bad copy
    for argv in (
        ["eval", "--run", str(damaged), "--arch", "largest"],
        ["train", "--resume", str(damaged)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"checkpoint '{checkpoint}' cannot be read" in err and "Traceback" not in err
    (damaged / "config.yaml").write_text("train: [unclosed\n")
    assert main(["eval", "--run", str(damaged), "--arch", "largest"]) == 2
    assert "is not valid YAML" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# attentive sampling from minibatch losses: the ranks see different shards, so their
# choices only agree because the candidates' losses are averaged across ranks
DDP_RECIPE = {"train": {"epochs": 16}, "sampler": {"name": "bestup-2-loss"}}


def _ddp_worker(rank: int, world: int, port: int, out: str, queue) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    trainer = Trainer(load_config(TINY, DDP_RECIPE), out, progress=False)
    chosen: list[str] = []  # every sub-network this rank's sampler picked, in order
    ask = trainer.sampler.ask

    def recording_ask(n: int = 1) -> list:
        archs = ask(n)
        chosen.extend(a.to_json_str() for a in archs)
        return archs

    trainer.sampler.ask = recording_ask
    trainer.run()
    flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()]).numpy().copy()
    queue.put((rank, flat, trainer.history, chosen))  # by value, not by shared memory
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_keep_identical_weights(tmp_path):
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_ddp_worker, args=(r, 2, port, str(tmp_path / "ddp"), queue))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    results = {r: (w, h, c) for r, w, h, c in (queue.get(timeout=300) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert (results[0][0] == results[1][0]).all()
    # both ranks picked the same sub-networks, and the choices were not all alike
    assert results[0][2] == results[1][2] and len(set(results[0][2])) > 10
    # one process with the same total batch (2 x 64) learns alike
    one = {"train": {"epochs": 16, "batch_size": 128}, "sampler": {"name": "bestup-2-loss"}}
    single = Trainer(load_config(TINY, one), tmp_path / "single", progress=False)
    single.run()
    for key in ("val_top1_largest", "val_top1_smallest"):
        ddp = [h[key] for h in results[0][1]]
        ref = [h[key] for h in single.history]
        assert ddp[-1] > 70 and ref[-1] > 70
        assert abs(ddp[-1] - ref[-1]) < 10
        assert ddp[-1] > ddp[0] and ref[-1] > ref[0]
    assert (tmp_path / "ddp" / CHECKPOINT).is_file()
    # rank 0 logs each choice: the kept candidate is the best-scored one of its slot
    logged = read_jsonl(tmp_path / "ddp" / "samples.jsonl")
    assert [Arch(a).to_json_str() for r in logged for a in r["archs"]] == results[0][2]
    for r in logged:
        for i, scores in enumerate(r["candidate_scores"]):
            # the kept score is the largest (rounded in the log, so near-ties may tie)
            assert len(scores) == 2 and scores[r["picked"][i]] == max(scores)
            assert r["mflops"][i] == r["candidate_mflops"][i][r["picked"][i]]


def _diverging_rank_worker(rank: int, port: int, out: str, queue) -> None:
    """One of two gloo ranks running ``samplenas train``; only rank 1's loss turns NaN."""
    import contextlib
    import io

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
    )
    if rank == 1:
        original = Trainer.train_step

        def poisoned(self, x, y):
            if self.step == 6:  # after the checkpoint of step 5
                with torch.no_grad():
                    next(self.model.parameters()).fill_(float("nan"))
            return original(self, x, y)

        Trainer.train_step = poisoned
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", "--config", TINY, "--out", out, "--no-progress"])
    queue.put((rank, code, err.getvalue()))


def test_a_non_finite_loss_on_one_rank_stops_every_rank(tmp_path):
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_diverging_rank_worker, args=(r, port, str(tmp_path / "nan"), queue))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    try:  # before ranks agreed on finiteness, rank 0 waited in the all-reduce forever
        results = {r: (code, err) for r, code, err in (queue.get(timeout=120) for _ in procs)}
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    for rank in (0, 1):
        code, err = results[rank]
        assert code == 1 and "training diverged" in err and "last good checkpoint" in err
    assert "another rank" in results[0][1] and "nan" in results[1][1]
    assert load_checkpoint(tmp_path / "nan" / CHECKPOINT)["step"] == 5
