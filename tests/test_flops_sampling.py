"""FLOPs-conditioned sampling: bucket hits, trials, coverage of rare buckets, exact uniformity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import chisquare

from samplenas import UserError, load_space
from samplenas.samplers import FlopsConditionedSampler, FlopsPrior, make_sampler
from samplenas.samplers.flops_exact import ExactBucketSampler


@pytest.fixture(scope="module")
def attentive_prior():
    space = load_space("attentive")
    return space, FlopsPrior.build(space, m=200_000, seed=0)


@pytest.mark.parametrize("method", ["exact", "factorized"])
def test_conditional_samples_land_in_the_requested_bucket(attentive_prior, method):
    space, prior = attentive_prior
    sampler = FlopsConditionedSampler(space, seed=1, prior=prior, method=method)
    archs = sampler.ask(300)
    mflops = np.array([space.mflops(a) for a in archs])
    assert (prior.bucket_of(mflops) == sampler.last_targets).all()
    # targets follow the prior: the mean FLOPs is the prior's mean
    prior_mean = float((prior.bucket_mflops(np.arange(prior.n_buckets)) * prior.prior).sum())
    assert abs(mflops.mean() - prior_mean) < 40
    limit = 1.5 if method == "exact" else 30.0
    assert sampler.mean_trials() < limit


@pytest.mark.parametrize("method", ["exact", "factorized"])
def test_fixed_targets_including_the_rarest_buckets(attentive_prior, method):
    space, prior = attentive_prior
    for target in (203.0, 600.0, 1939.0):
        sampler = FlopsConditionedSampler(
            space, seed=2, prior=prior, method=method, target_mflops=target
        )
        for arch in sampler.ask(5):
            assert abs(space.mflops(arch) - target) <= prior.step / 2 + 1e-9 or prior.bucket_of(
                space.mflops(arch)
            ) == prior.bucket_of(target)


def test_uniform_sampling_never_reaches_the_smallest_bucket_but_the_tables_do(attentive_prior):
    space, prior = attentive_prior
    rng = np.random.default_rng(0)
    mflops, _ = space.cost_indices(space.sample_indices(rng, 200_000))
    assert (prior.bucket_of(mflops) == 0).sum() == 0
    assert prior.tables[0].sum() > 0 and prior.prior[0] > 0


def test_target_outside_the_range_is_a_user_error(attentive_prior):
    space, prior = attentive_prior
    with pytest.raises(UserError, match="outside this space's range"):
        FlopsConditionedSampler(space, prior=prior, target_mflops=5000)
    with pytest.raises(UserError, match="outside"):
        FlopsConditionedSampler(space, prior=prior, target_mflops=100)


def enumerate_tiny():
    space = load_space("tiny")
    rows = np.array(list(itertools.product(*[range(n) for n in space.n_choices])))
    mflops, _ = space.cost_indices(rows)
    return space, rows, mflops


def test_dynamic_programming_counts_match_enumeration():
    space, rows, mflops = enumerate_tiny()
    prior = FlopsPrior.build(space, m=50_000, seed=0)
    exact = ExactBucketSampler(space, prior.step, prior.first_bucket, prior.n_buckets)
    assert exact.total.sum() == len(rows) == space.size()
    counts = np.bincount(prior.bucket_of(mflops), minlength=prior.n_buckets)
    # bucket counts by rounded cost: only archs within a few fine bins of an edge may move
    assert np.abs(exact.bucket_counts() - counts).sum() <= 0.02 * len(rows)
    # the importance-sampled prior agrees with the true FLOPs distribution
    assert np.abs(prior.prior - counts / counts.sum()).max() < 0.02


def test_exact_method_is_uniform_within_a_bucket():
    space, rows, mflops = enumerate_tiny()
    prior = FlopsPrior.build(space, m=50_000, seed=0)
    buckets = prior.bucket_of(mflops)
    target = int(np.bincount(buckets).argmax())
    members = {tuple(r) for r in rows[buckets == target]}
    assert len(members) > 10
    exact = ExactBucketSampler(space, prior.step, prior.first_bucket, prior.n_buckets)
    idx, _ = exact.sample(np.random.default_rng(5), np.full(20 * len(members), target))
    seen = [tuple(r) for r in idx]
    assert set(seen) == members
    freq = np.array([seen.count(m) for m in sorted(members)])
    assert chisquare(freq).pvalue > 1e-3


def test_tables_are_cached_without_pickles(tmp_path):
    space = load_space("tiny")
    first = FlopsPrior.for_space(space, m=20_000, cache=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    np.load(files[0], allow_pickle=False).close()  # readable without unpickling
    again = FlopsPrior.for_space(space, m=20_000, cache=tmp_path)
    assert np.array_equal(first.tables, again.tables) and np.array_equal(first.prior, again.prior)


@pytest.fixture(scope="module")
def tiny_enumerated():
    """``tiny``'s 512 architectures, their FLOPs buckets and a prior built as users get it."""
    space, rows, mflops = enumerate_tiny()
    prior = FlopsPrior.build(space, m=200_000, seed=0)
    return space, rows, prior.bucket_of(mflops), prior


