"""A user's own images and space: init, the README's commands, exports usable without
guessing (arch.json, README.md, predict), --arch named alike everywhere, a run that talks."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from samplenas.cli import main
from samplenas.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
COLORS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "fox": (40, 40, 200)}
# what makes each README command fast here (few steps, no bars); the commands stay as shown
FAST = {
    "train": ["--epochs", "1", "--no-progress"],
    "search": ["--population", "4", "--iterations", "0", "--no-progress"],
}


def image_folder(root: Path, per_class: int = 20, test: bool = True, size: int = 32) -> Path:
    """A 3-class RGB folder (train/, optionally test/): each class a tinted noise image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    splits = {"train": per_class, **({"test": 4} if test else {})}
    for split, n in splits.items():
        for cls, color in COLORS.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 60, (size, size + 4, 3)) + np.array(color)
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                    folder / f"{i + 1:04d}.png"
                )
    return root


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def fenced(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def commands(block: str) -> list[list[str]]:
    """The commands of a bash block: one per line, comments dropped."""
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory) -> Path:
    """Run the README's "Your own data" commands, as shown, on a generated folder."""
    import os

    cwd = tmp_path_factory.mktemp("own")
    image_folder(cwd / "my_images")
    before = Path.cwd()
    os.chdir(cwd)
    try:
        (block,) = fenced(readme_section("Your own data"), "bash")
        argvs = commands(block)
        assert [a[1] for a in argvs] == ["init", "spaces", "train", "search", "export", "predict"]
        for argv in argvs:
            assert argv[0] == "samplenas"
            code = main(argv[1:] + FAST.get(argv[1], []))
            assert code == 0, argv
    finally:
        os.chdir(before)
    return cwd


def test_readme_commands_run_on_a_folder_of_images(readme_run, capsys):
    nas = readme_run / "my_nas"
    recipe = yaml.safe_load((nas / "recipe.yaml").read_text())
    assert recipe["data"]["dataset"] == "folder" and recipe["data"]["grayscale"] is False
    assert Path(recipe["data"]["data_dir"]) == readme_run / "my_images"
    space = yaml.safe_load((nas / "space.yaml").read_text())
    assert (space["in_channels"], space["num_classes"]) == (3, 3)
    meta = json.loads((readme_run / "models" / "mine" / "arch.json").read_text())
    assert meta["classes"] == ["cat", "dog", "fox"]
    assert meta["input_shape"] == [3, 32, 32] and meta["channels"] == 3


def test_readme_space_example_is_a_valid_space_for_its_folder(tmp_path):
    from samplenas.space import load_space

    (block,) = fenced(readme_section("Your own data"), "yaml")
    (tmp_path / "mine.yaml").write_text(block)
    space = load_space(tmp_path / "mine.yaml")
    assert (space.config.in_channels, space.config.num_classes) == (3, len(COLORS))


def test_init_sizes_space_and_recipe_to_the_folder(tmp_path, capsys):
    data = image_folder(tmp_path / "imgs", test=False)
    code, out, _ = run(capsys, "init", "--data", str(data), "--out", str(tmp_path / "d"))
    assert code == 0
    assert "3 classes (cat, dog, fox)" in out and "no test/: 6 images" in out
    cfg = yaml.safe_load((tmp_path / "d" / "recipe.yaml").read_text())
    from samplenas.space import load_space
    from samplenas.train.config import load_config

    loaded = load_config(str(tmp_path / "d" / "recipe.yaml"))  # train reads it as is
    assert loaded.data.image_size == 32 and cfg["train"]["epochs"] >= 2
    space = load_space(loaded.space)
    assert space.config.num_classes == 3 and space.config.in_channels == 3
    # a budget caps the largest network
    code, _, _ = run(
        capsys, "init", "--data", str(data), "--out", str(tmp_path / "b"), "--budget-mflops", "1"
    )
    capped = load_space(yaml.safe_load((tmp_path / "b" / "recipe.yaml").read_text())["space"])
    assert code == 0 and capped.cost(capped.largest()).mflops <= 1.0
    assert capped.cost(capped.largest()).mflops < space.cost(space.largest()).mflops


def test_init_finds_grey_images(tmp_path, capsys):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "g" / "train" / cls).mkdir(parents=True)
        for i in range(5):
            Image.new("L", (20, 20), 40 * i).save(tmp_path / "g" / "train" / cls / f"{i}.png")
    assert run(capsys, "init", "--data", str(tmp_path / "g"), "--out", str(tmp_path / "d"))[0] == 0
    cfg = yaml.safe_load((tmp_path / "d" / "recipe.yaml").read_text())
    space = yaml.safe_load((tmp_path / "d" / "space.yaml").read_text())
    assert cfg["data"]["grayscale"] is True and cfg["data"]["image_size"] == 20
    assert space["in_channels"] == 1 and space["num_classes"] == 2


