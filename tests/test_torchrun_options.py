"""Every samplenas command line works as written after ``torchrun ... -m samplenas.cli``.

torchrun parses the whole command line with its own argparse parser before samplenas
sees it, and argparse accepts any unambiguous prefix of an option (``allow_abbrev``).
So, for every option string S of every samplenas sub-command and every option string T
of torchrun (``torch.distributed.run.get_args_parser()``), this checks:

- S == T, or S is a prefix of T: torchrun reads S as (an abbreviation of) its own T.
  With one such T, argparse may take it silently; with two (``--run`` of ``--run-path``
  and ``--run_path``) torchrun exits with "ambiguous option" and samplenas never runs.
- T is a prefix of S: a torchrun option put after the script by mistake (``--nnodes``
  after ``samplenas.cli``) would reach samplenas, whose parser would take it as an
  abbreviation of S instead of saying it is unknown.

The exceptions are -h/--help, which every argparse parser has (a help request after the
script goes to samplenas, checked below), and the older spellings kept for
single-process use (``common.SINGLE_PROCESS_ALIASES``), each of which has a safe spelling
on the same option. Abbreviations a user types of samplenas options are not covered:
under torchrun, options are to be spelled in full (README).
"""

from __future__ import annotations

import argparse

import pytest
from torch.distributed.run import get_args_parser

from samplenas.cli import build_parser
from samplenas.commands.common import SINGLE_PROCESS_ALIASES

TORCHRUN = {s for a in get_args_parser()._actions for s in a.option_strings}
HELP = {"-h", "--help"}


def samplenas_options() -> list[tuple[str, argparse.Action]]:
    """(sub-command path, action) of every option of every (nested) sub-command."""
    out: list[tuple[str, argparse.Action]] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}".strip())
            elif action.option_strings:
                out.append((path, action))

    walk(build_parser(), "")
    return out


def clashes(option: str) -> list[str]:
    return sorted(t for t in TORCHRUN if t.startswith(option) or option.startswith(t))


def test_no_samplenas_option_is_or_abbreviates_a_torchrun_option_or_the_reverse():
    found = {
        f"{path} {s}": clashes(s)
        for path, action in samplenas_options()
        for s in action.option_strings
        if s not in HELP and s not in SINGLE_PROCESS_ALIASES and clashes(s)
    }
    assert found == {}


def test_every_single_process_alias_has_a_spelling_torchrun_leaves_alone():
    aliased = [
        (path, action)
        for path, action in samplenas_options()
        if set(action.option_strings) & set(SINGLE_PROCESS_ALIASES)
    ]
    assert {s for _, a in aliased for s in a.option_strings} >= set(SINGLE_PROCESS_ALIASES)
    for path, action in aliased:
        safe = [s for s in action.option_strings if not clashes(s)]
        assert safe, f"{path}: {action.option_strings} has no torchrun-safe spelling"
        assert "torchrun" in action.help, f"{path} {safe[0]}: help must say why"
    assert clashes("--run") and clashes("--n")  # why they are aliases only


def test_the_checked_names_are_torchruns_real_ones():
    assert {"--run-path", "--nnodes", "--nproc-per-node", "--nproc_per_node"} <= TORCHRUN


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--run-dir", "R", "--population", "16", "--iterations", "1", "--json"],
        ["predictor", "fit", "--run-dir", "R", "--num-archs", "8", "--no-progress"],
        ["eval", "--run-dir", "R", "--arch", "0", "--arch", "largest", "--split", "test"],
        ["search", "--help"],
    ],
)
def test_torchrun_hands_samplenas_its_command_line_untouched(argv):
    launch = ["--nnodes", "1", "--nproc_per_node", "2", "-m", "samplenas.cli"]
    parsed = get_args_parser().parse_args([*launch, *argv])
    assert parsed.training_script == "samplenas.cli" and parsed.module
    assert parsed.training_script_args == argv
    assert parsed.nproc_per_node == "2"


def test_under_torchrun_run_is_refused_by_torchrun_itself(capsys):
    """What the --run-dir spelling is for (the issue's report)."""
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["-m", "samplenas.cli", "search", "--run", "R"])
    assert "ambiguous option: --run" in capsys.readouterr().err
