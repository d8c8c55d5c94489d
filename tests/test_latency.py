"""Latency tables: the block inventory, prediction = sum of entries + constant, resumable
builds that refuse other settings, the check against end-to-end timing, and the CLI."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from samplenas.cli import main
from samplenas.errors import UserError
from samplenas.latency import (
    LatencyTable,
    TimingSettings,
    arch_blocks,
    build_block,
    build_table,
    inventory,
    load_table,
    timing,
)
from samplenas.latency.check import check_table, fit_correction
from samplenas.latency.table import calibration_archs
from samplenas.space import Arch, load_space
from samplenas.supernet.static import build_model

FAST = ["--resolution", "6", "--warmup", "1", "--repeats", "2", "--no-progress"]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


def all_archs(space):
    """Every arch of the space (tiny holds 512)."""
    ranges = [range(len(g.choices)) for g in space.genes]
    return [space.arch_from_indices(idx) for idx in itertools.product(*ranges)]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class FakeTimer:
    """Stands in for time_module: deterministic, counts its calls, a new value each call
    (so a kept entry is told apart from a re-measured one)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, module, shape, settings) -> float:
        self.calls += 1
        return float(self.calls)


@pytest.fixture
def fake_timer(monkeypatch) -> FakeTimer:
    fake = FakeTimer()
    monkeypatch.setattr(timing, "time_module", fake)
    return fake


def test_inventory_holds_every_block_of_every_arch_exactly_once(tiny):
    for resolutions in [(6,), None]:
        blocks = inventory(tiny, resolutions)
        keys = [b.key(tiny) for b in blocks]
        assert len(keys) == len(set(keys)), "a configuration is listed twice"
        archs = [a for a in all_archs(tiny) if resolutions is None or a["resolution"] == 6]
        used = {b.key(tiny) for a in archs for b in arch_blocks(tiny, a)}
        assert set(keys) == used


def test_inventory_equals_union_over_random_archs_of_a_larger_space():
    space = load_space("attentive-fashion")
    keys = {b.key(space) for b in inventory(space, (20,))}
    rng = np.random.default_rng(0)
    used = set()
    for _ in range(3000):
        arch = space.sample(rng).replace(resolution=20)
        used |= {b.key(space) for b in arch_blocks(space, arch)}
    assert used <= keys
    assert len(used) >= 0.9 * len(keys)  # random draws reach nearly all of them


def test_blocks_are_the_static_model_cut_into_pieces(tiny):
    """Blocks built from the inventory hold exactly the static model's parameters, and
    chained in order compute the static model's logits (given the same weights)."""
    rng = np.random.default_rng(1)
    for arch in tiny.sample_many(rng, 5):
        model = build_model(tiny, arch).eval()
        pieces = [build_block(tiny, b) for b in arch_blocks(tiny, arch)]
        chain = torch.nn.Sequential(*pieces)
        whole = list(model.parameters()) + list(model.buffers())
        cut = list(chain.parameters()) + list(chain.buffers())
        assert [t.shape for t in whole] == [t.shape for t in cut]
        chain.load_state_dict(
            dict(zip(chain.state_dict(), model.state_dict().values(), strict=True))
        )
        r = arch["resolution"]
        x = torch.randn(2, 1, r, r)
        with torch.no_grad():
            assert torch.allclose(chain(x), model(x), atol=1e-5)


def test_predict_is_the_sum_of_the_archs_entries_plus_the_constant(tiny):
    settings = TimingSettings(warmup=1, repeats=1)
    keys = [b.key(tiny) for b in inventory(tiny)]
    entries = {k: float(2**i) for i, k in enumerate(keys)}  # sums identify the blocks
    table = LatencyTable("tiny", (6, 8), settings, entries, constant_ms=0.5)
    for arch in all_archs(tiny)[::37]:
        expected = sum(entries[b.key(tiny)] for b in arch_blocks(tiny, arch)) + 0.5
        assert table.predict(tiny, arch) == expected


