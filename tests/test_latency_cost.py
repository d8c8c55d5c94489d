"""Latency as a cost everywhere FLOPs is: one CostModel for FLOPs, params and a latency
table; the exact DP on latency; latency-conditioned and attentive sampling; training with
a latency-conditioned sampler; search under --max-latency-ms with measured latency."""

from __future__ import annotations

import collections
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from samplenas.cli import main
from samplenas.latency import LatencyTable, TimingSettings, inventory, load_table
from samplenas.latency.cost import LatencyCost
from samplenas.samplers import make_sampler
from samplenas.samplers.flops_exact import ExactBucketSampler
from samplenas.samplers.flops_prior import FlopsPrior
from samplenas.space import load_space
from samplenas.space.cost import FlopsCost, ParamsCost, make_cost

FAST = TimingSettings(warmup=1, repeats=2, rounds=1)


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


@pytest.fixture(scope="module")
def every_idx(tiny) -> np.ndarray:
    """Index rows of all 512 archs of tiny."""
    return np.array(list(itertools.product(*[range(len(g.choices)) for g in tiny.genes])))


def synthetic_table(tiny, correction: bool = True) -> LatencyTable:
    """Random entries (not monotone in any gene, as measurements are not), and a
    correction with a negative offset (the DP must shift it to non-negative bins)."""
    rng = np.random.default_rng(7)
    entries = {b.key(tiny): float(rng.uniform(0.05, 1.0)) for b in inventory(tiny)}
    table = LatencyTable("tiny", (6, 8), FAST, entries, constant_ms=0.3)
    if correction:
        table.correction = {"scale": {"6": 1.1, "8": 0.9}, "offset_ms": {"6": -0.9, "8": 0.2}}
    return table


