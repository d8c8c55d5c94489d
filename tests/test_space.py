"""Arch values, search-space operations and the shipped spaces' declared properties."""

from __future__ import annotations

import json

import numpy as np
import pytest

from samplenas import Arch, UserError, load_space
from samplenas.space import list_spaces


@pytest.fixture(scope="module")
def attentive():
    return load_space("attentive")


def test_arch_is_an_immutable_hashable_json_value():
    a = Arch({"resolution": 8, "width": [4, 8]})
    b = Arch(json.loads(json.dumps(a.to_json())))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.to_json() == {"resolution": 8, "width": [4, 8]}
    assert a["width"] == (4, 8)
    with pytest.raises(AttributeError):
        a.foo = 1  # type: ignore[attr-defined]
    assert a.replace(resolution=6) != a


def test_shipped_spaces_are_listed():
    assert {"attentive", "attentive-fashion", "tiny"} <= set(list_spaces())


def test_attentive_space_matches_the_paper(attentive):
    assert attentive.size() == 440_301_256_704  # 4.40e11
    assert round(attentive.cost(attentive.smallest()).mflops) == 203
    assert round(attentive.cost(attentive.largest()).mflops) == 1939
    assert attentive.smallest().to_json() == {
        "resolution": 192,
        "width": [16, 16, 24, 32, 64, 112, 192, 216, 1792],
        "depth": [1, 3, 3, 3, 3, 3, 1],
        "kernel_size": [3] * 7,
        "expand_ratio": [1, 4, 4, 4, 4, 6, 6],
    }


def test_fashion_space_meets_its_design_limits():
    space = load_space("attentive-fashion")
    assert space.size() >= 10**8
    lo, hi = space.cost(space.smallest()).mflops, space.cost(space.largest()).mflops
    assert lo <= hi / 8
    assert space.config.in_channels == 1 and space.config.num_classes == 10
    se = [i + 1 for i, s in enumerate(space.config.stages) if s.se]
    assert se == [3, 5, 6, 7]


def test_encode_is_the_attentivenas_31_vector(attentive):
    arch = attentive.sample(np.random.default_rng(0))
    vec = attentive.encode(arch)
    j = arch.to_json()
    expected = [j["resolution"], *j["width"], *j["depth"], *j["kernel_size"], *j["expand_ratio"]]
    assert vec.tolist() == expected and len(vec) == 31
    onehot = attentive.encode_onehot(arch)
    assert onehot.sum() == 31 and set(np.unique(onehot)) <= {0.0, 1.0}
    feats, adj = attentive.to_graph(arch)
    assert feats.shape[0] == adj.shape[0] == 10  # input, stem, 7 stages, head


@pytest.mark.parametrize(
    "change, message",
    [
        ({"depth": [1, 3, 3]}, "field 'depth' must be a list of 7 integers, got 3 values"),
        (
            {"resolution": 200},
            "resolution=200 (input) is not one of the choices [192, 224, 256, 288]",
        ),
        (
            {"kernel_size": [3, 3, 7, 3, 3, 3, 3]},
            "kernel_size[2]=7 (mb3) is not one of the choices",
        ),
        ({"depth": [1, 3, 3, 3, 3, 3, "2"]}, "depth[6] must be an integer"),
    ],
)
def test_validation_names_the_problem(attentive, change, message):
    bad = attentive.smallest().to_json() | change
    with pytest.raises(UserError, match=None) as err:
        attentive.validate(bad)
    assert message in str(err.value)
    assert not attentive.contains(bad)


def test_validation_of_missing_and_unknown_fields(attentive):
    good = attentive.smallest().to_json()
    with pytest.raises(UserError, match="lacks field"):
        attentive.validate({k: v for k, v in good.items() if k != "depth"})
    with pytest.raises(UserError, match="unknown field"):
        attentive.validate(good | {"foo": 1})
    assert attentive.contains(good) and good in attentive


def test_uniform_sampling_covers_every_choice(attentive):
    rng = np.random.default_rng(1)
    idx = attentive.sample_indices(rng, 20_000)
    for j, n in enumerate(attentive.n_choices):
        counts = np.bincount(idx[:, j], minlength=n)
        assert counts.min() > 0.8 * 20_000 / n


def test_mutation_changes_genes_at_the_requested_rate(attentive):
    rng = np.random.default_rng(2)
    base = attentive.sample(rng)
    assert attentive.mutate(base, 0.0, rng) == base
    full = attentive.mutate(base, 1.0, rng)
    changed = attentive.indices_of(full) != attentive.indices_of(base)
    assert changed[attentive.mutable].all() and not changed[attentive.n_choices == 1].any()
    rows = np.repeat(attentive.indices_of(base)[None], 5000, axis=0)
    mutated = attentive.mutate_indices(rows, 0.2, rng)
    rate = (mutated != rows)[:, attentive.mutable].mean()
    assert abs(rate - 0.2) < 0.01
    for _ in range(50):
        assert attentive.contains(attentive.mutate(base, 0.5, rng))


def test_crossover_takes_each_gene_from_a_parent(attentive):
    rng = np.random.default_rng(3)
    a, b = attentive.smallest(), attentive.largest()
    child = attentive.crossover(a, b, rng)
    ia, ib, ic = (attentive.indices_of(x) for x in (a, b, child))
    assert ((ic == ia) | (ic == ib)).all()
    assert attentive.contains(child)
    from_b = np.mean(
        [(attentive.indices_of(attentive.crossover(a, b, rng)) == ib).mean() for _ in range(200)]
    )
    assert 0.4 < from_b < 0.6


def test_batched_cost_equals_single_cost(attentive):
    rng = np.random.default_rng(4)
    idx = attentive.sample_indices(rng, 50)
    mflops, params = attentive.cost_indices(idx)
    for row, m, p in zip(idx, mflops, params, strict=True):
        c = attentive.cost(attentive.arch_from_indices(row))
        assert c.mflops == pytest.approx(m) and c.params_m == pytest.approx(p)


def test_user_yaml_space(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "in_channels: 1\nnum_classes: 3\nresolution: [8]\n"
        "stem: {width: 4, stride: 1}\n"
        "stages:\n  - {width: [8], depth: [1, 2], kernel_size: 3, expand_ratio: [1, 2]}\n"
        "head: {width: 16}\n"
    )
    space = load_space(path)
    assert space.name == "mine" and space.size() == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text() + "colour: red\n")
    with pytest.raises(UserError, match=r"unknown key\(s\) \['colour'\]"):
        load_space(bad)
    with pytest.raises(UserError, match="unknown space 'nope'"):
        load_space("nope")