def test_build_measures_each_block_once_and_resume_keeps_what_was_measured(
    tiny, tmp_path, fake_timer
):
    settings = TimingSettings(warmup=1, repeats=1)
    out = tmp_path / "t.json"
    table = build_table(tiny, settings, out, (6,), calibration=3, progress=False)
    n_blocks = len(inventory(tiny, (6,)))
    assert fake_timer.calls == n_blocks + 3  # every block, then three whole networks
    assert set(table.entries) == {b.key(tiny) for b in inventory(tiny, (6,))}
    on_disk = json.loads(out.read_text())
    assert on_disk["entries"] == table.entries and on_disk["constant_ms"] == table.constant_ms
    assert on_disk["settings"]["threads"] == 1 and on_disk["settings"]["space"] == "tiny"

    fake_timer.calls = 0
    build_table(tiny, settings, out, (6,), calibration=3, progress=False)
    assert fake_timer.calls == 0  # finished: nothing measured again

    dropped = sorted(on_disk["entries"])[:5]  # as if interrupted before these
    partial = dict(
        on_disk, entries={k: v for k, v in on_disk["entries"].items() if k not in dropped}
    )
    partial["constant_ms"] = None
    out.write_text(json.dumps(partial))
    fake_timer.calls = 1000
    resumed = build_table(tiny, settings, out, (6,), calibration=3, progress=False)
    assert fake_timer.calls == 1000 + 5 + 3
    for key, ms in on_disk["entries"].items():
        assert (resumed.entries[key] > 1000) == (key in dropped)
        if key not in dropped:
            assert resumed.entries[key] == ms


def test_constant_is_the_median_residual_of_the_calibration_nets(tiny, tmp_path, fake_timer):
    table = build_table(
        tiny, TimingSettings(warmup=1, repeats=1), tmp_path / "t.json", (6,), 3, False
    )
    nets = calibration_archs(tiny, (6,), 3)
    assert len(set(nets)) == 3 and nets[0] == tiny.smallest().replace(resolution=6)
    n = len(table.entries)
    residuals = [n + 1 + i - table.blocks_ms(tiny, a) for i, a in enumerate(nets)]
    assert table.constant_residuals_ms == residuals
    assert table.constant_ms == sorted(residuals)[1]


def test_cli_build_records_settings_and_refuses_a_table_of_other_settings(capsys, tmp_path):
    out = tmp_path / "t.json"
    code, stdout, _ = run(
        capsys, "latency", "build", "--space", "tiny", *FAST, "--out", str(out), "--json"
    )
    assert code == 0
    summary = json.loads(stdout)
    table = load_table(out)
    assert summary["entries"] == len(table.entries) == len(inventory(load_space("tiny"), (6,)))
    assert all(ms > 0 for ms in table.entries.values())
    s = json.loads(out.read_text())["settings"]
    assert (s["device"], s["threads"], s["batch"], s["dtype"]) == ("cpu", 1, 1, "float32")
    assert s["memory_format"] == "channels-last" and s["torch"] == torch.__version__
    assert s["hardware"] and s["resolutions"] == [6]
    before = out.read_text()
    for flag, value, name in [("--threads", "2", "threads"), ("--format", "nchw", "memory_format")]:
        code, _, err = run(
            capsys, "latency", "build", "--space", "tiny", *FAST, flag, value, "--out", str(out)
        )
        assert code == 2 and name in err and str(out) in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == before  # the refused build left the table alone


