"""VAENAS: tokenisation, valid sampling, learning a region, Algorithm 1, bench strategies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from samplenas import UserError, load_space
from samplenas.bench import Evaluator
from samplenas.cli import main
from samplenas.samplers.vae import (
    NB101Tokenizer,
    VAESampler,
    tokenizer_for,
    top_fraction,
    validity_and_diversity,
)
from samplenas.space import Arch


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small LSTMs only contend on the shared host with more threads."""


SPACES = ["tiny", "attentive", "nas-bench-201", "nas-bench-101", "nas-bench-graph"]


def space_or_skip(name: str):
    if name.startswith("nas-bench-graph"):
        pytest.importorskip("nas_bench_graph")
    return load_space(name)


@pytest.mark.parametrize("name", SPACES)
def test_tokenisation_round_trips(name):
    space = space_or_skip(name)
    tok = tokenizer_for(space)
    rng = np.random.default_rng(0)
    for arch in space.sample_many(rng, 60):
        tokens = tok.encode(arch)
        assert len(tokens) == len(tok.sizes)
        assert np.all((tokens >= 0) & (tokens < np.array(tok.sizes)))
        assert tok.decode(tokens) == space.validate(arch)


def test_a_space_without_tokenisation_is_a_user_error():
    class Other:
        name = "other"

    with pytest.raises(UserError, match="no tokenisation for space 'other'"):
        tokenizer_for(Other())


@pytest.mark.parametrize("name", ["nas-bench-101", "nas-bench-graph", "tiny"])
def test_samples_are_always_valid_after_repair(name):
    space = space_or_skip(name)
    sampler = VAESampler(space, seed=1, n_iters=100)  # trained on valid cells: few rejects
    sampler.tell(space.sample_many(np.random.default_rng(1), 100), list(range(100)))
    archs = sampler.ask(300)
    assert len(archs) == 300
    assert all(space.validate(a) == a for a in archs)
    measured = validity_and_diversity(sampler, 1000)
    assert measured["validity"] >= 0.9 and measured["distinct_per_1000"] > 10
    assert 0 < sampler.stats()["vae_validity"] <= 1


def test_nas_bench_101_keeps_the_nine_edges_the_decoder_is_surest_of():
    tok = tokenizer_for(load_space("nas-bench-101"))
    assert isinstance(tok, NB101Tokenizer)
    tokens = np.zeros(len(tok.sizes), dtype=np.int64)
    tokens[:15] = 1  # 15 edges: too many
    probs = np.zeros((len(tok.sizes), 3))
    probs[:21, 1] = np.linspace(0.1, 0.9, 21)  # later edges surer
    fixed = tok.repair(tokens, probs)
    assert fixed[:21].sum() == 9 and fixed[6:15].all() and not fixed[:6].any()
    assert tokens[:15].all()  # the input is not modified
    assert tok.repair(fixed, probs) is fixed  # nothing left to repair


def test_cost_bounds_reject_samples_outside_them():
    space = load_space("tiny")
    costs = [space.cost(a).mflops for a in space.sample_many(np.random.default_rng(0), 200)]
    low, high = np.quantile(costs, [0.3, 0.7])
    sampler = VAESampler(space, seed=0, cost_bounds=(low, high))
    archs = sampler.ask(100)
    assert len(archs) == 100
    assert all(low <= space.cost(a).mflops <= high for a in archs)
    assert sampler.stats()["vae_validity"] < 0.9  # some decodes fell outside and were redrawn


def token_frequencies(tok, archs) -> np.ndarray:
    """Per position, the frequency of each token: [positions, max tokens]."""
    out = np.zeros((len(tok.sizes), max(tok.sizes)))
    for a in archs:
        out[np.arange(len(tok.sizes)), tok.encode(a)] += 1
    return out / len(archs)


def test_a_vae_trained_on_one_region_samples_from_it():
    space = load_space("nas-bench-201")
    tok = tokenizer_for(space)
    rng = np.random.default_rng(0)
    # the region: the three edges into node 3 all 3x3 convs (1 in 125 of the space)
    region = [a for a in space.archs if a["ops"][3:] == ("nor_conv_3x3",) * 3]
    train = [region[i] for i in rng.choice(len(region), 80, replace=False)]
    sampler = VAESampler(space, seed=0, n_iters=300, ranking_ratio=1.0)
    sampler.tell(train, [0.0] * len(train))
    samples = sampler.ask(1000)
    target = token_frequencies(tok, region)
    tv_vae = 0.5 * np.abs(token_frequencies(tok, samples) - target).sum(1).mean()
    tv_uniform = 0.5 * np.abs(token_frequencies(tok, space.sample_many(rng, 1000)) - target)
    tv_uniform = tv_uniform.sum(1).mean()
    assert tv_vae < 0.25 * tv_uniform
    inside = np.mean([a["ops"][3:] == ("nor_conv_3x3",) * 3 for a in samples])
    assert inside > 0.8  # uniform: 0.008


