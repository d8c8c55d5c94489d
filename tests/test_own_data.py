"""A user's own images and space: YAML as users write it, folders that say what they
did, self-contained run directories, one run per directory, decoded-image caches."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tqdm
import yaml
from PIL import Image

from samplenas import UserError
from samplenas.cli import main
from samplenas.data import load_dataset
from samplenas.space import load_space
from samplenas.space.registry import SPACES_DIR
from samplenas.train.config import RECIPES, load_config, parse_overrides
from samplenas.train.lock import LOCK, run_lock
from samplenas.train.runs import load_run


# -- configs read like YAML users write -------------------------------------------------
@pytest.mark.parametrize(
    "text, value", [("1e-3", 1e-3), ("2e-5", 2e-5), ("1E-4", 1e-4), (".5", 0.5)]
)
def test_exponent_and_leading_dot_numbers_are_floats(tmp_path, text, value):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"space: tiny\ntrain:\n  lr: {text}\n  weight_decay: {text}\n")
    cfg = load_config(recipe)
    assert cfg.train.lr == value and cfg.train.weight_decay == value
    assert load_config("tiny", parse_overrides([f"train.lr={text}"])).train.lr == value
    assert yaml.safe_load("x: 1e-3")["x"] == "1e-3"  # PyYAML's own loader is left alone


def test_space_files_read_exponent_floats(tmp_path):
    own = tmp_path / "own.yaml"
    own.write_text((SPACES_DIR / "tiny.yaml").read_text() + "flops_step: 5e-1\n")
    assert load_space(own).config.flops_step == 0.5


@pytest.mark.parametrize(
    "recipe, message",
    [
        ("space: tiny\ntrain:\n  lr: [1,\n", r"r\.yaml' is not valid YAML: .* line 4, column 1"),
        ("space: tiny\ntrain:\n  lr: .inf\n", r"key 'train.lr' is inf"),
        ("space: tiny\ntrain:\n  momentum: .nan\n", r"key 'train.momentum' is nan"),
        ("space: tiny\nsampler:\n  options: {cap: -.inf}\n", r"key 'sampler.options.cap' is -inf"),
    ],
)
def test_yaml_mistakes_name_file_line_and_key(tmp_path, capsys, recipe, message):
    path = tmp_path / "r.yaml"
    path.write_text(recipe)
    with pytest.raises(UserError, match=message):
        load_config(path)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_non_finite_set_values_are_refused_by_key():
    with pytest.raises(UserError, match=r"--set: key 'train.lr' is inf"):
        load_config("tiny", parse_overrides(["train.lr=.inf"]))
    with pytest.raises(UserError, match=r"config key 'train.lr' is nan"):
        load_config("tiny", {"train": {"lr": float("nan")}})


def test_space_file_syntax_errors_name_line_and_column(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("kind: mbconv\nstages:\n  - {width: [8, 16}\n")
    with pytest.raises(UserError, match=r"space file '.*mine\.yaml' is not valid YAML: .*line 3"):
        load_space(bad)


# -- image folders say what they did ----------------------------------------------------
COLOURS = {"cat": (220, 40, 40), "dog": (40, 200, 60), "owl": (50, 60, 230)}


def make_images(folder: Path, per_class: int = 40, classes=tuple(COLOURS)) -> Path:
    """Noisy RGB images of two sizes (10x10 and 12x9) per class; the class sets the colour."""
    rng = np.random.default_rng(0)
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = (10, 10) if i % 2 else (12, 9)
            noise = rng.integers(-40, 40, (h, w, 3))
            pixels = np.clip(np.array(COLOURS[name]) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i:03d}.png")
    return folder


def test_hidden_files_and_folders_are_not_classes_or_images(tmp_path):
    make_images(tmp_path / "train", per_class=10)
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "train" / ".ipynb_checkpoints" / "x.png").write_bytes(b"not an image")
    (tmp_path / "train" / "cat" / ".hidden.png").write_bytes(b"not an image either")
    d = load_dataset("folder", str(tmp_path), val_size=5, image_size=8)
    assert d.classes == ["cat", "dog", "owl"] and d.num_classes == 3
    assert len(d.train) + len(d.val) + len(d.test) == 30


def test_val_and_test_folders_are_used_and_their_classes_checked(tmp_path):
    make_images(tmp_path / "train", per_class=10)
    make_images(tmp_path / "val", per_class=3)
    make_images(tmp_path / "test", per_class=2)
    d = load_dataset("folder", str(tmp_path), val_size=7, image_size=8)
    assert (len(d.train), len(d.val), len(d.test)) == (30, 9, 6)  # no random split at all
    assert any("images of" in n and "val" in n and "val_size is not used" in n for n in d.notes)
    (tmp_path / "test" / "eel").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "test" / "eel" / "0.png")
    with pytest.raises(UserError, match=r"class folder\(s\) eel in '.*test' are not classes"):
        load_dataset("folder", str(tmp_path), val_size=7, image_size=8)
    (tmp_path / "test" / "eel" / "0.png").rename(tmp_path / "x.png")
    (tmp_path / "test" / "eel").rename(tmp_path / "val" / "eel")
    (tmp_path / "x.png").rename(tmp_path / "val" / "eel" / "0.png")
    with pytest.raises(UserError, match=r"eel in '.*val' are not classes"):
        load_dataset("folder", str(tmp_path), val_size=7, image_size=8)


def test_without_test_folder_the_held_out_images_are_counted_and_sizes_unified(tmp_path):
    make_images(tmp_path, per_class=20)  # classes directly in the folder, no train/
    d = load_dataset("folder", str(tmp_path), val_size=6, image_size=8)
    assert len(d.test) == 6 and len(d.val) == 6 and len(d.train) == 48
    assert any("held out 6 of the 60 images" in n and "no test/ folder" in n for n in d.notes)
    assert d.train.images.shape[1:] == (3, 8, 8)  # 10x10 and 12x9 images alike
    assert "resized to 8x8" in d.resize and "aspect" in d.resize


# -- a run directory is self-contained --------------------------------------------------
def write_recipe(where: Path, data_dir: str, space: str) -> Path:
    """The tiny recipe on a 3-class RGB folder, one short epoch; paths as given."""
    declaration = yaml.safe_load((SPACES_DIR / "tiny.yaml").read_text())
    declaration.update(in_channels=3, num_classes=3)
    (where / "my-space.yaml").write_text(yaml.safe_dump(declaration))
    recipe = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    recipe["space"] = space
    recipe["data"] = {"dataset": "folder", "data_dir": data_dir, "image_size": 8, "val_size": 20}
    recipe["train"].update(epochs=1, batch_size=16)
    recipe["checkpoint"] = {"every_steps": 1000}
    path = where / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A run trained from relative paths, whose space file is then deleted; read-only."""
    home = tmp_path_factory.mktemp("home")
    make_images(home / "pics", per_class=40)
    recipe = write_recipe(home, "pics", "my-space.yaml")
    cwd = os.getcwd()
    os.chdir(home)
    try:
        assert main(["train", "--config", "recipe.yaml", "--out", "run", "--no-progress"]) == 0
    finally:
        os.chdir(cwd)
    (home / "my-space.yaml").unlink()  # the run must not need it any more
    recipe.unlink()
    return home / "run", home / "pics"


