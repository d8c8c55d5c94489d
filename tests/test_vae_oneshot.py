"""VAENAS inside weight-sharing NAS (Algorithm 2): the ε schedule, the uniform/VAE mixture,
the trainer scoring and telling every n_vae steps, resume, and the VAE-seeded search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from samplenas.cli import main
from samplenas.samplers import make_sampler
from samplenas.samplers.registry import VAE_OPTIONS
from samplenas.samplers.vae import VAEConfig
from samplenas.samplers.vae_oneshot import VAEOneShotSampler, trained_vae, vae_seeds
from samplenas.search.evolution import EvolutionSampler
from samplenas.space import load_space
from samplenas.train import Trainer, load_config
from samplenas.train.checkpoint import CHECKPOINT, load_checkpoint
from samplenas.train.config import load_run_config

ROOT = Path(__file__).parent.parent
TINY = "tiny"
VAE_RUN = [
    "--config",
    TINY,
    "--sampler",
    "vae",
    "--epochs",
    "1",
    "--no-progress",
    "--set",
    "sampler.options={eps_inc: 0.05, n_vae: 3, n_s: 4, n_iters: 10, score_val_images: 100}",
]
SEARCH = ["--population", "8", "--mutations", "4", "--crossovers", "4", "--iterations", "1"]


@pytest.fixture(scope="module")
def space():
    return load_space("tiny")


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vae") / "run"
    assert main(["train", *VAE_RUN, "--out", str(out)]) == 0
    return out


def concentrated(space, arch, **options) -> VAEOneShotSampler:
    """A sampler whose VAE learned to propose ``arch`` almost always."""
    sampler = VAEOneShotSampler(space, seed=3, **options)
    sampler.vae.fit([arch] * 32, n_iters=150)
    return sampler


def test_eps_grows_by_eps_inc_per_step_up_to_its_cap(space, one_thread):
    sampler = VAEOneShotSampler(space, seed=0, eps_inc=0.3, eps_max=0.75)
    seen = []
    for _ in range(6):
        seen.append(sampler.eps)
        sampler.ask(2)
        assert sampler.last_decision()["eps"] == seen[-1]  # the step drew with it
    assert seen == [min(i * 0.3, 0.75) for i in range(6)]
    assert seen == pytest.approx([0.0, 0.3, 0.6, 0.75, 0.75, 0.75])
    # the default: no cap below 1, a thousand steps to get there
    default = VAEOneShotSampler(space, seed=0)
    default.steps = 999
    assert default.eps == pytest.approx(0.999) and (default.steps, default.eps_max) == (999, 1.0)
    default.steps = 5000
    assert default.eps == 1.0


def test_mixture_draws_from_the_vae_with_frequency_eps(space, one_thread):
    target = space.largest()
    sampler = concentrated(space, target, eps_inc=0.3, eps_max=0.3)
    first = sampler.ask(200)  # step 1: ε = 0, all uniform
    assert not any(sampler.last_decision()["from_vae"])
    share_uniform = np.mean([a == target for a in first])
    assert share_uniform < 0.05  # 1 in 512 under U
    draws, flags = [], []
    for _ in range(20):
        draws += sampler.ask(100)
        flags += sampler.last_decision()["from_vae"]
    frac = np.mean(flags)
    assert abs(frac - 0.3) < 4 * np.sqrt(0.3 * 0.7 / len(flags))  # binomial, 4 sigma
    # the flagged slots really came from the VAE: they are (nearly all) its one arch
    from_vae = [a for a, f in zip(draws, flags, strict=True) if f]
    assert np.mean([a == target for a in from_vae]) > 0.9
    assert np.mean([a == target for a, f in zip(draws, flags, strict=True) if not f]) < 0.05
    assert sampler.stats()["vae_fraction"] == pytest.approx(sum(flags) / (200 + len(flags)))


def test_registry_builds_it_with_every_vae_option(space):
    assert set(VAE_OPTIONS) >= {f.name for f in fields(VAEConfig)}
    sampler = make_sampler("vae", space, seed=1, n_vae=7, ranking_ratio=0.25, latent=4)
    assert isinstance(sampler, VAEOneShotSampler)
    assert sampler.n_vae == 7 and sampler.vae.cfg.ranking_ratio == 0.25
    from samplenas.errors import UserError

    with pytest.raises(UserError, match="unknown option 'eps'"):
        make_sampler("vae", space, eps=0.1)
    with pytest.raises(UserError, match="eps_max"):
        make_sampler("vae", space, eps_max=2.0)


def test_trainer_scores_n_s_archs_every_n_vae_steps_and_tells_the_vae(tmp_path, monkeypatch):
    calls = []
    score = Trainer.score_archs

    def spy(self, archs):
        scores = score(self, archs)
        calls.append((self.step + 1, list(archs), scores))
        return scores

    monkeypatch.setattr(Trainer, "score_archs", spy)
    options = {"eps_inc": 0.05, "n_vae": 4, "n_s": 5, "n_iters": 5, "score_val_images": 60}
    cfg = load_config(
        TINY, {"train": {"epochs": 1}, "sampler": {"name": "vae", "options": options}}
    )
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.run()
    steps = trainer.step
    assert [c[0] for c in calls] == list(range(4, steps + 1, 4))
    assert all(len(archs) == 5 for _, archs, _ in calls)
    for *_, scores in calls:  # BN-calibrated top-1 on 60 val images: multiples of 1/60
        assert all(0 <= s <= 100 and round(s * 60 / 100, 6).is_integer() for s in scores)
    sampler = trainer.sampler
    assert sampler.vae.counts["trainings"] == len(calls)
    told = [[json.dumps(a) for a, _ in pairs] for _, pairs in sampler.told]
    assert told == [[json.dumps(a.to_json()) for a in archs] for _, archs, _ in calls]
    assert [s for _, pairs in sampler.told for _, s in pairs] == [
        s for *_, scores in calls for s in scores
    ]
    # every step's log says which slots the VAE drew and with which ε
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    ]
    assert [r["eps"] for r in rows] == pytest.approx([0.05 * i for i in range(steps)])
    assert all(len(r["from_vae"]) == 2 for r in rows)


def cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "samplenas.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def test_killed_vae_run_resumes_identically(vae_run, tmp_path):
    out = tmp_path / "crashed"
    # checkpoints every 5 steps, the VAE trains at 3, 6, 9 ...: dies after step 7
    proc = cli("train", *VAE_RUN, "--out", str(out), env={"SAMPLENAS_FAULT_AT_STEP": "7"})
    assert proc.returncode == 137, proc.stderr
    assert load_checkpoint(out / CHECKPOINT)["step"] == 5
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    resumed, reference = load_checkpoint(out / CHECKPOINT), load_checkpoint(vae_run / CHECKPOINT)
    for k in reference["model"]:
        assert torch.equal(resumed["model"][k], reference["model"][k]), k
    assert resumed["sampler"] == reference["sampler"]  # VAE weights, optimiser, RNG, ε, told
    state = json.loads(reference["sampler"])
    assert state["name"] == "vae" and len(state["told"]) == reference["step"] // 3
    assert (out / "samples.jsonl").read_text() == (vae_run / "samples.jsonl").read_text()


def test_evolution_starts_from_the_given_seeds(space):
    seeds = space.sample_many(np.random.default_rng(5), 6)
    evo = EvolutionSampler(space, seed=0, population=10, seeds=[*seeds, seeds[0]])
    first = evo.ask()
    assert len(first) == 10 and first[2:8] == seeds and evo.seeded == 6
    assert first[:2] == [space.smallest(), space.largest()]
    plain = EvolutionSampler(space, seed=0, population=10).ask()
    assert not set(seeds) <= set(plain)


def test_search_seeded_from_the_vae_evaluates_its_samples_first(vae_run, space, capsys):
    state = load_checkpoint(vae_run / CHECKPOINT)["sampler"]
    recipe = load_run_config(vae_run)
    expected = vae_seeds(trained_vae(vae_run, space, recipe.sampler, state), 4, 0)
    assert len(expected) == 4 and len(set(expected)) == 4
    capsys.readouterr()
    argv = ["search", "--run-dir", str(vae_run), *SEARCH, "--no-progress", "--json"]
    assert main([*argv, "--seed-from", "vae", "--n-seeds", "4"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["seeded"] == 4
    rows = (vae_run / "search" / "archive.jsonl").read_text().splitlines()[1:]
    evaluated = [json.loads(r)["arch"] for r in rows]
    assert evaluated[2:6] == [a.to_json() for a in expected]  # after the two extremes
    pareto = json.loads((vae_run / "search" / "pareto.json").read_text())
    assert pareto["seeded"] == 4


def test_seed_from_vae_on_a_run_without_a_vae_exits_2(tmp_path, capsys):
    run = tmp_path / "uniform"
    argv = ["train", "--config", TINY, "--epochs", "1", "--no-progress", "--out", str(run)]
    assert main(argv) == 0
    capsys.readouterr()
    search = ["search", "--run-dir", str(run), *SEARCH, "--no-progress"]
    assert main([*search, "--seed-from", "vae"]) == 2
    err = capsys.readouterr().err
    assert "trained with sampler 'uniform', not 'vae'" in err and "Traceback" not in err
    assert err.strip().count("\n") == 0
    assert main([*search, "--n-seeds", "3"]) == 2
    assert "add --seed-from vae" in capsys.readouterr().err
    assert not (run / "search" / "archive.jsonl").exists()


# -- Algorithm 3: FP-NAS with the VAE's samples -------------------------------------------
FPNAS_VAE = [
    "--config",
    "fpnas-tiny",
    "--sampling",
    "vae:3",
    "--epochs",
    "2",
    "--no-progress",
    "--set",
    "fpnas.distribution=factorized",
    "--set",
    "fpnas.supernet_warmup_epochs=0",
    "--set",
    "fpnas.vae={n_vae: 4, n_s: 6, n_iters: 10, score_val_images: 60}",
]


def test_fpnas_sampling_vae_draws_the_k_archs_from_the_vae(tmp_path, monkeypatch):
    from samplenas.samplers.vae import VAESampler

    asked, scored = [], []
    ask, score = VAESampler.ask, Trainer.score_archs
    monkeypatch.setattr(
        VAESampler, "ask", lambda self, n=1, **kw: asked.append(ask(self, n, **kw)) or asked[-1]
    )
    monkeypatch.setattr(Trainer, "score_archs", lambda self, a: scored.append(a) or score(self, a))
    out = tmp_path / "fp"
    assert main(["fpnas", *FPNAS_VAE, "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["archs"] for r in rows] == [[a.to_json() for a in got] for got in asked]
    assert all(r["k"] == 3 and r["vae"] for r in rows)
    steps = len(rows)
    assert len(scored) == steps // 4 and all(len(a) == 6 for a in scored)
    state = json.loads(load_checkpoint(out / CHECKPOINT)["sampler"])
    assert state["vae"]["counts"]["trainings"] == steps // 4
    assert [t[0] for t in state["told"]] == list(range(4, steps + 1, 4))
    result = json.loads((out / "result.json").read_text())
    assert result["samples_total"] == 3 * steps  # alpha still gives the result


def test_fpnas_vae_resumes_identically(tmp_path):
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    assert main(["fpnas", *FPNAS_VAE, "--out", str(reference)]) == 0
    proc = cli("fpnas", *FPNAS_VAE, "--out", str(crashed), env={"SAMPLENAS_FAULT_AT_STEP": "22"})
    assert proc.returncode == 137, proc.stderr
    assert main(["fpnas", "--out", str(crashed), "--resume", "--no-progress"]) == 0
    a, b = load_checkpoint(reference / CHECKPOINT), load_checkpoint(crashed / CHECKPOINT)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["sampler"] == b["sampler"]  # alpha, Adam, the VAE and its told pairs, RNGs
    assert (reference / "samples.jsonl").read_text() == (crashed / "samples.jsonl").read_text()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--sampling", "vae:x"], "vae:K"),
        (["--sampling", "vae", "--set", "fpnas.vae={n_vea: 3}"], "n_vea"),
        (["--sampling", "vae", "--set", "fpnas.vae={ranking_ratio: 2}"], "ranking_ratio"),
    ],
)
def test_bad_fpnas_vae_input_exits_2(tmp_path, capsys, extra, message):
    code = main(["fpnas", "--config", "fpnas-tiny", "--out", str(tmp_path / "r"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


# -- torchrun: every rank draws, scores and trains alike ----------------------------------
DDP_VAE = {
    "train": {"epochs": 1},
    "sampler": {
        "name": "vae",
        "options": {"eps_inc": 0.1, "n_vae": 3, "n_s": 5, "n_iters": 10, "score_val_images": 60},
    },
}


def _vae_ddp_worker(rank: int, port: int, out: str, queue) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
    )
    trainer = Trainer(load_config(TINY, DDP_VAE), out, progress=False)
    chosen: list[str] = []
    ask = trainer.sampler.ask

    def recording_ask(n: int = 1) -> list:
        archs = ask(n)
        chosen.extend(a.to_json_str() for a in archs)
        return archs

    trainer.sampler.ask = recording_ask
    trainer.run()
    flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()]).numpy().copy()
    queue.put((rank, flat, chosen, json.dumps(trainer.sampler.state_dict())))
    torch.distributed.destroy_process_group()


def test_two_gloo_ranks_draw_score_and_train_the_vae_alike(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_vae_ddp_worker, args=(r, port, str(tmp_path / "ddp"), queue))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    results = {r: rest for r, *rest in (queue.get(timeout=300) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    (w0, c0, s0), (w1, c1, s1) = results[0], results[1]
    assert (w0 == w1).all() and c0 == c1 and s0 == s1
    state = json.loads(s0)
    assert len(state["told"]) == state["steps"] // 3 > 0 and state["from_vae"] > 0
