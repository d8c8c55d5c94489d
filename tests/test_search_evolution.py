"""Evolutionary search on a synthetic fitness, the archive, Pareto utilities."""

from __future__ import annotations

import json

import numpy as np
import pytest

from samplenas import UserError, load_space
from samplenas.search import Archive, EvolutionSampler, best_per_bucket, pareto_front


def synthetic_fitness(space, arch) -> float:
    """Rewards a hidden 'good' choice per gene; a little extra for FLOPs."""
    idx = space.indices_of(arch)
    target = (np.arange(len(idx)) * 7) % space.n_choices
    return float(-(idx != target).sum() + 0.02 * space.mflops(arch))


def run_evolution(space, sampler, generations=None):
    fronts = []
    while not sampler.done():
        archs = sampler.ask()
        if not archs:
            break
        sampler.tell(archs, [synthetic_fitness(space, a) for a in archs])
        fit = np.array(list(sampler.fitness.values()))
        fronts.append(fit.max())
    return fronts


def test_evolution_improves_the_front_and_respects_flops_bounds():
    space = load_space("attentive-fashion")
    sampler = EvolutionSampler(
        space,
        seed=0,
        population=64,
        mutations=32,
        crossovers=32,
        iterations=8,
        mflops_range=(8.0, 20.0),
    )
    first = sampler.ask()
    assert len(first) == 64 and len(set(first)) == 64
    sampler.tell(first, [synthetic_fitness(space, a) for a in first])
    gen0 = {a: sampler.fitness[a] for a in first}
    best0 = max(gen0.values())
    run_evolution(space, sampler)
    assert sampler.done() and sampler.ask() == []
    # 64 + 8 * 64 evaluations, all distinct and inside the bounds
    assert len(sampler.fitness) == 64 + 8 * 64
    assert all(8.0 <= space.mflops(a) <= 20.0 for a in sampler.fitness)
    assert max(sampler.fitness.values()) > best0 + 2

    # the per-bucket front improved in every bucket that generation 0 covered
    def per_bucket(fit):
        archs = list(fit)
        b = [int(sampler.mflops[a] // sampler.step) for a in archs]
        return {k: fit[archs[i]] for k, i in best_per_bucket(b, [fit[a] for a in archs]).items()}

    before, after = per_bucket(gen0), per_bucket(sampler.fitness)
    # every bucket gained at least one more right gene (measured: 25 of 25 buckets, +2 to +16)
    assert all(after[k] >= v + 1 for k, v in before.items())
    assert np.mean([after[k] - v for k, v in before.items()]) > 1


def test_evolution_state_round_trip():
    space = load_space("tiny")
    a = EvolutionSampler(space, seed=1, population=16, mutations=8, crossovers=8, iterations=3)
    archs = a.ask()
    a.tell(archs, [synthetic_fitness(space, x) for x in archs])
    state = json.loads(json.dumps(a.state_dict()))
    b = EvolutionSampler(space, seed=99, population=16, mutations=8, crossovers=8, iterations=3)
    b.load_state_dict(state)
    assert a.ask() == b.ask()


def test_evolution_rejects_bounds_outside_the_space():
    with pytest.raises(UserError, match="does not meet the space's range"):
        EvolutionSampler(load_space("attentive"), mflops_range=(5000, 6000))
    with pytest.raises(UserError, match="the lower bound comes first"):
        EvolutionSampler(load_space("attentive"), mflops_range=(900, 300))


def test_archive_survives_a_torn_write(tmp_path):
    space = load_space("tiny")
    path = tmp_path / "archive.jsonl"
    archive = Archive(path)
    archs = space.sample_many(np.random.default_rng(0), 5)
    for i, a in enumerate(archs):
        archive.add(a, {"top1": float(i)})
    with open(path, "a") as f:
        f.write('{"arch": {"resolution": 8, "wid')  # the process died mid-line
    reopened = Archive(path)
    assert len(reopened) == len(set(archs))
    assert reopened.get(archs[-1])["top1"] == 4.0
    reopened.add(archs[0], {"top1": 9.0})
    assert Archive(path).get(archs[0])["top1"] == 9.0


def test_pareto_front_on_a_hand_made_list():
    cost = [1, 2, 2, 3, 4, 5]
    score = [0.5, 0.4, 0.6, 0.55, 0.7, 0.65]
    assert pareto_front(cost, score).tolist() == [0, 2, 4]
    assert best_per_bucket([0, 0, 1, 1], [0.1, 0.3, 0.2, 0.1]) == {0: 1, 1: 2}


def test_the_first_generation_holds_both_extremes_within_the_bounds():
    space = load_space("tiny")
    first = EvolutionSampler(space, seed=0, population=6, iterations=0).ask()
    assert first[:2] == [space.smallest(), space.largest()] and len(set(first)) == 6
    lo = space.cost(space.smallest()).mflops
    hi = space.cost(space.largest()).mflops
    above = EvolutionSampler(space, population=6, iterations=0, mflops_range=(lo + 0.01, hi))
    generation = above.ask()
    assert space.smallest() not in generation and generation[0] == space.largest()