@pytest.fixture(scope="module")
def table_path(tiny, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lat") / "tiny.json"
    synthetic_table(tiny).save(path)
    return path


def test_flops_params_and_latency_are_one_cost_interface(tiny, every_idx):
    table = synthetic_table(tiny)
    models = [FlopsCost(tiny), ParamsCost(tiny), LatencyCost.of(tiny, table)]
    expected = {
        "mflops": tiny.cost_indices(every_idx)[0],
        "params_m": tiny.cost_indices(every_idx)[1],
        "latency_ms": [table.predict(tiny, tiny.arch_from_indices(r)) for r in every_idx],
    }
    for cost in models:
        values = cost.values(every_idx)
        assert values == pytest.approx(expected[cost.name], rel=1e-12)
        assert cost.chain().total(tiny, every_idx) == pytest.approx(values, rel=1e-12)
        arch = tiny.arch_from_indices(every_idx[100])
        assert cost(arch) == pytest.approx(values[100], rel=1e-12)
        assert cost.bounds() == pytest.approx((values.min(), values.max()), rel=1e-12)
    assert make_cost(tiny, "latency", table).name == "latency_ms"


def test_exact_dp_counts_every_arch_of_every_latency_bucket(tiny, every_idx):
    cost = LatencyCost.of(tiny, synthetic_table(tiny))
    values = cost.values(every_idx)
    lo, hi = cost.bounds()
    step = (hi - lo) / 40
    first = int(np.round(lo / step))
    n = int(np.round(hi / step)) - first + 1
    exact = ExactBucketSampler(tiny, step, first, n, cost=cost)
    assert exact.origin < 0  # the negative offset was shifted out of the bins
    # the DP's count per (resolution, fine cost bin) is the enumeration's, bin for bin
    bins = tiny.chain_sum(exact.stem_c, exact.stage_c, exact.head_c, every_idx)
    counted = np.zeros_like(exact.total)
    np.add.at(counted, (every_idx[:, tiny._g_res], bins), 1)
    assert np.array_equal(exact.total, counted) and counted.sum() == len(every_idx)
    by_bucket = collections.defaultdict(set)
    for row, value in zip(every_idx, values, strict=True):
        by_bucket[int(np.round(value / step)) - first].add(tiny.arch_from_indices(row))
    buckets = np.array([b for b, m in by_bucket.items() for _ in range(30 * len(m))])
    rows, _ = exact.sample(np.random.default_rng(0), buckets)
    drawn = collections.defaultdict(collections.Counter)
    for b, row in zip(buckets, rows, strict=True):
        drawn[int(b)][tiny.arch_from_indices(row)] += 1
    for b, members in by_bucket.items():  # every arch of every bucket, and nothing else
        assert set(drawn[b]) == members
        expected = 30  # uniform within the bucket
        assert all(abs(c - expected) < 5 * expected**0.5 for c in drawn[b].values())


@pytest.mark.parametrize("method", ["exact", "factorized"])
def test_a_latency_conditioned_sample_lands_in_its_bucket(tiny, table_path, method):
    table = load_table(table_path)
    sampler = make_sampler(
        "flops-uniform",
        tiny,
        seed=0,
        latency_table=str(table_path),
        target_ms=2.0,
        method=method,
        prior_samples=20_000,
    )
    prior = sampler.prior
    assert prior.unit == "ms" and prior.min_mflops < 2.0 < prior.max_mflops
    archs = sampler.ask(40)
    buckets = prior.bucket_of([table.predict(tiny, a) for a in archs])
    assert set(buckets.tolist()) == {prior.target_bucket(2.0)}
    free = make_sampler("flops-uniform", tiny, seed=1, latency_table=str(table_path))
    archs = free.ask(40)
    drawn = free.prior.bucket_of([table.predict(tiny, a) for a in archs])
    assert drawn.tolist() == free.last_targets.tolist() and len(set(drawn.tolist())) > 5


def test_latency_options_are_checked(tiny, table_path):
    with pytest.raises(Exception, match="target_ms"):
        make_sampler("flops-prior", tiny, latency_table=str(table_path), target_mflops=0.1)
    with pytest.raises(Exception, match="latency_table"):
        make_sampler("flops-prior", tiny, target_ms=1.0)
    with pytest.raises(Exception, match="outside this space's range .* ms"):
        make_sampler("flops-prior", tiny, latency_table=str(table_path), target_ms=500.0)


def test_cli_sample_at_a_latency_target(tiny, table_path, capsys):
    table = load_table(table_path)
    argv = ["sample", "--space", "tiny", "--latency", str(table_path), "--target-ms", "2.0"]
    assert main([*argv, "-n", "8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["archs"]
    step = make_sampler("flops-prior", tiny, latency_table=str(table_path)).prior.step
    for r in rows:
        assert r["latency_ms"] == pytest.approx(table.predict(tiny, tiny.validate(r["arch"])))
        assert round(r["latency_ms"] / step) == round(2.0 / step)
    assert main(["sample", "--space", "tiny", "--target-ms", "2"]) == 2
    assert "latency_table" in capsys.readouterr().err


class ByWidth:
    """A stand-in accuracy predictor: wider stem, better."""

    def predict(self, archs):
        return [a["width"][0] + 0.01 * a["depth"][0] for a in archs]


def test_bestup_candidates_share_one_latency_bucket(tiny, table_path):
    table = load_table(table_path)
    sampler = make_sampler(
        "bestup-4-acc", tiny, seed=0, predictor=ByWidth(), latency_table=str(table_path)
    )
    picked = sampler.ask(6)
    decision = sampler.last_decision()
    prior = sampler.conditional.prior
    for cands, costs, pick, arch in zip(
        sampler.last_candidates, decision["candidate_latency_ms"], decision["picked"], picked,
        strict=True,
    ):  # fmt: skip
        assert len(set(prior.bucket_of([table.predict(tiny, a) for a in cands]).tolist())) == 1
        assert costs == [round(table.predict(tiny, a), 3) for a in cands]
        assert arch == cands[pick] and pick == int(np.argmax(ByWidth().predict(cands)))


def test_a_latency_prior_is_cached_apart_from_the_flops_prior(tiny, tmp_path):
    cost = LatencyCost.of(tiny, synthetic_table(tiny))
    flops = FlopsPrior.for_space(tiny, m=5000, cache=tmp_path)
    lat = FlopsPrior.for_space(tiny, m=5000, cache=tmp_path, cost=cost)
    again = FlopsPrior.for_space(tiny, m=5000, cache=tmp_path, cost=cost)
    assert len(list(tmp_path.iterdir())) == 2
    assert lat.unit == again.unit == "ms" and flops.unit == "MFLOPs"
    assert (lat.min_mflops, lat.max_mflops) == pytest.approx(cost.bounds())
    assert np.array_equal(lat.prior, again.prior)


@pytest.fixture(scope="module")
def latency_run(tmp_path_factory, table_path) -> Path:
    """tiny trained with a latency-conditioned sampler (the recipe's sampler options)."""
    out = tmp_path_factory.mktemp("latrun") / "tiny"
    argv = ["train", "--config", "tiny", "--out", str(out), "--no-progress", "--epochs", "2"]
    argv += ["--set", "sampler.name=flops-uniform"]
    argv += ["--set", f"sampler.options.latency_table={table_path}"]
    assert main(argv) == 0
    return out


def test_training_conditions_on_latency(latency_run, table_path, tiny):
    table = load_table(table_path)
    sampler = make_sampler("flops-uniform", tiny, latency_table=str(table_path))
    records = [
        json.loads(line) for line in (latency_run / "samples.jsonl").read_text().splitlines()
    ]
    assert records
    for r in records:  # every sampled sub-network has the latency it was drawn for
        drawn = sampler.prior.bucket_of([table.predict(tiny, tiny.validate(a)) for a in r["archs"]])
        assert drawn.tolist() == sampler.prior.bucket_of(r["target_latency_ms"]).tolist()


def search(run: Path, capsys, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    argv = ["search", "--run", str(run), "--population", "10", "--mutations", "5"]
    argv += ["--crossovers", "5", "--iterations", "2", "--no-progress", *extra]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_search_under_max_latency_reports_predicted_and_measured_ms(
    latency_run, table_path, tiny, capsys
):
    table = load_table(table_path)
    lo, hi = LatencyCost.of(tiny, table).bounds()
    budget = lo + 0.5 * (hi - lo)
    code, out, _ = search(
        latency_run, capsys, "--latency", str(table_path), "--max-latency-ms", f"{budget}", "--json"
    )
    assert code == 0
    result = json.loads(out)
    front = result["front"]
    assert front and result["latency"]["measured"] is True
    for m in front:
        arch = tiny.validate(m["arch"])
        assert m["latency_ms"] == pytest.approx(table.predict(tiny, arch))
        assert m["latency_ms"] <= budget and m["measured_ms"] > 0
    costs = [m["latency_ms"] for m in front]
    assert costs == sorted(costs)
    saved = json.loads((latency_run / "search" / "pareto.json").read_text())
    assert [m["measured_ms"] for m in saved["front"]] == [m["measured_ms"] for m in front]
    code, out, _ = search(latency_run, capsys, "--latency", str(table_path))
    assert code == 0 and "table ms" in out and "measured" in out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-latency-ms", "1"], "--latency TABLE.json"),
        (["--latency", "T", "--mflops-range", "0", "1"], "give one of them"),
        (["--latency", "T", "--max-latency-ms", "1", "--latency-range", "0", "1"], "not both"),
        (["--latency", "T", "--latency-range", "900", "1000"], "does not meet the space's range"),
    ],
)
def test_search_latency_mistakes_exit_2(latency_run, table_path, capsys, extra, message):
    extra = [str(table_path) if e == "T" else e for e in extra]
    code, _, err = search(latency_run, capsys, *extra)
    assert code == 2 and message in err


def test_fpnas_hinge_takes_the_latency_table_as_it_takes_flops(tiny, table_path):
    from samplenas.errors import UserError
    from samplenas.samplers.probabilistic import ProbabilisticSampler
    from samplenas.train.config import load_config
    from samplenas.train.fpnas import recipe_costs

    cost = make_cost(tiny, "latency", str(table_path))
    low, high = cost.bounds()
    target = (low + high) / 2
    cfg = load_config(
        "fpnas-tiny",
        {"fpnas": {"latency_table": str(table_path), "target_latency_ms": target}},
    )
    costs = recipe_costs(tiny, cfg)
    fn, tar = costs["latency_ms"]
    arch = tiny.largest()
    assert tar == target and fn(arch) == pytest.approx(cost(arch))
    # Eqn. 6's hinge on latency alone (the FLOPs target dropped): 0 under, excess above
    only_latency = {"latency_ms": costs["latency_ms"]}
    sampler = ProbabilisticSampler(tiny, seed=0, costs=only_latency)
    archs = tiny.sample_many(np.random.default_rng(0), 64)
    expected = [max(0.0, cost(a) / target - 1) for a in archs]
    assert any(h > 0 for h in expected) and any(h == 0 for h in expected)
    assert [sampler.hinge(a) for a in archs] == pytest.approx(expected)
    with pytest.raises(UserError, match="outside the range"):
        recipe_costs(
            tiny,
            load_config(
                "fpnas-tiny",
                {"fpnas": {"latency_table": str(table_path), "target_latency_ms": high * 3}},
            ),
        )
    with pytest.raises(UserError, match="latency_table"):
        load_config("fpnas-tiny", {"fpnas": {"target_latency_ms": target}})
