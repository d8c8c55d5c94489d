"""The ``samplenas`` command: one sub-command per job, ``--json`` wherever it prints results.

Each sub-command lives in a module under ``samplenas.commands`` exposing
``register(subparsers)``; this file only wires them and turns user errors into exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from samplenas.errors import UserError

COMMAND_MODULES = (
    "samplenas.commands.spaces",
    "samplenas.commands.init",
    "samplenas.commands.demo",
    "samplenas.commands.train",
    "samplenas.commands.retrain",
    "samplenas.commands.fpnas",
    "samplenas.commands.search",
    "samplenas.commands.export",
    "samplenas.commands.predict",
    "samplenas.commands.predictor",
    "samplenas.commands.bench",
    "samplenas.commands.latency",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence, exit 2 (argparse's convention)
        self.print_usage(sys.stderr)
        print(f"samplenas: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(prog="samplenas", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"samplenas: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the user named cannot be read or written
        if exc.filename is None:  # not about a path: a fault to show in full
            raise
        reason = exc.strerror or exc.__class__.__name__
        print(f"samplenas: error: cannot use '{exc.filename}': {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("samplenas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