def test_init_takes_class_folders_without_train_as_training_does(tmp_path, capsys):
    data = image_folder(tmp_path / "imgs", per_class=6, test=False)
    for cls in COLORS:
        (data / "train" / cls).rename(data / cls)
    (data / "train").rmdir()
    code, out, err = run(capsys, "init", "--data", str(data), "--out", str(tmp_path / "d"))
    assert code == 0, err
    assert "3 classes (cat, dog, fox)" in out


def test_init_refuses_what_it_cannot_use(tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    code, _, err = run(capsys, "init", "--data", str(flat), "--out", str(tmp_path / "d"))
    assert code == 2 and "must hold one folder per class (found 0)" in err
    assert "Traceback" not in err
    data = image_folder(tmp_path / "imgs", per_class=3, test=False)
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "init", "--data", str(data), "--out", str(used))
    assert code == 2 and "--force" in err
    assert run(capsys, "init", "--data", str(data), "--out", str(used), "--force")[0] == 0
    assert (used / "notes.txt").read_text() == "mine" and (used / "recipe.yaml").is_file()
    code, _, err = run(
        capsys, "init", "--data", str(data), "--out", str(tmp_path / "x"), "--budget-mflops", "0.01"
    )
    assert code == 2 and "--budget-mflops 0.01 is below" in err


def test_fashion_recipe_on_an_image_folder_names_data_dataset_folder(tmp_path, capsys):
    data = image_folder(tmp_path / "imgs", per_class=2, test=False)
    argv = ["train", "--config", "fashion", "--data-dir", str(data), "--out", str(tmp_path / "r")]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "data.dataset: folder" in err and "samplenas init" in err


def test_space_data_mismatch_says_which_numbers_to_change_where(tmp_path, capsys):
    data = image_folder(tmp_path / "imgs", per_class=12, test=False)
    argv = ["train", "--config", "tiny", "--set", "data.dataset=folder", "--set", "data.val_size=4"]
    argv += ["--data-dir", str(data), "--out", str(tmp_path / "r"), "--no-progress"]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "set in_channels: 3 and num_classes: 3" in err
    assert "tiny.yaml" in err and "data.grayscale: true" in err
    own = tmp_path / "mine.yaml"
    text = (ROOT / "src/samplenas/space/spaces/tiny.yaml").read_text()
    own.write_text(text.replace("in_channels: 1", "in_channels: 3"))
    code, _, err = run(capsys, *argv, "--set", f"space={own}")
    assert code == 2 and f"set num_classes: 3 in the space file '{own}'" in err


# -- exports, predict and --arch ------------------------------------------------------
@pytest.fixture(scope="module")
def export_dir(readme_run) -> Path:
    return readme_run / "models" / "mine"


def test_export_readme_code_loads_each_format_and_predicts(export_dir, tmp_path):
    """The export README's Python, run as shown (load, one format, top classes)."""
    import shutil

    blocks = fenced((export_dir / "README.md").read_text(), "python")
    load, *formats, top = blocks
    image = export_dir.parents[1] / "my_images" / "test" / "fox" / "0001.png"
    shutil.copy(image, export_dir / "image.png")
    for fmt in formats:
        if "onnxruntime" in fmt:
            continue  # onnxruntime is not a dependency here
        program = "\n".join([load, fmt, top])
        proc = subprocess.run(
            [sys.executable, "-c", program],
            cwd=export_dir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split()[0] == "fox"


def test_predict_matches_the_model_on_the_recorded_preprocessing(export_dir, capsys):
    from samplenas.data.datasets import read_image

    images = [str(export_dir.parents[1] / "my_images" / "test" / c / "0002.png") for c in COLORS]
    code, out, _ = run(
        capsys, "predict", "--model", str(export_dir), *images, "--json", "--top", "2"
    )
    rows = json.loads(out)
    assert code == 0 and [len(r["top"]) for r in rows] == [2, 2, 2]
    assert [r["top"][0]["class"] for r in rows] == list(COLORS)
    meta = json.loads((export_dir / "arch.json").read_text())
    # the same tensor the training data was decoded to (resize, scale, mean/std)
    raw = torch.tensor(read_image(Path(images[0]), 32, False)).float()[None] / 255
    x = (raw - torch.tensor(meta["mean"]).view(1, -1, 1, 1)) / torch.tensor(meta["std"]).view(
        1, -1, 1, 1
    )
    model = torch.export.load(str(export_dir / "model.pt2")).module()
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)[0]
    assert rows[0]["top"][0]["probability"] == pytest.approx(float(p.max()), abs=1e-4)
    code, out, _ = run(capsys, "predict", "--model", str(export_dir), images[1])
    assert code == 0 and out.startswith(f"{images[1]}: dog ")


