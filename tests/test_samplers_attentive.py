"""BestUp / WorstUp pick the best / worst-scored candidate, inside the drawn FLOPs bucket."""

from __future__ import annotations

import numpy as np
import pytest

from samplenas import UserError, load_space
from samplenas.samplers import make_sampler
from samplenas.samplers.attentive import AttentiveSampler, ParetoPoolSampler


@pytest.fixture(scope="module")
def space():
    return load_space("attentive-fashion")


def depth_score(space):
    """A scorer that prefers deeper networks (any deterministic function works)."""
    return lambda archs: np.array([sum(a["depth"]) + 0.01 * a["resolution"] for a in archs])


@pytest.mark.parametrize("mode", ["best", "worst"])
def test_attentive_loss_sampler_picks_the_extreme_candidate(space, mode):
    sampler = make_sampler(f"{mode}up-4-loss", space, seed=0)
    assert isinstance(sampler, AttentiveSampler) and sampler.k == 4
    sampler.set_scorer(depth_score(space))
    chosen = sampler.ask(20)
    prior = sampler.conditional.prior
    for arch, cands, scores in zip(
        chosen, sampler.last_candidates, sampler.last_scores, strict=True
    ):
        assert len(cands) == 4
        pick = scores.max() if mode == "best" else scores.min()
        assert depth_score(space)([arch])[0] == pick
        buckets = prior.bucket_of([space.mflops(c) for c in cands])
        assert len(set(buckets.tolist())) == 1  # all candidates share the drawn bucket
        assert prior.bucket_of(space.mflops(arch)) == buckets[0]
    assert sampler.stats()["extra_forward_passes"] == 80


def test_best_and_worst_differ_on_average(space):
    best = make_sampler("bestup-4-loss", space, seed=1)
    worst = make_sampler("worstup-4-loss", space, seed=1)
    for s in (best, worst):
        s.set_scorer(depth_score(space))
    b = np.mean([sum(a["depth"]) for a in best.ask(100)])
    w = np.mean([sum(a["depth"]) for a in worst.ask(100)])
    assert b > w + 1


class DepthPredictor:
    def predict(self, archs):
        return np.array([float(sum(a["depth"])) for a in archs])


def test_acc_estimator_uses_the_predictor(space):
    sampler = make_sampler("bestup-5-acc", space, seed=2, predictor=DepthPredictor())
    archs = sampler.ask(10)
    for arch, scores in zip(archs, sampler.last_scores, strict=True):
        assert sum(arch["depth"]) == scores.max()
    assert sampler.stats()["extra_forward_passes"] == 0
    with pytest.raises(UserError, match="needs an accuracy predictor"):
        make_sampler("bestup-5-acc", space)


def test_pareto_pool_sampler_draws_predicted_best_per_bucket(space):
    best = ParetoPoolSampler(
        space, seed=0, mode="best", predictor=DepthPredictor(), pool_size=20_000, per_bucket=3
    )
    worst = make_sampler(
        "worstup-1M-acc", space, seed=0, predictor=DepthPredictor(), pool_size=20_000, per_bucket=3
    )
    b = best.ask(200)
    w = worst.ask(200)
    assert all(space.contains(a) for a in b + w)
    assert np.mean([sum(a["depth"]) for a in b]) > np.mean([sum(a["depth"]) for a in w]) + 3
    assert all(len(m) <= 3 for m in best.pool.values())


def test_unknown_names_and_bad_options():
    space = load_space("tiny")
    with pytest.raises(UserError, match="unknown sampler 'bestup-x-loss'"):
        make_sampler("bestup-x-loss", space)
    with pytest.raises(UserError, match="k >= 1"):
        make_sampler("bestup-0-loss", space)


def test_unknown_sampler_options_name_the_option_and_the_known_ones():
    space = load_space("tiny")
    with pytest.raises(UserError, match=r"unknown option 'k' for sampler 'uniform'.*: none"):
        make_sampler("uniform", space, k=5)
    with pytest.raises(UserError, match=r"unknown option 'k' for .*'bestup-3-loss'.*loss, method"):
        make_sampler("bestup-3-loss", space, k=5)
    with pytest.raises(UserError, match="unknown option 'loss' for sampler 'bestup-3-acc'"):
        make_sampler("bestup-3-acc", space, predictor=DepthPredictor(), loss="ce")
    with pytest.raises(UserError, match="'loss' must be one of"):
        make_sampler("bestup-3-loss", space, loss="mse")
    with pytest.raises(UserError, match="targets must be one of"):
        make_sampler("worstup-3-loss", space, targets="middle")


def test_attentive_targets_uniform_spreads_slots_over_the_buckets():
    """``targets: uniform`` draws each slot's bucket uniformly, the default from the prior."""
    from scipy.stats import chisquare

    space = load_space("tiny")
    slots = 3000
    found = {}
    for targets in ("prior", "uniform"):
        sampler = make_sampler("bestup-2-loss", space, seed=0, targets=targets)
        sampler.set_scorer(depth_score(space))
        prior = sampler.conditional.prior
        buckets = prior.bucket_of([space.mflops(a) for a in sampler.ask(slots)])
        reachable = np.flatnonzero(prior.prior)
        found[targets] = np.bincount(buckets, minlength=prior.n_buckets)[reachable]
        masses = prior.prior[reachable]
    assert chisquare(found["uniform"]).pvalue > 1e-3
    assert chisquare(found["prior"], masses * slots).pvalue > 1e-3
    assert chisquare(found["prior"]).pvalue < 1e-6
    pool = make_sampler(
        "bestup-1M-acc", space, predictor=DepthPredictor(), pool_size=5000, targets="uniform"
    )
    assert np.allclose(pool.weights, 1 / len(pool.buckets))
