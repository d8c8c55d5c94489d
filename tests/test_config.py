"""Recipes: defaults, overrides, and bad keys or values named in one sentence."""

from __future__ import annotations

import pytest

from samplenas import UserError
from samplenas.cli import main
from samplenas.train.config import load_config, parse_overrides, recipe_names
from samplenas.train.trainer import lr_factor


@pytest.mark.parametrize("name", ["fashion", "tiny", "attentivenas-imagenet"])
def test_shipped_recipes_load(name):
    cfg = load_config(name)
    assert cfg.train.num_random == (1 if name == "fashion" else 2)
    assert cfg.train.label_smoothing == 0.1


def test_recipes_ship_with_the_package_and_no_config_means_fashion(tmp_path):
    assert recipe_names() == [
        "attentivenas-imagenet",
        "demo",
        "fashion",
        "fpnas-fashion",
        "fpnas-tiny",
        "retrain-fashion",
        "tiny",
    ]
    assert load_config(None) == load_config("fashion")
    assert load_config("fashion").space == "attentive-fashion"
    # a path still works, and a file beats nothing: its values are the ones used
    own = tmp_path / "own.yaml"
    own.write_text("space: tiny\ntrain: {epochs: 3}\n")
    assert load_config(own).train.epochs == 3 and load_config(str(own)).space == "tiny"


def test_an_unknown_recipe_exits_2_listing_the_shipped_ones(capsys):
    with pytest.raises(UserError, match=r"fashon.*\(attentivenas-imagenet, demo, fashion, fpnas-"):
        load_config("fashon")
    assert main(["train", "--config", "fashon", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "demo, fashion, fpnas-fashion, fpnas-tiny, retrain-fashion, tiny" in err
    assert "Traceback" not in err


def test_train_help_names_every_shipped_recipe(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"({', '.join(recipe_names())})" in help_text and "default: fashion" in help_text


def test_overrides_apply_and_parse_types():
    cfg = load_config(
        "tiny",
        parse_overrides(["train.lr=0.5", "sampler.name=flops-uniform", "data.augment=false"]),
    )
    assert cfg.train.lr == 0.5 and cfg.sampler.name == "flops-uniform" and cfg.data.augment is False


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=0.1", "unknown config key 'train.lrr'"),
        ("bogus=1", "unknown config key 'bogus'"),
        ("train.lr=fast", "config key 'train.lr' must be of type float"),
        ("train.epochs=0", "config key 'train.epochs' must be at least 1"),
        ("train.dropout=1.5", "config key 'train.dropout' must be in [0, 1)"),
        ("calibration.split=test", "config key 'calibration.split' must be train or val"),
    ],
)
def test_bad_keys_and_values_are_named(override, message):
    with pytest.raises(UserError) as err:
        load_config("tiny", parse_overrides([override]))
    assert message in str(err.value)


def test_unreadable_config(tmp_path):
    with pytest.raises(UserError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)


def test_learning_rate_warms_up_then_decays_by_cosine():
    factors = [lr_factor(s, 100, 10, 0.0) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5, abs=0.01)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[-1] < 0.01