def draw_rows(space, name: str, prior: FlopsPrior, n: int) -> np.ndarray:
    """Row numbers (in ``enumerate_tiny``'s order) of n archs drawn by sampler ``name``."""
    idx = np.array(
        [space.indices_of(a) for a in make_sampler(name, space, seed=3, prior=prior).ask(n)]
    )
    return np.ravel_multi_index(idx.T, tuple(space.n_choices))


def test_flops_prior_is_uniform_over_architectures(tiny_enumerated):
    space, rows, _, prior = tiny_enumerated
    drawn = draw_rows(space, "flops-prior", prior, 40 * len(rows))
    freq = np.bincount(drawn, minlength=len(rows))
    assert (freq > 0).all()  # every one of the 512 architectures, the smallest included
    assert chisquare(freq).pvalue > 1e-3


def test_flops_uniform_is_uniform_over_buckets_not_the_prior(tiny_enumerated):
    space, rows, buckets, prior = tiny_enumerated
    reachable = np.flatnonzero(np.bincount(buckets, minlength=prior.n_buckets))
    drawn = buckets[draw_rows(space, "flops-uniform", prior, 60 * len(reachable))]
    assert set(drawn.tolist()) == set(reachable.tolist())  # never an empty bucket
    freq = np.bincount(drawn, minlength=prior.n_buckets)[reachable]
    assert chisquare(freq).pvalue > 1e-3
    masses = prior.prior[reachable] / prior.prior[reachable].sum()
    assert chisquare(freq, masses * freq.sum()).pvalue < 1e-6
    # the rare extremes: the smallest architecture, alone in its bucket, is drawn about
    # once per reachable bucket instead of once per 512 draws
    smallest = int(np.ravel_multi_index(space.indices_of(space.smallest()), space.n_choices))
    assert (drawn == buckets[smallest]).sum() > 30


@pytest.mark.parametrize("name", ["flops-prior", "flops-uniform"])
def test_sampler_state_round_trip_reproduces_the_stream(attentive_prior, name):
    space, prior = attentive_prior
    a = make_sampler(name, space, seed=7, prior=prior)
    a.ask(3)
    state = a.state_dict()
    expected = a.ask(4)
    b = make_sampler(name, space, seed=99, prior=prior)
    b.load_state_dict(state)
    assert b.ask(4) == expected


def test_checkpoint_of_the_old_flops_uniform_is_not_resumed_as_the_new_one(attentive_prior):
    """Before the split, 'flops-uniform' drew τ from the prior and saved no ``targets``."""
    space, prior = attentive_prior
    state = make_sampler("flops-prior", space, seed=7, prior=prior).state_dict()
    del state["targets"]
    make_sampler("flops-prior", space, prior=prior).load_state_dict(state)
    with pytest.raises(UserError, match="drew FLOPs targets from the prior"):
        make_sampler("flops-uniform", space, prior=prior).load_state_dict(state)


def test_flops_sampler_options_are_checked(attentive_prior):
    space, prior = attentive_prior
    with pytest.raises(UserError, match="unknown option 'targets' for sampler 'flops-uniform'"):
        make_sampler("flops-uniform", space, prior=prior, targets="prior")
    with pytest.raises(UserError, match="targets must be one of"):
        FlopsConditionedSampler(space, prior=prior, targets="even")


def test_uniform_sampler_is_seeded():
    space = load_space("attentive")
    a = make_sampler("uniform", space, seed=3).ask(5)
    assert a == make_sampler("uniform", space, seed=3).ask(5)
    assert a != make_sampler("uniform", space, seed=4).ask(5)
    with pytest.raises(UserError, match="unknown sampler"):
        make_sampler("nope", space)