def test_cli_check_json_reports_table_and_flops_figures(capsys, tmp_path):
    out = tmp_path / "t.json"
    assert run(capsys, "latency", "build", "--space", "tiny", *FAST, "--out", str(out))[0] == 0
    code, stdout, _ = run(
        capsys,
        "latency",
        "check",
        "--space",
        "tiny",
        "--table",
        str(out),
        "--n",
        "5",
        "--no-progress",
        "--json",
    )
    assert code == 0
    report = json.loads(stdout)
    assert report["n"] == 5 and len(report["networks"]) == 5
    assert -1 <= report["kendall_tau"] <= 1 and -1 <= report["flops_tau"] <= 1
    assert report["mape"] >= 0 and report["corrected"] is None  # no correction fitted
    assert len(report["worst"]) == 3
    errors = [w["error_pct"] for w in report["worst"]]
    assert errors == sorted(errors, reverse=True)
    assert errors[0] == max(n["error_pct"] for n in report["networks"])
    assert all(n["arch"]["resolution"] == 6 and n["measured_ms"] > 0 for n in report["networks"])


def test_the_correction_is_fitted_per_resolution_and_checked_on_other_networks(
    tiny, tmp_path, monkeypatch
):
    keys = [b.key(tiny) for b in inventory(tiny)]
    rng = np.random.default_rng(0)
    table = LatencyTable(
        "tiny", (6, 8), TimingSettings(), {k: rng.uniform(0.1, 1) for k in keys}, 0.2
    )
    truth = {6: 0.8, 8: 1.3}  # whole networks miss the sum by a factor per resolution

    preempted = iter([5.0, 5.0])  # the first network of each resolution: an outlier

    def timed(space, arch, settings):
        slow = next(preempted, 1.0)
        return slow * truth[int(arch["resolution"])] * (table.blocks_ms(space, arch) + 0.2)

    monkeypatch.setattr("samplenas.latency.check.time_arch", timed)
    with pytest.raises(UserError, match="--n 6"):
        fit_correction(tiny, table, 5, progress=False)
    corr = fit_correction(tiny, table, 10, seed=3, progress=False)
    assert corr["scale"] == {"6": pytest.approx(0.8), "8": pytest.approx(1.3)}  # the median
    assert corr["offset_ms"] == {"6": pytest.approx(0.16), "8": pytest.approx(0.26)}
    fitted = [Arch(a) for a in corr["fitted_on"]["archs"]]
    assert sorted(a["resolution"] for a in fitted) == [6] * 5 + [8] * 5  # balanced
    table.save(tmp_path / "t.json")
    table = load_table(tmp_path / "t.json")  # the correction is stored in the JSON
    arch = tiny.largest()
    assert table.predict(tiny, arch) == pytest.approx(timed(tiny, arch, None))
    assert fit_correction(tiny, table, 10, seed=3, progress=False)["scale"] == corr["scale"]
    assert table.predict(tiny, arch, corrected=False) == table.blocks_ms(tiny, arch) + 0.2
    report = check_table(tiny, table, 30, seed=1, progress=False)
    checked = {Arch(n["arch"]) for n in report["networks"]}
    assert len(checked) == 30 and not checked & set(fitted)  # held out from the fit
    after = report["corrected"]
    assert after["fitted_on"] == 10 and after["held_out"] == 30
    assert after["mape"] < 1e-6 < report["mape"] and after["kendall_tau"] == pytest.approx(1.0)
    assert report["ratio_by_resolution"]["8"] > 1 > report["ratio_by_resolution"]["6"]


def test_cost_latency_adds_the_tables_prediction(capsys, tmp_path, tiny):
    out = tmp_path / "t.json"
    keys = [b.key(tiny) for b in inventory(tiny)]
    table = LatencyTable("tiny", (6, 8), TimingSettings(), {k: 0.25 for k in keys}, 1.0)
    table.save(out)
    code, stdout, _ = run(
        capsys, "cost", "--space", "tiny", "--arch", "largest", "--latency", str(out), "--json"
    )
    result = json.loads(stdout)
    assert code == 0 and result["mflops"] > 0
    assert result["latency_ms"] == table.predict(tiny, tiny.largest())
    code, _, err = run(
        capsys, "cost", "--space", "attentive", "--arch", "largest", "--latency", str(out)
    )
    assert code == 2 and "'tiny'" in err


