"""The built wheel, installed away from the source tree, carries everything it needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent

# run by the installed copy: where it was imported from, and every shipped recipe loaded
LOAD_RECIPES = """
import samplenas
from samplenas.train.config import load_config, recipe_names
print(samplenas.__file__)
for name in recipe_names():
    load_config(name)
print(" ".join(recipe_names()))
"""


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_wheel_installed_outside_the_checkout_runs_demo_help_and_loads_recipes(tmp_path):
    # build from a copy, so the checkout gets no build/ folder
    src = tmp_path / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "installed", tmp_path / "cwd"
    elsewhere.mkdir()
    env = {**os.environ, "PIP_NO_INDEX": "1"}  # offline: nothing is fetched
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), "."], src, env)
    (wheel,) = wheels.glob("samplenas-*.whl")
    _run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], tmp_path, env)
    # only the installed copy on the path (not src/), run from a folder outside any checkout
    env["PYTHONPATH"] = str(target)
    where, names = _run([sys.executable, "-c", LOAD_RECIPES], elsewhere, env).splitlines()
    assert Path(where).is_relative_to(target)
    assert names.split() == ["attentivenas-imagenet", "demo", "fashion", "tiny"]
    out = _run([str(target / "bin" / "samplenas"), "demo", "--help"], elsewhere, env)
    assert "usage: samplenas demo" in out
