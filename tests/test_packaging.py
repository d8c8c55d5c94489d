"""The built wheel, installed into a fresh virtualenv away from the source tree, carries
everything it needs: its recipes, its console script."""

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
    wheels, venv, elsewhere = tmp_path / "wheels", tmp_path / "venv", tmp_path / "cwd"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PIP_NO_INDEX"] = "1"  # offline: nothing is fetched
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), "."], src, env)
    (wheel,) = wheels.glob("samplenas-*.whl")
    # a fresh virtualenv holding nothing but the wheel, which pip installs with its script
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], tmp_path, env)
    # then the dependencies (torch, numpy, ...) of this interpreter, added after the install
    # so that pip never saw the checkout's editable samplenas; its .pth is not read from here
    (site,) = venv.glob("lib/python*/site-packages")
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "deps.pth").write_text("\n".join(deps) + "\n")
    where, names = _run([str(python), "-c", LOAD_RECIPES], elsewhere, env).splitlines()
    assert Path(where).is_relative_to(site)
    assert names.split() == [
        "attentivenas-imagenet",
        "demo",
        "fashion",
        "fpnas-fashion",
        "fpnas-tiny",
        "retrain-fashion",
        "tiny",
    ]
    out = _run([str(venv / "bin" / "samplenas"), "demo", "--help"], elsewhere, env)
    assert "usage: samplenas demo" in out
