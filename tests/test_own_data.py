"""A user's own images and space: YAML as users write it, folders that say what they
did, self-contained run directories, one run per directory, decoded-image caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from samplenas import UserError
from samplenas.cli import main
from samplenas.data import load_dataset
from samplenas.space import load_space
from samplenas.space.registry import SPACES_DIR
from samplenas.train.config import load_config, parse_overrides


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
