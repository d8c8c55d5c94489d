"""The CLI: JSON shapes, and every bad input exits 2 with one sentence and no traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from samplenas.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_spaces_json(capsys):
    code, out, _ = run(capsys, "spaces", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["attentive"]["size"] == 440_301_256_704
    assert round(rows["attentive"]["min_mflops"]) == 203
    assert round(rows["attentive"]["max_mflops"]) == 1939


def test_cost_json(capsys, tmp_path):
    arch = {
        "resolution": 192,
        "width": [16, 16, 24, 32, 64, 112, 192, 216, 1792],
        "depth": [1, 3, 3, 3, 3, 3, 1],
        "kernel_size": [3] * 7,
        "expand_ratio": [1, 4, 4, 4, 4, 6, 6],
    }
    path = tmp_path / "a.json"
    path.write_text(json.dumps(arch))
    code, out, _ = run(capsys, "cost", "--space", "attentive", "--arch", str(path), "--json")
    assert code == 0
    result = json.loads(out)
    assert round(result["mflops"]) == 203 and result["params_m"] > 0
    code, out2, _ = run(
        capsys, "cost", "--space", "attentive", "--arch", json.dumps(arch), "--json"
    )
    assert json.loads(out2) == result


def test_sample_json_with_and_without_target(capsys):
    code, out, _ = run(capsys, "sample", "--space", "tiny", "-n", "3", "--json")
    data = json.loads(out)
    assert code == 0 and len(data["archs"]) == 3 and data["mean_trials"] is None
    assert set(data["archs"][0]) >= {"arch", "mflops", "params_m"}
    code, out, _ = run(
        capsys,
        "sample",
        "--space",
        "attentive-fashion",
        "-n",
        "4",
        "--target-mflops",
        "12",
        "--json",
        "--seed",
        "1",
    )
    data = json.loads(out)
    assert code == 0 and data["mean_trials"] >= 1
    assert all(abs(a["mflops"] - 12) <= 0.25 + 1e-9 for a in data["archs"])


SMALL = json.dumps(
    {
        "resolution": 192,
        "width": [16, 16, 24, 32, 64, 112, 192, 216, 1792],
        "depth": [1, 3, 3],
        "kernel_size": [3] * 7,
        "expand_ratio": [1, 4, 4, 4, 4, 6, 6],
    }
)
BAD_VALUE = SMALL.replace('"depth": [1, 3, 3]', '"depth": [1, 3, 3, 3, 3, 3, 9]')


@pytest.mark.parametrize(
    "argv, message",
    [
        (["spaces", "--bogus"], "unrecognized arguments"),
        (["cost", "--space", "nope", "--arch", "{}"], "unknown space 'nope'"),
        (["cost", "--space", "attentive", "--arch", SMALL], "'depth' must be a list of 7 integers"),
        (["cost", "--space", "attentive", "--arch", BAD_VALUE], "depth[6]=9 (mb7) is not one of"),
        (
            ["cost", "--space", "attentive", "--arch", "/no/such/file.json"],
            "cannot read architecture file",
        ),
        (["cost", "--space", "attentive", "--arch", "{not json"], "not valid JSON"),
        (["sample", "--space", "attentive", "--target-mflops", "99"], "outside this space's range"),
        (["sample", "--space", "attentive", "-n", "0"], "-n: must be a positive integer, not '0'"),
        # counts are checked before any run is opened: 0 must not quietly mean "the default"
        (["eval", "--run", "r", "--calib-batches", "0"], "--calib-batches: must be a positive"),
        (["search", "--run", "r", "--val-images", "0"], "--val-images: must be a positive"),
        (["search", "--run", "r", "--population", "0"], "--population: must be a positive"),
        (["search", "--run", "r", "--mutations", "-1"], "--mutations: must be an integer >= 0"),
        (["search", "--run", "r", "--budget", "ten"], "--budget: must be a positive integer"),
        (["demo", "--population", "0"], "--population: must be a positive integer"),
        (["bench", "--benchmark", "b", "--runs", "0"], "--runs: must be a positive integer"),
        (["train", "--config", "c", "--epochs", "0"], "--epochs: must be a positive integer"),
        (["predictor", "fit", "--run", "r", "--calib-batches", "-2"], "must be a positive"),
        (["export", "--run", "r", "--arch", "1", "--out", "o", "--calib-batches", "0"], "positive"),
    ],
)
def test_bad_input_exits_2_with_one_sentence(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        sys.exit(main(argv))
    _, err = capsys.readouterr()
    assert exc.value.code == 2
    assert message in err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("samplenas: error:")


def test_an_unwritable_output_path_exits_2_naming_it(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "run"  # a folder cannot be made inside a file
    assert main(["train", "--config", "tiny", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"cannot use '{out}'" in err


def console_script() -> str:
    """The ``samplenas`` entry point pip installed next to this interpreter (or on PATH)."""
    beside = Path(sys.executable).with_name("samplenas")
    found = str(beside) if beside.is_file() else shutil.which("samplenas")
    assert found, "the samplenas console script is not installed (pip install -e .)"
    return found


def test_console_script_is_installed():
    script = console_script()
    proc = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: samplenas")
    for command in ("train", "search", "export", "predictor", "bench", "demo"):
        assert command in proc.stdout
    proc = subprocess.run(
        [script, "cost", "--space", "nope", "--arch", "{}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "unknown space" in proc.stderr
    assert "Traceback" not in proc.stderr