def test_a_damaged_table_or_a_missing_resolution_exits_2(capsys, tmp_path, tiny):
    bad = tmp_path / "bad.json"
    bad.write_text('{"settings": {}}')
    code, _, err = run(
        capsys, "cost", "--space", "tiny", "--arch", "smallest", "--latency", str(bad)
    )
    assert code == 2 and "bad.json" in err
    only6 = tmp_path / "t.json"
    keys = [b.key(tiny) for b in inventory(tiny, (6,))]
    LatencyTable("tiny", (6,), TimingSettings(), dict.fromkeys(keys, 0.1), 0.0).save(only6)
    code, _, err = run(
        capsys, "cost", "--space", "tiny", "--arch", "largest", "--latency", str(only6)
    )
    assert code == 2 and "resolution 8" in err


def test_cli_measure_json(capsys, tmp_path):
    code, stdout, _ = run(
        capsys,
        "latency",
        "measure",
        "--space",
        "tiny",
        "--arch",
        "smallest",
        "--warmup",
        "1",
        "--repeats",
        "2",
        "--json",
    )
    result = json.loads(stdout)
    assert code == 0 and result["latency_ms"] > 0 and result["settings"]["batch"] == 1
    assert result["arch"] == load_space("tiny").smallest().to_json()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_exits_2_in_one_sentence(capsys, tmp_path):
    out = tmp_path / "t.json"
    code, _, err = run(
        capsys, "latency", "build", "--space", "tiny", "--device", "cuda", "--out", str(out)
    )
    assert code == 2 and "cuda" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@needs_cuda
def test_cuda_build_and_measure(capsys, tmp_path):
    out = tmp_path / "t.json"
    code, _, _ = run(
        capsys, "latency", "build", "--space", "tiny", "--device", "cuda", *FAST, "--out", str(out)
    )
    assert code == 0
    table = load_table(out)
    assert table.settings.device == "cuda" and all(ms > 0 for ms in table.entries.values())
    code, stdout, _ = run(
        capsys,
        "latency",
        "measure",
        "--space",
        "tiny",
        "--arch",
        "smallest",
        "--device",
        "cuda",
        "--warmup",
        "1",
        "--repeats",
        "2",
        "--json",
    )
    assert code == 0 and json.loads(stdout)["latency_ms"] > 0


def test_measure_refuses_a_table_of_other_conditions(capsys, tmp_path, tiny):
    out = tmp_path / "t.json"
    keys = [b.key(tiny) for b in inventory(tiny)]
    LatencyTable("tiny", (6, 8), TimingSettings(threads=2), dict.fromkeys(keys, 0.1), 0.0).save(out)
    argv = ["latency", "measure", "--space", "tiny", "--arch", "smallest", "--warmup", "1"]
    argv += ["--repeats", "2", "--table", str(out), "--json"]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "threads=2" in err
    code, stdout, _ = run(capsys, *argv, "--threads", "2")
    assert code == 0 and json.loads(stdout)["predicted_ms"] == pytest.approx(
        table_sum(tiny, tiny.smallest())
    )


def table_sum(space, arch) -> float:
    return 0.1 * len(arch_blocks(space, arch))


def test_a_time_is_the_smallest_median_of_its_rounds(monkeypatch):
    from samplenas.latency import timing

    # round 1 slowed down as a whole, round 2 with one preempted run, round 3 clean
    runs = iter([9.0, 9.5, 9.2, 2.0, 50.0, 2.2, 2.1, 2.3, 2.4])
    monkeypatch.setattr(timing, "_once", lambda module, x, device: next(runs))
    settings = timing.TimingSettings(warmup=0, repeats=3, rounds=3)
    assert timing.time_module(torch.nn.Identity(), (1, 1, 2, 2), settings) == 2.2
