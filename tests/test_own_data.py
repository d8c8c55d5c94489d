"""A user's own images and space: YAML as users write it, folders that say what they
did, self-contained run directories, one run per directory, decoded-image caches."""

from __future__ import annotations

import pytest
import yaml

from samplenas import UserError
from samplenas.cli import main
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