def test_tell_trains_on_the_top_fraction_warm_started(monkeypatch):
    space = load_space("nas-bench-201")
    archs = space.archs[:10]
    scores = [3, 9, 1, 7, 5, 0, 8, 2, 6, 4]
    assert top_fraction(archs, scores, 0.5) == [archs[i] for i in (1, 6, 3, 8, 4)]
    sampler = VAESampler(space, seed=0, ranking_ratio=0.3, n_iters=5)
    seen = []
    fit = sampler.fit
    monkeypatch.setattr(
        sampler, "fit", lambda a, n_iters=None: seen.append(list(a)) or fit(a, n_iters)
    )
    sampler.tell(archs, scores)
    assert seen == [[archs[1], archs[6], archs[3]]]
    trained = {k: v.clone() for k, v in sampler.model.state_dict().items()}
    sampler.fit(archs, n_iters=0)  # no steps: a warm start leaves the weights as they were
    assert all((trained[k] == v).all() for k, v in sampler.model.state_dict().items())
    seen.clear()
    sampler.tell(archs, scores)
    assert any((trained[k] != v).any() for k, v in sampler.model.state_dict().items())
    assert len(seen) == 1 and sampler.stats()["vae_trainings"] == 3


def test_state_is_json_and_resumes_identically():
    space = load_space("nas-bench-201")
    rng = np.random.default_rng(0)
    archs = space.sample_many(rng, 30)
    scores = list(rng.random(30))
    a = VAESampler(space, seed=3, n_iters=10)
    a.tell(archs, scores)
    b = VAESampler(space, seed=99, n_iters=10)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert a.ask(20) == b.ask(20) and a.stats() == b.stats()
    a.tell(archs, scores)
    b.tell(archs, scores)
    assert a.ask(20) == b.ask(20) and a.counts == b.counts


def test_no_validity_is_reported_before_anything_was_decoded(c100):
    from samplenas.search.vae_search import VAESearch

    assert "vae_validity" not in VAESampler(load_space("tiny")).stats()
    search = VAESearch(c100.space, seed=0, candidates=c100.archs, n_init=5)
    search.ask(3)
    assert "vae_validity" not in search.stats() and "vae_fallback_rate" not in search.stats()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="ranking_ratio"):
        VAESampler(load_space("tiny"), ranking_ratio=0)


@pytest.fixture(scope="module")
def c100():
    from samplenas.bench import load_benchmark

    pytest.importorskip("samplenas.space.cells.nasbench201")
    return load_benchmark("nas-bench-201:cifar100")


def test_vae_strategy_warms_up_randomly_then_queries_new_vae_samples(c100):
    from samplenas.search.vae_search import VAESearch

    ev = Evaluator(c100, budget=60, seed=0)
    search = VAESearch(c100.space, seed=0, candidates=c100.archs, n_init=15, retrain_every=20)
    calls = []
    tell = search.vae.tell
    search.vae.tell = lambda a, s: calls.append(len(a)) or tell(a, s)
    while ev.queries < 60:
        archs = search.ask(1)
        search.tell(archs, [ev.query(x) for x in archs])
    assert len(set(ev.history)) == 60  # never re-queried
    assert calls == [15, 35, 55]  # trained on all seen after the warm-up, then every 20
    assert search.from_vae + search.fallbacks == 45 and search.from_vae > 40


def test_vae_re_starts_from_vae_samples(c100):
    from samplenas.search.vae_search import VAERegularizedEvolution

    ev = Evaluator(c100, budget=70, seed=0)
    search = VAERegularizedEvolution(c100.space, seed=0, candidates=c100.archs, n_init=10)
    while ev.queries < 70:
        archs = search.ask(1)
        search.tell(archs, [ev.query(x) for x in archs])
    assert search.init.from_vae == 40  # the population of 50: 10 random, 40 from the VAE
    assert len(search.population) == 50


def test_bench_cli_runs_the_vae_strategies_and_reports_validity(capsys, c100):
    argv = ["bench", "--benchmark", "nas-bench-201:cifar100", "--strategies", "random,vae,vae-re"]
    argv += ["--budget", "45", "--runs", "2", "--workers", "1", "--no-progress"]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["strategies"]) == {"random", "vae", "vae-re"}
    for name in ("vae", "vae-re"):  # 30 random queries, then VAE samples
        c = data["strategies"][name]
        assert len(c["expected_mean"]) == 45 and c["stats"]["vae_validity"] == 1.0
    assert "stats" not in data["strategies"]["random"]
    assert main(argv) == 0
    assert "vae: VAE samples valid 100.0 %" in capsys.readouterr().out
    assert main([*argv, "--objective", "accuracy,params"]) == 2
    assert "searches accuracy alone" in capsys.readouterr().err


def test_arch_type_is_kept():
    space = load_space("tiny")
    assert isinstance(VAESampler(space, seed=0).ask(1)[0], Arch)
