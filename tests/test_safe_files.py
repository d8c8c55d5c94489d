"""Files samplenas writes and reads: predictor files (one protocol, checked on load),
damaged caches, malformed inputs, file modes; bounded sampling; optional extras."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor

from samplenas import UserError, load_space
from samplenas.cli import main
from samplenas.io import atomic_folder, atomic_write_json
from samplenas.predictors import RandomForestPredictor, load_predictor
from samplenas.predictors.registry import make_predictor
from samplenas.samplers import make_sampler
from samplenas.samplers.flops_prior import FlopsPrior
from samplenas.search.strategies import RandomSearch

TINY_YAML = "tiny"  # a shipped recipe, by name


def learnable(space, n: int, seed: int = 0) -> tuple[list, np.ndarray]:
    """n distinct architectures labelled by a noisy function of their FLOPs."""
    rng = np.random.default_rng(seed)
    archs = space.sample_distinct(rng, n)
    y = np.array([space.cost(a).mflops for a in archs]) * 100 + rng.normal(0, 0.5, n)
    return archs, y


@pytest.fixture(scope="module")
def fitted_forest(tmp_path_factory):
    space = load_space("tiny")
    archs, y = learnable(space, 200)
    forest = RandomForestPredictor(space, n_estimators=20, seed=3).fit(archs[:150], y[:150])
    path = tmp_path_factory.mktemp("forest") / "forest.npz"
    forest.save(path)
    return space, archs, y, forest, path


# -- the random forest: plain arrays, a NumPy walk, checked on load ------------------------
def test_forest_walk_matches_scikit_learn_before_and_after_saving(fitted_forest):
    space, archs, y, forest, path = fitted_forest
    reference = RandomForestRegressor(n_estimators=20, max_depth=15, random_state=3)
    reference.fit(forest.encode(archs[:150]), y[:150])
    expected = reference.predict(forest.encode(archs))
    assert np.allclose(forest.predict(archs), expected)
    loaded = load_predictor(path)
    assert isinstance(loaded, RandomForestPredictor)
    assert np.allclose(loaded.predict(archs), expected)
    idx = np.stack([space.indices_of(a) for a in archs])
    assert np.allclose(loaded.predict_indices(idx), expected)
    with np.load(path, allow_pickle=False) as z:  # plain arrays, no scikit-learn layout
        assert {"children_left", "children_right", "feature", "threshold", "value"} <= set(z)


def tampered(path: Path, out: Path, change) -> Path:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k].copy() for k in z.files}
    change(arrays)
    np.savez(out, **arrays)
    return out


def first_split(arrays) -> int:
    return int(np.flatnonzero(arrays["children_left"] != -1)[0])


def set_left(value_of):
    def change(arrays):
        arrays["children_left"][first_split(arrays)] = value_of(arrays)

    return change


def set_at_split(key, value):
    def change(arrays):
        arrays[key][first_split(arrays)] = value

    return change


@pytest.mark.parametrize(
    "change, reason",
    [
        (set_left(lambda a: 10**9), "out of range"),  # would read past the arrays
        (set_left(lambda a: 0), "not after its parent"),  # back to the root: a cycle
        (set_left(lambda a: -5), "out of range"),
        (set_left(lambda a: a["children_right"][0]), "exactly one path"),  # shared child
        (set_at_split("threshold", np.nan), "not finite"),
        (set_at_split("feature", 999), "feature that does not exist"),
        (lambda a: a.update(offsets=a["offsets"][::-1].copy()), "offsets"),
        (lambda a: a.pop("value"), "missing"),
        (lambda a: a.update(value=a["value"].astype(str)), "not finite numbers"),
    ],
)
def test_a_tampered_forest_is_a_user_error_naming_the_file(fitted_forest, tmp_path, change, reason):
    bad = tampered(fitted_forest[4], tmp_path / "bad.npz", change)
    with pytest.raises(UserError, match=reason) as exc:
        load_predictor(bad)
    assert str(bad) in str(exc.value)


def test_a_truncated_predictor_file_is_a_user_error(fitted_forest, tmp_path):
    bad = tmp_path / "cut.npz"
    for size in (10, len(fitted_forest[4].read_bytes()) // 2):  # BadZipFile, EOFError, zlib
        bad.write_bytes(fitted_forest[4].read_bytes()[:size])
        with pytest.raises(UserError, match="not a valid predictor file") as exc:
            load_predictor(bad)
        assert str(bad) in str(exc.value)


def test_a_tampered_predictor_file_exits_2_from_the_cli(fitted_forest, tmp_path, capsys):
    bad = tampered(fitted_forest[4], tmp_path / "cycle.npz", set_left(lambda a: 0))
    argv = ["train", "--config", TINY_YAML, "--out", str(tmp_path / "run"), "--no-progress"]
    argv += ["--sampler", "bestup-3-acc", "--set", f"sampler.options.predictor={bad}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err


# -- one save/load protocol for every predictor ----------------------------------------------
@pytest.mark.parametrize("name", ["rf", "mlp", "gcn"])
def test_every_predictor_round_trips_through_one_loader(name, tmp_path):
    space = load_space("tiny")
    archs, y = learnable(space, 120)
    predictor = make_predictor(name, space, seed=1)
    if name == "gcn":
        predictor.epochs = 40  # the file keeps whatever was used
    predictor.fit(archs[:80], y[:80])
    predictor.save(tmp_path / "p.npz")
    loaded = load_predictor(tmp_path / "p.npz")
    assert type(loaded) is type(predictor) and loaded.space.name == "tiny"
    assert np.allclose(loaded.predict(archs), predictor.predict(archs))
    assert loaded.score(archs[80:], y[80:]) > 0.5  # it learnt, and kept what it learnt
    with pytest.raises(UserError, match="is for space 'tiny', not 'attentive'"):
        load_predictor(tmp_path / "p.npz", space=load_space("attentive"))


def test_the_mlp_forward_pass_is_scikit_learns(tmp_path):
    from sklearn.neural_network import MLPRegressor

    space = load_space("tiny")
    archs, y = learnable(space, 100)
    mlp = make_predictor("mlp", space, seed=2).fit(archs, y)
    ref = MLPRegressor(hidden_layer_sizes=(128, 128), random_state=2, max_iter=1000, alpha=1e-3)
    ref.fit(mlp.encode(archs), (y - mlp.mean) / mlp.std)
    assert np.allclose(ref.predict(mlp.encode(archs)) * mlp.std + mlp.mean, mlp.predict(archs))


def test_an_acc_sampler_takes_a_saved_gcn(tmp_path):
    space = load_space("attentive-fashion")
    archs, y = learnable(space, 60)
    gcn = make_predictor("gcn", space, seed=0)
    gcn.epochs = 30
    gcn.fit(archs, y)
    gcn.save(tmp_path / "gcn.npz")
    sampler = make_sampler("bestup-4-acc", space, seed=1, predictor=str(tmp_path / "gcn.npz"))
    picked = sampler.ask(5)
    for arch, candidates, scores in zip(
        picked, sampler.last_candidates, sampler.last_scores, strict=True
    ):
        assert np.allclose(scores, gcn.predict(candidates))  # the GCN ranked them
        assert arch == candidates[int(np.argmax(scores))]
    with pytest.raises(UserError, match="is for space 'attentive-fashion', not 'tiny'"):
        make_sampler("bestup-4-acc", load_space("tiny"), predictor=str(tmp_path / "gcn.npz"))


# -- damaged caches and malformed inputs -------------------------------------------------------
def test_a_truncated_flops_cache_is_rebuilt(tmp_path):
    space = load_space("tiny")
    first = FlopsPrior.for_space(space, m=20_000, cache=tmp_path)
    (cache,) = tmp_path.glob("*.npz")
    whole = cache.read_bytes()
    for size in (0, 20, len(whole) // 2):
        cache.write_bytes(whole[:size])
        again = FlopsPrior.for_space(space, m=20_000, cache=tmp_path)
        assert np.array_equal(again.tables, first.tables)
        assert cache.read_bytes() == whole  # written anew


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"arch": "A"}, {"arch": "A", "val_top1": 1}], "row 0 of '{}' needs the keys"),
        ([{"val_top1": 1.0}] * 2, "row 0 of '{}' needs the keys 'arch' and 'val_top1'"),
        ([{"arch": "A", "val_top1": 1}, {"arch": "A", "val_top1": "high"}], "row 1 of '{}'"),
        ({"arch": "A"}, "'{}' must be a JSON list"),
    ],
)
def test_predictor_cv_data_rows_are_checked(tmp_path, capsys, rows, message):
    arch = load_space("tiny").smallest().to_json()
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(rows).replace('"A"', json.dumps(arch)))
    code = main(["predictor", "cv", "--data", str(path), "--space", "tiny", "--folds", "2"])
    err = capsys.readouterr().err
    assert code == 2 and message.format(path) in err and "Traceback" not in err


def test_atomic_files_and_folders_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        with atomic_folder(tmp_path / "folder") as tmp:
            (tmp / "inside.txt").write_text("x")
        os.umask(0o077)
        atomic_write_json(tmp_path / "private.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "folder", "private.json"]


def test_an_atomic_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out"
    with atomic_folder(target) as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("a writer failed")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_folder(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left


# -- bounded sampling --------------------------------------------------------------------------
def test_random_search_stops_when_the_space_is_exhausted():
    space = load_space("tiny")  # 512 architectures
    search = RandomSearch(space, seed=0)
    first = search.ask(500)
    rest = search.ask(100)
    assert len(first) == 500 and len(rest) == 12
    assert len(set(first) | set(rest)) == 512 and search.ask(1) == []
    with pytest.raises(ValueError, match="has 0 left"):
        space.sample_distinct(np.random.default_rng(0), 1, set(first) | set(rest))


# -- optional extras ---------------------------------------------------------------------------
BLOCKED = "import sys; sys.modules['nas_bench_graph'] = None; from samplenas.cli import main; "


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_spaces_lists_every_space_without_the_bench_extra(json_flag):
    code = BLOCKED + f"sys.exit(main(['spaces', *{json_flag!r}]))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if json_flag:
        rows = {r["name"]: r for r in json.loads(proc.stdout)}
        assert rows["tiny"]["size"] == 512 and "needs" not in rows["tiny"]
        assert rows["nas-bench-graph"]["needs"] == "pip install samplenas[bench]"
    else:
        lines = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
        assert "needs pip install samplenas[bench]" in lines["nas-bench-graph-proteins"]
        assert "512" in lines["tiny"] and "needs" not in lines["attentive"]


def test_a_benchmark_without_the_bench_extra_names_it():
    code = BLOCKED + "sys.exit(main(['bench', '--benchmark', 'nas-bench-graph:cora']))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2 and "pip install samplenas[bench]" in proc.stderr
    assert "Traceback" not in proc.stderr
