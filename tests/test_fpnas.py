"""FP-NAS: architecture distributions, the sampler's updates, and the search trainer."""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from samplenas.cli import main
from samplenas.errors import UserError
from samplenas.samplers import make_sampler
from samplenas.samplers.probabilistic import (
    ArchDistribution,
    ProbabilisticSampler,
    adaptive_k,
    importance_weights,
    parse_distribution,
    parse_sampling,
)
from samplenas.space import load_space
from samplenas.train import load_config
from samplenas.train.checkpoint import CHECKPOINT, load_checkpoint

ROOT = Path(__file__).parent.parent


def cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "samplenas.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def all_index_rows(space) -> np.ndarray:
    return np.array(list(itertools.product(*[range(int(n)) for n in space.n_choices])))


def randomised(dist: ArchDistribution, seed: int = 0) -> ArchDistribution:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in dist.logits:
            t.copy_(torch.randn(t.shape, generator=g, dtype=torch.float64) * 2)
    return dist


# -- distributions ----------------------------------------------------------------------
def test_variable_groups_are_the_stages_of_mbconv_spaces():
    space = load_space("tiny")
    groups = space.variable_groups()
    labels = [{space.genes[j].group for j in g} for g in groups]
    assert labels == [{"input"}, {"stem"}, {"mb1"}, {"mb2"}, {"head"}]
    assert {space.genes[j].field for j in groups[2]} == {
        "width",
        "depth",
        "kernel_size",
        "expand_ratio",
    }
    assert sorted(j for g in groups for j in g) == list(range(len(space.genes)))


@pytest.mark.parametrize("name", ["tiny", "attentive-fashion"])
@pytest.mark.parametrize("kind", ["factorized", "joint"])
def test_uniform_entropy_is_the_sum_of_log_choice_counts(name, kind):
    space = load_space(name)
    dist = ArchDistribution(space, kind)
    expected = sum(math.log(int(n)) for n in space.n_choices)
    assert dist.entropy() == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(math.log(space.size()))


def test_factorized_to_joint_keeps_probabilities_entropy_and_log_prob():
    space = load_space("tiny")
    fact = randomised(ArchDistribution(space, "factorized"))
    joint = fact.to_joint()
    assert joint.kind == "joint" and len(joint.logits) == len(space.variable_groups())
    sizes = [math.prod(int(space.n_choices[j]) for j in g) for g in space.variable_groups()]
    assert joint.num_parameters() == sum(sizes) > fact.num_parameters()
    rows = all_index_rows(space)  # all 512 architectures
    lp_f, lp_j = fact.log_prob_indices(rows).detach(), joint.log_prob_indices(rows).detach()
    assert torch.allclose(lp_f, lp_j, atol=1e-12, rtol=0)
    assert float(lp_f.exp().sum()) == pytest.approx(1.0, abs=1e-12)
    assert joint.entropy() == pytest.approx(fact.entropy(), abs=1e-12)
    # the exact entropy is -sum P log P over the whole space
    assert fact.entropy() == pytest.approx(float(-(lp_f.exp() * lp_f).sum()), abs=1e-9)
    assert (joint.most_probable_indices() == fact.most_probable_indices()).all()
    assert int(torch.argmax(lp_f)) == int(
        np.flatnonzero((rows == fact.most_probable_indices()).all(1))[0]
    )


def test_sampling_follows_the_distribution():
    space = load_space("tiny")
    dist = randomised(ArchDistribution(space, "factorized"), seed=3).to_joint()
    rows = dist.sample_indices(np.random.default_rng(0), 20000)
    p = dist.probs()[2]  # the joint factor of stage mb1
    group = dist.factors[2]
    flat = np.ravel_multi_index(tuple(rows[:, group].T), dist.shapes[2])
    freq = np.bincount(flat, minlength=len(p)) / len(rows)
    assert np.abs(freq - p).max() < 0.015


def test_log_prob_is_differentiable_in_alpha():
    space = load_space("tiny")
    dist = ArchDistribution(space, "joint")
    archs = dist.sample(np.random.default_rng(0), 3)
    dist.log_prob(archs).sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in dist.logits)