def test_predict_refuses_a_non_export_and_an_unreadable_image(export_dir, tmp_path, capsys):
    code, _, err = run(capsys, "predict", "--model", str(tmp_path), "x.png")
    assert code == 2 and "not an export folder" in err
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    code, _, err = run(capsys, "predict", "--model", str(export_dir), str(bad))
    assert code == 2 and f"cannot read image '{bad}'" in err


def test_builtin_datasets_have_their_class_names():
    from samplenas.data.datasets import load_digits_dataset
    from samplenas.data.preprocess import class_names

    assert class_names(load_digits_dataset(300, 0)) == [str(i) for i in range(10)]
    from samplenas.data.datasets import FASHION_CLASSES

    assert FASHION_CLASSES[0] == "T-shirt/top" and FASHION_CLASSES[9] == "Ankle boot"


def test_arch_is_named_alike_in_eval_export_and_cost(readme_run, export_dir, capsys):
    run_dir = str(readme_run / "runs" / "mine")
    meta = json.loads((export_dir / "arch.json").read_text())
    pareto = json.loads((readme_run / "runs" / "mine" / "search" / "pareto.json").read_text())
    assert meta["arch"] == pareto["front"][0]["arch"]
    inline = json.dumps(meta["arch"])
    costs = []
    for arch in ("0", str(export_dir / "arch.json"), inline):
        code, out, err = run(capsys, "cost", "--run", run_dir, "--arch", arch, "--json")
        assert code == 0, err
        costs.append(json.loads(out)["mflops"])
    assert costs == [pytest.approx(meta["mflops"])] * 3
    code, out, _ = run(capsys, "eval", "--run", run_dir, "--arch", str(export_dir / "arch.json"))
    assert code == 0 and f"{meta['mflops']:.2f} MFLOPs" in out
    code, _, err = run(capsys, "eval", "--run", run_dir, "--arch", "biggest")
    assert code == 2 and "--arch 'biggest' is not a Pareto id of the run's search" in err
    code, _, err = run(capsys, "export", "--run", run_dir, "--arch", "no.json", "--out", "x")
    assert code == 2 and "cannot read architecture file 'no.json'" in err
    code, _, err = run(capsys, "cost", "--space", "tiny", "--arch", "0")
    assert code == 2 and "pass --run-dir DIR" in err


def test_an_arch_json_of_another_space_is_refused(tmp_path):
    from samplenas.commands.common import resolve_arch
    from samplenas.space import load_space

    space = load_space("tiny")
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"space": "attentive", "arch": space.largest().to_json()}))
    with pytest.raises(UserError, match="of space 'attentive', not of 'tiny'"):
        resolve_arch(str(path), space)
    path.write_text(json.dumps({"space": "tiny", "arch": space.smallest().to_json()}))
    assert resolve_arch(str(path), space) == space.smallest()


def test_a_long_inline_arch_json_is_json_not_a_file_name():
    """Inline JSON longer than a file name may be (255 bytes) once failed with 'File name
    too long' (checked as a path first); a long bogus name is a UserError, not OSError."""
    from samplenas.commands.common import resolve_arch
    from samplenas.space import load_space

    space = load_space("attentive")
    text = json.dumps(space.largest().to_json(), indent=4)
    assert len(text) > 255
    assert resolve_arch(text, space) == space.largest()
    with pytest.raises(UserError, match="is not"):
        resolve_arch("x" * 400, space)


# -- the run talks ----------------------------------------------------------------------
def test_spaces_describes_a_space_file(readme_run, capsys):
    code, out, _ = run(capsys, "spaces", str(readme_run / "my_nas" / "space.yaml"))
    assert code == 0 and "architectures" in out and "3 classes" in out
    assert "input 3 channel(s), resolution 24/28/32" in out and "mb4" in out
    code, out, _ = run(capsys, "spaces", str(readme_run / "my_nas" / "space.yaml"), "--json")
    info = json.loads(out)
    assert info["min_mflops"] < info["max_mflops"] and len(info["stages"]) == 4
    assert info["min_params_m"] < info["max_params_m"]


