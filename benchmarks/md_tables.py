"""Keep BENCHMARKS.md's tables equal to the JSON they come from.

A table a script owns sits between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->``;
the script's ``--report`` rebuilds it from committed JSON and writes it back, so a table
cannot drift from its numbers by hand edits.
"""

from __future__ import annotations

import re
from pathlib import Path

from samplenas.io import atomic_write_text

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def _block(name: str, text: str, path: Path) -> re.Pattern[str]:
    begin, end = f"<!-- table:{name} -->", f"<!-- /table:{name} -->"
    pattern = re.compile(re.escape(begin) + r"\n(.*?)" + re.escape(end), re.S)
    if len(pattern.findall(text)) != 1:
        raise SystemExit(f"{path} needs exactly one '{begin}' ... '{end}' block")
    return pattern


def read_table(name: str, path: Path = BENCHMARKS_MD) -> str:
    """The text between NAME's markers in ``path`` (what ``replace_table`` last wrote)."""
    text = path.read_text()
    return _block(name, text, path).search(text).group(1).rstrip()  # type: ignore[union-attr]


def replace_table(name: str, table: str, path: Path = BENCHMARKS_MD) -> bool:
    """Put ``table`` between NAME's markers in ``path``; True when the file changed."""
    text = path.read_text()
    pattern = _block(name, text, path)
    begin, end = f"<!-- table:{name} -->", f"<!-- /table:{name} -->"
    new = pattern.sub(lambda _: f"{begin}\n{table.rstrip()}\n{end}", text)
    if new != text:
        atomic_write_text(path, new)
    return new != text


def sig(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant figures with thousands separators (256,000)."""
    return f"{float(f'{x:.{digits}g}'):,.0f}" if abs(x) >= 10 ** (digits - 1) else f"{x:.{digits}g}"


def sci(x: float) -> str:
    """3.0×10^9: the form BENCHMARKS.md uses for very large counts."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}×10^{int(exponent)}"