# -- adaptive K, importance weights -----------------------------------------------------
def test_k_follows_lambda_times_entropy_and_shrinks_as_the_distribution_sharpens():
    space = load_space("attentive-fashion")
    sampler = ProbabilisticSampler(space, seed=0, sampling="as:0.25", lr=0.1)
    h0 = sampler.entropy()
    assert sampler.sample_size() == round(0.25 * h0) == 6
    assert len(sampler.ask()) == 6
    target = space.largest()
    ks, hs = [], []
    for _ in range(150):
        archs = sampler.ask()
        ks.append(len(archs))
        hs.append(sampler.entropy())
        assert ks[-1] == adaptive_k(hs[-1], 0.25) == max(1, math.floor(0.25 * hs[-1] + 0.5))
        score = [-sum(a[f] != target[f] for f in target) for a in archs]
        sampler.tell(archs, score)
    assert hs[-1] < h0 / 2 and ks[-1] < ks[0] and ks[-1] >= 1
    assert all(a >= b for a, b in zip(ks[::10], ks[10::10], strict=False))
    fixed = ProbabilisticSampler(space, seed=0, sampling="fs:8")
    assert len(fixed.ask()) == 8 and fixed.sample_size() == 8
    assert adaptive_k(0.1, 0.25) == 1


def test_importance_weights_are_algorithm_1s():
    ll = np.array([-1000.0, -1001.0, -1003.0])  # batch log-likelihoods: exp underflows
    m_w, m_a = importance_weights(ll, [0.0, 0.5, 1.5], beta=0.3)
    p = np.exp(ll - ll.max())
    assert np.allclose(m_w, p / p.sum()) and m_w.sum() == pytest.approx(1)
    assert np.allclose(m_a, m_w - 0.3 * np.array([0, 0.5, 1.5]) / 2.0)
    m_w2, m_a2 = importance_weights(ll, [0.0, 0.0, 0.0], beta=0.3)  # nothing over target
    assert np.allclose(m_w2, m_w) and np.allclose(m_a2, m_w)
    hot, _ = importance_weights(ll, [0, 0, 0], beta=0.3, temperature=10.0)
    q = np.exp((ll - ll.max()) / 10)
    assert np.allclose(hot, q / q.sum())


def test_hinge_cost_is_relative_excess_over_each_target():
    space = load_space("tiny")
    arch = space.largest()
    mflops = space.mflops(arch)
    sampler = ProbabilisticSampler(
        space, target_mflops=mflops / 2, costs={"double": (lambda a: 2.0, 1.0)}
    )
    assert sampler.hinge(arch) == pytest.approx(1.0 + 1.0)
    assert ProbabilisticSampler(space, target_mflops=mflops).hinge(arch) == 0.0


# -- learning alpha -----------------------------------------------------------------------
@pytest.mark.parametrize("distribution", ["factorized", "joint", "mixed:1"])
def test_alpha_converges_to_the_choices_a_synthetic_reward_favours(distribution):
    space = load_space("attentive-fashion")
    rng = np.random.default_rng(7)
    best = np.array([rng.integers(n) for n in space.n_choices])
    sampler = make_sampler(
        "probabilistic", space, seed=1, distribution=distribution, sampling="fs:8", lr=0.05
    )
    for step in range(700):
        archs = sampler.ask()
        # a fake validation log-likelihood: one nat per variable at its favoured choice
        ll = [float((space.indices_of(a) == best).sum()) for a in archs]
        sampler.tell(archs, ll)
        if step == 200:
            sampler.end_epoch(1)
    assert sampler.kind == ("factorized" if distribution == "factorized" else "joint")
    assert (space.indices_of(sampler.most_probable()) == best).all()


@pytest.mark.parametrize("target", [None, 0.1])
def test_the_hinge_cost_pushes_the_most_probable_architecture_under_the_target(target):
    space = load_space("tiny")
    sampler = ProbabilisticSampler(
        space, seed=0, sampling="fs:8", lr=0.05, beta=0.3, target_mflops=target
    )
    for _ in range(300):
        archs = sampler.ask()
        # the likelihood favours big networks by up to a nat across the space: the hinge's
        # pull on alpha is beta against the likelihood's 1 (m^alpha sums to 1 - beta), so
        # it wins against a preference of this size (a sharper one needs a temperature)
        sampler.tell(archs, [space.mflops(a) / 0.25 for a in archs])
    mflops = space.mflops(sampler.most_probable())
    if target is None:  # the control: without the hinge the search goes big
        assert mflops > 0.2
    else:
        assert mflops <= target


