"""Every CSV file imbvision writes goes through :func:`write_csv` / :func:`csv_text`.

Cells that a spreadsheet would run as a formula -- text starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return, e.g. a file named
``=HYPERLINK(...).png`` -- are prefixed with a single quote, as OWASP's
"CSV injection" guidance recommends. Plain numbers (``-0.014``, ``+3``,
``1e-5``) are left alone: a spreadsheet reads them as numbers, not formulas.
The quote is also added in front of text that already starts with quotes
followed by such a character, so :func:`unneutralize` restores every value
exactly (imbvision's own readers use it on the files it wrote).

Written by hand: the standard ``csv`` module has no such option and the rule
is three lines.
"""

from __future__ import annotations

import csv
import io
import os
import re
from typing import Any, Iterable, Sequence

__all__ = ["FORMULA_PREFIXES", "neutralize", "unneutralize", "csv_text", "write_csv"]

#: First characters that make a spreadsheet evaluate a cell (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _needs_quote(text: str) -> bool:
    rest = text.lstrip("'")
    return bool(rest) and rest[0] in FORMULA_PREFIXES and not (rest == text and _NUMBER.match(text))


def neutralize(value: Any) -> Any:
    """``value`` with a leading ``'`` when a spreadsheet would run it as a formula; other values unchanged."""
    if isinstance(value, str) and _needs_quote(value):
        return "'" + value
    return value


def unneutralize(text: str) -> str:
    """Undo :func:`neutralize` on a cell read back from a CSV imbvision wrote."""
    if text.startswith("'") and _needs_quote(text[1:]):
        return text[1:]
    return text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The CSV text of ``header`` and ``rows`` with every cell neutralised (``\\n`` line ends)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([neutralize(h) for h in header])
    for row in rows:
        w.writerow([neutralize(v) for v in row])
    return buf.getvalue()


def write_csv(path: str | os.PathLike[str], header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV file atomically (temporary name, then rename) with every cell neutralised."""
    from ._io import atomic_write

    text = csv_text(header, rows)
    with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
