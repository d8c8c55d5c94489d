"""BENCHMARKS.md's script-owned tables equal what each script's --report builds from the
committed JSON: a hand edit or a re-run without --report fails here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import md_tables  # noqa: E402


def built(name: str) -> str:
    if name == "sampling":
        import sampling

        return sampling.report(json.loads(sampling.OUT.read_text()))
    if name.startswith("nb201"):
        import nb201_study

        summary = json.loads((nb201_study.OUT.parent / "nb201_summary.json").read_text())
        return nb201_study.report(summary)[name]
    if name.startswith("vae") and name != "vae_oneshot":
        import vae_study

        summary = json.loads((vae_study.OUT.parent / "vae_summary.json").read_text())
        return vae_study.report(summary)[name]
    if name.startswith("tabular"):
        import tabular_study

        summary = json.loads((tabular_study.OUT.parent / "tabular_summary.json").read_text())
        noise = json.loads((tabular_study.OUT / "table_noise.json").read_text())
        return tabular_study.report(summary, noise)[name]
    if name == "search_scaling":
        import search_scaling

        return search_scaling.report(search_scaling.load_results())
    if name == "bn_calibration":
        import bn_calibration

        return bn_calibration.report(json.loads(bn_calibration.OUT.read_text()))
    if name.startswith("latency"):
        import latency_study

        return latency_study.report(latency_study.load_parts())[name]
    if name == "retrain_best":
        import retrain_best

        return retrain_best.report_table()
    if name.startswith("fpnas"):
        import fpnas_study

        summary = json.loads((fpnas_study.RESULTS / "fpnas_study.json").read_text())
        return fpnas_study.tables(summary)[name]
    import attentive_study

    summary = json.loads((attentive_study.RESULTS / "attentive_study.json").read_text())
    if name == "vae_oneshot":
        return attentive_study.vae_table(summary["summary"])
    return attentive_study.markdown_table(summary["summary"])


@pytest.mark.parametrize(
    "name",
    [
        "sampling",
        "bn_calibration",
        "search_scaling",
        "attentive_study",
        "tabular",
        "tabular_curves",
        *(f"nb201{part}" for part in ("", "_curves", "_noise", "_nvsk", "_graph", "_speed")),
        *(f"latency_{part}" for part in ("build", "check", "search")),
        *(f"vae_{part}" for part in ("table4", "table4_wins", "tune", "fair", "oneshot")),
        *(
            f"fpnas_{p}"
            for p in ("sampling", "distribution", "attention", "space", "memory", "timing")
        ),
        "fpnas_ratios",
        "retrain_best",
    ],
)
def test_benchmarks_md_table_matches_its_json(name):
    assert md_tables.read_table(name) == built(name).rstrip()


def test_replace_table_rewrites_only_its_block(tmp_path):
    doc = tmp_path / "B.md"
    doc.write_text("intro\n<!-- table:t -->\nold\n<!-- /table:t -->\noutro\n")
    assert md_tables.replace_table("t", "| a |\n|---|", doc)
    assert doc.read_text() == "intro\n<!-- table:t -->\n| a |\n|---|\n<!-- /table:t -->\noutro\n"
    assert not md_tables.replace_table("t", "| a |\n|---|", doc)  # unchanged: not rewritten
    with pytest.raises(SystemExit, match="needs exactly one"):
        md_tables.replace_table("missing", "x", doc)