def test_sampler_state_round_trips_through_json_and_continues_identically():
    space = load_space("tiny")
    a = ProbabilisticSampler(space, seed=4, distribution="mixed:1", lr=0.05)
    for epoch in (0, 1):
        for _ in range(5):
            archs = a.ask()
            a.tell(archs, [float(i) for i in range(len(archs))])
        a.end_epoch(epoch)
    b = ProbabilisticSampler(space, seed=99, distribution="mixed:1", lr=0.05)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.kind == "joint"
    for _ in range(5):
        xa, xb = a.ask(), b.ask()
        assert xa == xb
        a.tell(xa, [0.0] + [1.0] * (len(xa) - 1))
        b.tell(xb, [0.0] + [1.0] * (len(xb) - 1))
    assert all(torch.equal(x, y) for x, y in zip(a.dist.logits, b.dist.logits, strict=True))


def test_results_told_one_at_a_time_update_alpha_once_per_step_of_k():
    space = load_space("tiny")
    one, batch = (ProbabilisticSampler(space, seed=2, sampling="fs:4") for _ in range(2))
    archs = batch.ask()
    scores = [0.0, 2.0, 1.0, -1.0]
    batch.tell(archs, scores)
    start = [t.detach().clone() for t in one.dist.logits]
    for i, (arch, score) in enumerate(zip(archs, scores, strict=True)):
        if i == 2:  # a checkpoint in the middle of a step keeps the told results
            again = ProbabilisticSampler(space, seed=0, sampling="fs:4")
            again.load_state_dict(json.loads(json.dumps(one.state_dict())))
            one = again
        unchanged = all(torch.equal(a, b) for a, b in zip(start, one.dist.logits, strict=True))
        assert unchanged  # no step before the K-th result
        one.tell([arch], [score])
    assert all(torch.equal(a, b) for a, b in zip(one.dist.logits, batch.dist.logits, strict=True))


@pytest.mark.parametrize(
    "text,ok",
    [("as:0.25", True), ("fs:8", True), ("as:0", False), ("fs:1.5", False), ("x:1", False)],
)
def test_sampling_strings(text, ok):
    if ok:
        assert parse_sampling(text)[0] == text[:2]
    else:
        with pytest.raises(UserError, match="as:LAMBDA"):
            parse_sampling(text)


def test_distribution_strings():
    assert parse_distribution("joint") == ("joint", None)
    assert parse_distribution("mixed:5") == ("factorized", 5)
    for bad in ("mixed", "mixed:0", "mixed:a", "full"):
        with pytest.raises(UserError, match="mixed:THETA"):
            parse_distribution(bad)


# -- the search trainer -----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory) -> tuple[Path, dict, float]:
    out = tmp_path_factory.mktemp("fpnas") / "tiny"
    start = time.perf_counter()
    proc = cli(
        "fpnas", "--config", "fpnas-tiny", "--out", str(out), "--sampling", "as:0.25",
        "--target-mflops", "0.1", "--json", "--no-progress",
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout), seconds


def test_cli_tiny_search_end_to_end(tiny_search):
    out, printed, seconds = tiny_search
    assert seconds <= 120
    result = json.loads((out / "result.json").read_text())
    assert printed == result
    assert {"arch", "mflops", "params_m", "samples_total", "wall_s", "epochs"} <= set(result)
    space = load_space("tiny")
    arch = space.validate(result["arch"])
    assert result["mflops"] == pytest.approx(space.mflops(arch)) and result["mflops"] <= 0.1
    epochs = result["epochs"]
    assert [e["epoch"] for e in epochs] == list(range(1, 17))
    assert all(
        set(e) == {"epoch", "entropy", "k_mean", "samples", "val_top1", "mflops", "wall_s"}
        for e in epochs
    )
    # uniform through the 2-epoch warm-up, then the entropy and K fall
    assert epochs[0]["entropy"] == pytest.approx(math.log(512))
    assert epochs[-1]["entropy"] < epochs[2]["entropy"] < epochs[0]["entropy"]
    assert epochs[-1]["k_mean"] < epochs[0]["k_mean"]
    assert result["samples_total"] == epochs[-1]["samples"]
    assert result["samples_total"] == pytest.approx(sum(e["k_mean"] * 17 for e in epochs))
    assert epochs[-1]["val_top1"] > 70  # the most probable network, BN-calibrated
    # the switch to the joint distribution after epoch 8 is logged and seen in samples.jsonl
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in samples]
    assert kinds[8 * 17 - 1] == "factorized" and kinds[8 * 17] == "joint"
    assert [len(r["archs"]) for r in samples] == [r["k"] for r in samples]