def test_train_says_what_it_does_and_one_line_per_epoch(tmp_path, capsys):
    argv = ["train", "--config", "tiny", "--out", str(tmp_path / "r"), "--no-progress"]
    code, _, err = run(capsys, *argv, "--epochs", "2")
    assert code == 0
    assert "space 'tiny': 512 architectures" in err and "1138 train / 300 val / 359 test" in err
    assert "training 34 steps (2 epochs x 17 of batch 64) on cpu" in err
    assert re.search(r"s a step over the first 10 steps: about .* for the \d+ steps left", err)
    epochs = [line for line in err.splitlines() if "samplenas: epoch " in line]
    assert len(epochs) == 2 and "epoch 2/2, step 34/34" in epochs[1]
    assert "val top-1 largest" in epochs[1]


def test_ctrl_c_prints_the_command_that_resumes(tmp_path, capsys, monkeypatch):
    from samplenas.train import trainer as trainer_module

    real = trainer_module.Trainer.train_step
    stop_at = {"step": 7}

    def interrupted(self, x, y):
        if self.step == stop_at["step"]:
            raise KeyboardInterrupt
        return real(self, x, y)

    monkeypatch.setattr(trainer_module.Trainer, "train_step", interrupted)
    out = tmp_path / "my run"
    argv = ["train", "--config", "tiny", "--out", str(out), "--no-progress"]
    code, _, err = run(capsys, *argv)
    assert code == 130
    assert "interrupted at step 7; the checkpoint of step 5 is kept; continue with: " in err
    assert f"samplenas train --resume '{out}'" in err
    stop_at["step"] = 2
    code, _, err = run(capsys, *argv[:3], "--out", str(tmp_path / "early"), "--no-progress")
    assert code == 130 and "nothing to resume" in err and "--resume" not in err


def test_divergence_before_the_first_checkpoint_says_nothing_to_resume(tmp_path, capsys):
    argv = ["train", "--config", "tiny", "--out", str(tmp_path / "r"), "--no-progress"]
    code, _, err = run(capsys, *argv, "--set", "train.lr=1.0e+30", "--set", "train.grad_clip=0")
    assert code == 1 and "training diverged" in err
    assert "before its first checkpoint, so there is nothing to resume" in err
    argv[4] = str(tmp_path / "r2")
    code, _, err = run(
        capsys,
        *argv,
        "--set",
        "train.lr=1.0e+30",
        "--set",
        "train.grad_clip=0",
        "--set",
        "checkpoint.every_steps=1",
    )
    assert code == 1 and "the last good checkpoint (step 1) is kept" in err
    assert "start a new run with another --out" in err


def test_search_progress_shows_the_best_so_far(monkeypatch):
    from samplenas.search.archive import Archive
    from samplenas.search.runner import SearchConfig, run_evolution
    from samplenas.space import load_space

    space = load_space("tiny")
    scores = iter([50.0, 80.0, 10.0, 20.0])
    shown = []

    class Bar:
        def __init__(self, *a, **k):
            pass

        def set_postfix_str(self, text, refresh=True):
            shown.append(text)

        def update(self, n):
            pass

        def close(self):
            pass

    monkeypatch.setattr("samplenas.search.runner.tqdm", Bar)
    evaluate = lambda a: {"top1": next(scores), "loss": 1.0}  # noqa: E731
    run_evolution(space, evaluate, SearchConfig(4, 0, 0, 0), Archive(None))
    assert [s.split("%")[0] for s in shown] == ["best so far 50.00", *["best so far 80.00"] * 3]


@pytest.mark.parametrize("streaming", [False, True])
def test_recorded_preprocessing_reproduces_the_evaluation_tensors(tmp_path, streaming):
    """What predict feeds a model equals what eval fed it, in memory and streamed."""
    from samplenas.data import load_dataset, make_loader
    from samplenas.data.preprocess import class_names, prepare_image, preprocessing

    root = image_folder(tmp_path / "imgs", per_class=4)
    data = load_dataset("folder", str(root), 2, 0, 24, streaming=streaming, workers=0)
    rule = preprocessing(data)
    assert rule["resize"] == ("center-crop" if streaming else "squash")
    assert rule["size"] == [24, 24] and rule["channels"] == 3 and rule["color"] == "RGB"
    assert class_names(data) == list(COLORS)
    loader = make_loader(data, "test", 100, shuffle=False, augment=False, drop_last=False)
    x, _ = next(iter(loader.epoch(0)))
    paths = (
        data.test.paths
        if streaming
        else sorted((root / "test").glob("*/*.png"), key=lambda p: (p.parent.name, p.name))
    )
    expected = torch.stack([torch.from_numpy(prepare_image(p, rule)) for p in paths])
    assert torch.allclose(x, expected, atol=1e-5)