def test_a_run_keeps_its_space_data_paths_classes_and_preprocessing(trained, tmp_path):
    run_dir, pics = trained
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["space"]["name"] == "my-space" and saved["space"]["num_classes"] == 3
    assert saved["data"]["data_dir"] == str(pics.resolve())
    record = json.loads((run_dir / "data.json").read_text())
    assert record["classes"] == ["cat", "dog", "owl"]
    assert record["files"]["count"] == 120 and len(record["files"]["sha256"]) == 64
    assert "held out 12" in record["notes"][0]
    run = load_run(run_dir)
    assert run.class_names() == ["cat", "dog", "owl"]
    pre = run.preprocessing()  # one record: what data.json holds is what exports repeat
    assert pre == record["preprocessing"] and pre["size"] == [8, 8] and pre["channels"] == 3
    assert pre["resize"] == "squash" and pre["mean"] == list(run.data.mean)
    assert "resized to 8x8" in record["decoding"]


def test_eval_works_from_any_directory_without_decoding_again(
    trained, tmp_path, monkeypatch, capsys
):
    run_dir, _ = trained
    caches = list(run_dir.glob("decoded-*.npz"))
    assert len(caches) == 1
    with np.load(caches[0], allow_pickle=False) as z:  # plain arrays, no pickles
        assert z["train_x"].dtype == np.uint8
    monkeypatch.chdir(tmp_path)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image again")

    monkeypatch.setattr("samplenas.data.datasets.read_image", no_decoding)
    assert main(["eval", "--run", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] > 0


def test_a_run_from_before_the_data_record_still_evaluates(trained, tmp_path, capsys):
    run_dir, _ = trained
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    for name in ("data.json", "data-files.json.gz"):
        (old / name).unlink()
    for cache in old.glob("decoded-*.npz"):
        cache.unlink()
    saved = yaml.safe_load((old / "config.yaml").read_text())
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(saved["space"]))
    saved["space"] = str(tmp_path / "space.yaml")  # old runs named the space file
    (old / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["eval", "--run", str(old), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] > 0
    assert load_run(old).class_names() == ["cat", "dog", "owl"]


def test_changed_data_is_refused_or_accepted_and_recorded(tmp_path, capsys):
    pics = make_images(tmp_path / "pics", per_class=20)
    recipe = write_recipe(tmp_path, str(pics), str(tmp_path / "my-space.yaml"))
    run = tmp_path / "run"
    assert main(["train", "--config", str(recipe), "--out", str(run), "--no-progress"]) == 0
    (tmp_path / "my-space.yaml").write_text("kind: mbconv\nnum_classes: 7\n")  # edited later
    Image.new("RGB", (10, 10)).save(pics / "cat" / "new.png")
    capsys.readouterr()
    for argv in (
        ["eval", "--run", str(run)],
        ["search", "--run", str(run), "--population", "2", "--iterations", "0"],
        ["export", "--run", str(run), "--arch", "smallest", "--out", str(tmp_path / "x")],
        ["train", "--resume", str(run), "--epochs", "2"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "changed since it was trained" in err and "1 added" in err, argv
        assert "--accept-data-change" in err and "Traceback" not in err
    assert not list(run.glob("search")) and not (tmp_path / "x").exists()
    (pics / "dog" / "000.png").unlink()
    assert main(["eval", "--run", str(run), "--accept-data-change", "--json"]) == 0
    assert "accepted and recorded" in capsys.readouterr().err
    record = json.loads((run / "data.json").read_text())
    assert [h["accepted"] for h in record["history"]] == ["1 added, 1 removed"]
    assert record["files"]["count"] == 60 and record["classes"] == ["cat", "dog", "owl"]
    assert len(list(run.glob("decoded-*.npz"))) == 1  # the old cache made way for the new
    assert main(["eval", "--run", str(run), "--json"]) == 0  # accepted once, kept
    Image.new("RGB", (11, 10)).save(pics / "owl" / "000.png")  # same name, other size
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    assert "1 resized" in capsys.readouterr().err


# -- one run at a time per directory ----------------------------------------------------
def test_a_second_train_or_resume_while_the_first_runs_exits_2_naming_its_pid(tmp_path, capsys):
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "samplenas.cli", "train", "--config", "tiny", "--out", str(run)]
        + ["--epochs", "200", "--no-progress"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ((run / "config.yaml").is_file() and (run / LOCK).is_file()):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        for argv in (["--config", "tiny", "--out", str(run)], ["--resume", str(run)]):
            assert main(["train", *argv, "--no-progress"]) == 2
            err = capsys.readouterr().err
            assert f"in use by another samplenas train (pid {first.pid} on" in err
    finally:
        first.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert not (run / LOCK).exists()  # released on Ctrl-C


def test_a_stale_lock_is_taken_over_and_every_exit_releases_it(tmp_path, capsys):
    (tmp_path / LOCK).write_text('{"pid": 99999999, "host": "gone"}')  # no process holds it
    with run_lock(tmp_path):
        owner = json.loads((tmp_path / LOCK).read_text())
        assert owner["pid"] == os.getpid()
        with pytest.raises(UserError, match=rf"pid {os.getpid()} on"), run_lock(tmp_path):
            pass  # a second holder is refused
    err = capsys.readouterr().err
    assert "taking over the lock" in err and "pid 99999999 on gone" in err
    assert not (tmp_path / LOCK).exists()
    with pytest.raises(RuntimeError), run_lock(tmp_path):
        raise RuntimeError("a fault mid-run")
    assert not (tmp_path / LOCK).exists()
    with run_lock(tmp_path):
        pass
    assert "taking over" not in capsys.readouterr().err  # a released lock leaves nothing


def test_streamed_folders_carry_the_same_record_and_decoding_shows_progress(tmp_path, monkeypatch):
    make_images(tmp_path, per_class=10)
    streamed = load_dataset("folder", str(tmp_path), 5, image_size=8, streaming=True)
    in_ram = load_dataset("folder", str(tmp_path), 5, image_size=8)
    assert streamed.files == in_ram.files and streamed.classes == in_ram.classes
    assert "centre 8x8 crop" in streamed.resize
    bars = []

    class Bar(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            bars.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    load_dataset("folder", str(tmp_path), 5, image_size=8)
    # a bar over every image, shown only once decoding has taken a few seconds
    assert bars and bars[0]["total"] == 30 and bars[0]["delay"] >= 2


# -- an accepted data change: same classes, same normalisation, recorded only on success --
def copy_of(trained, where: Path) -> tuple[Path, Path]:
    """A writable copy of the trained run and its images, its recipe pointing at the copy."""
    run_dir, pics = trained
    run, mine = where / "run", where / "pics"
    shutil.copytree(run_dir, run)
    shutil.copytree(pics, mine)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["data"]["data_dir"] = str(mine)
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    return run, mine


def snapshot(run: Path) -> dict[str, bytes]:
    """The run's data record, file list and decoded caches, byte for byte."""
    names = ["data.json", "data-files.json.gz", *(p.name for p in run.glob("decoded-*.npz"))]
    return {name: (run / name).read_bytes() for name in names}


def test_renamed_classes_are_refused_even_when_the_change_is_accepted(trained, tmp_path, capsys):
    run, pics = copy_of(trained, tmp_path)
    (pics / "owl").rename(pics / "ant")  # labels would shift: ant=0, cat=1, dog=2
    before = snapshot(run)
    capsys.readouterr()
    for argv in (
        ["eval", "--run", str(run)],
        ["export", "--run", str(run), "--arch", "smallest", "--out", str(tmp_path / "x")],
        ["train", "--resume", str(run), "--epochs", "2", "--no-progress"],
    ):
        assert main([*argv, "--accept-data-change"]) == 2, argv
        err = capsys.readouterr().err
        assert "classes of run" in err and "Traceback" not in err, argv
        assert "['cat', 'dog', 'owl']" in err and "['ant', 'cat', 'dog']" in err, argv
        assert snapshot(run) == before, argv  # nothing recorded, no cache replaced
    assert not (tmp_path / "x").exists()


def test_a_command_failing_after_the_data_check_leaves_the_run_as_it_was(trained, tmp_path, capsys):
    run, pics = copy_of(trained, tmp_path)
    Image.new("RGB", (10, 10)).save(pics / "cat" / "new.png")
    before = snapshot(run)
    capsys.readouterr()
    # the run kept no weight average: load_run fails after reading the (changed) data
    assert main(["eval", "--run", str(run), "--weights", "ema", "--accept-data-change"]) == 2
    assert "kept no weight average" in capsys.readouterr().err
    assert snapshot(run) == before
    for cls in ("cat", "dog", "owl"):  # too few images left for one batch of 16
        for image in sorted((pics / cls).glob("*.png"))[10:]:
            image.unlink()
    resume = ["train", "--resume", str(run), "--epochs", "2", "--no-progress"]
    assert main([*resume, "--accept-data-change"]) == 2
    assert "batch_size is larger than the training split" in capsys.readouterr().err
    assert snapshot(run) == before


def test_an_accepted_change_keeps_the_recorded_normalisation_everywhere(trained, tmp_path, capsys):
    from samplenas.train import Trainer
    from samplenas.train.config import load_run_config

    run, pics = copy_of(trained, tmp_path)
    record = json.loads((run / "data.json").read_text())
    mean, std = record["preprocessing"]["mean"], record["preprocessing"]["std"]
    for i in range(12):  # white images: decoded afresh, the folder's mean would move
        Image.new("RGB", (10, 10), (255, 255, 255)).save(pics / "dog" / f"w{i}.png")
    fresh = load_dataset("folder", str(pics), val_size=20, image_size=8)
    assert list(fresh.mean) != pytest.approx(mean)
    cfg = load_run_config(run, {"train": {"epochs": 2}})
    trainer = Trainer(cfg, run, resume=True, progress=False, accept_data_change=True)
    assert list(trainer.data.mean) == mean and list(trainer.data.std) == std
    assert "accepted and recorded" in capsys.readouterr().err
    assert load_run(run).data.mean == trainer.data.mean
    out = tmp_path / "x"
    assert main(["export", "--run", str(run), "--arch", "smallest", "--out", str(out)]) == 0
    meta = json.loads((out / "arch.json").read_text())
    assert meta["mean"] == mean and meta["size"] == [8, 8] and meta["resize"] == "squash"


def test_accepting_a_change_waits_for_a_train_holding_the_run(trained, tmp_path, capsys):
    run, pics = copy_of(trained, tmp_path)
    Image.new("RGB", (10, 10)).save(pics / "cat" / "new.png")
    before = snapshot(run)
    with run_lock(run):  # as a running train holds it
        assert main(["eval", "--run", str(run), "--accept-data-change"]) == 2
    err = capsys.readouterr().err
    assert f"(pid {os.getpid()} on" in err and "accept the data change again" in err
    assert snapshot(run) == before
    assert main(["eval", "--run", str(run), "--accept-data-change"]) == 0
    assert json.loads((run / "data.json").read_text())["history"][0]["accepted"] == "1 added"


def test_cost_of_a_run_reads_no_data(trained, tmp_path, capsys):
    run, pics = copy_of(trained, tmp_path)
    search = ["search", "--run", str(run), "--population", "2", "--iterations", "0"]
    assert main([*search, "--no-progress"]) == 0
    pics.rename(tmp_path / "moved")  # no data left where the run expects it
    capsys.readouterr()
    for arch in ("0", "smallest"):
        assert main(["cost", "--run", str(run), "--arch", arch, "--json"]) == 0, arch
        assert json.loads(capsys.readouterr().out)["mflops"] > 0
    assert main(["cost", "--run", str(run), "--arch", "biggest"]) == 2
    assert "the space's own notation (e.g. a NAS-Bench-201 cell string)" in (
        capsys.readouterr().err
    )


def test_space_mismatch_of_a_stored_or_inline_space_points_at_no_shipped_file(
    trained, tmp_path, capsys
):
    run, _ = copy_of(trained, tmp_path)
    for name in ("data.json", "data-files.json.gz"):  # a run from before the record
        (run / name).unlink()
    two = make_images(tmp_path / "two", per_class=20, classes=("cat", "dog"))
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--data-dir", str(two)]) == 2
    err = capsys.readouterr().err
    assert f"run '{run}' was built for 3 classes and 3-channel images" in err
    assert "shipped" not in err and "--data-dir" in err
    recipe = yaml.safe_load(write_recipe(tmp_path, str(two), "tiny").read_text())
    recipe["space"] = yaml.safe_load((SPACES_DIR / "tiny.yaml").read_text())  # inline
    (tmp_path / "inline.yaml").write_text(yaml.safe_dump(recipe))
    argv = ["train", "--config", str(tmp_path / "inline.yaml"), "--out", str(tmp_path / "r")]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "set in_channels: 3 and num_classes: 2 in the recipe's space mapping" in err
    assert "shipped" not in err