def test_resumed_search_is_identical(tmp_path):
    args = ["--config", "fpnas-tiny", "--no-progress", "--epochs", "3"]
    args += ["--set", "fpnas.supernet_warmup_epochs=1", "--set", "fpnas.distribution=mixed:2"]
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    assert main(["fpnas", *args, "--out", str(reference)]) == 0
    # checkpoints every 5 steps; dies after step 22 (epoch 2, alpha learning, before the switch)
    proc = cli("fpnas", *args, "--out", str(crashed), env={"SAMPLENAS_FAULT_AT_STEP": "22"})
    assert proc.returncode == 137, proc.stderr
    assert load_checkpoint(crashed / CHECKPOINT)["step"] == 20
    assert main(["fpnas", "--out", str(crashed), "--resume", "--no-progress"]) == 0
    a, b = load_checkpoint(reference / CHECKPOINT), load_checkpoint(crashed / CHECKPOINT)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = json.loads(a["sampler"]), json.loads(b["sampler"])
    assert sa == sb and sa["distribution"]["kind"] == "joint"  # alpha, Adam, RNG, kind
    assert a["fpnas"] == b["fpnas"]
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (reference, crashed))
    for key in ("arch", "mflops", "samples_total"):
        assert ra[key] == rb[key]
    strip = [{k: v for k, v in e.items() if k != "wall_s"} for e in ra["epochs"]]
    assert strip == [{k: v for k, v in e.items() if k != "wall_s"} for e in rb["epochs"]]
    assert (reference / "samples.jsonl").read_text() == (crashed / "samples.jsonl").read_text()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--sampling", "as:x"], "as:LAMBDA"),
        (["--distribution", "mixed:16"], "choose THETA below 16"),
        (["--distribution", "tree"], "mixed:THETA"),
        (["--target-mflops", "5"], "outside the range of space 'tiny'"),
        (["--set", "fpnas.temperature=0"], "fpnas.temperature"),
    ],
)
def test_bad_search_input_exits_2_with_one_sentence(tmp_path, capsys, extra, message):
    code = main(["fpnas", "--config", "fpnas-tiny", "--out", str(tmp_path / "r"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_resume_without_a_run_and_search_without_config_exit_2(tmp_path, capsys):
    assert main(["fpnas", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert main(["fpnas", "--out", str(tmp_path / "none")]) == 2
    assert "--config is required" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_worker(rank: int, port: int, out: str, queue) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
    )
    try:
        queue.put((rank, *_gloo_search(out)))
    except BaseException as exc:  # say so at once: the test would wait for its timeout
        queue.put((rank, repr(exc), None, None, None))
        raise
    finally:
        torch.distributed.destroy_process_group()


def _gloo_search(out: str) -> tuple:
    from samplenas.train.fpnas import FPNASTrainer

    recipe = {"train": {"epochs": 3}, "fpnas": {"supernet_warmup_epochs": 1}}
    recipe["fpnas"]["distribution"] = "mixed:2"
    trainer = FPNASTrainer(load_config("fpnas-tiny", recipe), out, progress=False)
    drawn: list[str] = []
    ask = trainer.sampler.ask

    def recording_ask(n=None):
        archs = ask(n)
        drawn.append(json.dumps([a.to_json() for a in archs]))
        return archs

    trainer.sampler.ask = recording_ask
    result = trainer.run()
    logits = [t.detach().numpy().copy() for t in trainer.sampler.dist.logits]
    flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()]).numpy().copy()
    return drawn, logits, flat, result["arch"]


def test_two_gloo_processes_draw_the_same_architectures(tmp_path):
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_gloo_worker, args=(r, port, str(tmp_path / "ddp"), queue))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    try:
        results = {r[0]: r[1:] for r in (queue.get(timeout=300) for _ in procs)}
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs), results
    (d0, l0, w0, a0), (d1, l1, w1, a1) = results[0], results[1]
    assert d0 == d1 and len(d0) == 3 * 8  # 1138 images / 2 ranks / 64 = 8 steps an epoch
    assert len(set(d0)) > 10  # the draws vary
    assert all(np.array_equal(x, y) for x, y in zip(l0, l1, strict=True)) and len(l0) == 5
    assert np.array_equal(w0, w1) and a0 == a1
    assert (tmp_path / "ddp" / "result.json").is_file()
