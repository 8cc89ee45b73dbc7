"""Which class name is positive: one check for CSV labels and class folders.

``--positive NAME`` must be one of the names the data holds, exactly. A name
that differs only in case (``Defect`` vs ``defect``), or two classes that do,
is an error that lists the near match: silently reading ``Defect`` as negative
would change the labels without a word.
"""

from __future__ import annotations

import difflib
from collections import Counter
from typing import Iterable

from ..errors import DataError

__all__ = ["check_positive"]


def _listing(counts: Counter, what: str, limit: int = 12) -> str:
    """``classes: a, b`` (folders) or ``labels: 0 (30 rows), 1 (12 rows)`` (manifests)."""
    items = sorted(counts.items())
    if what == "label":
        shown = ", ".join(f"{name} ({n} rows)" for name, n in items[:limit])
    else:
        shown = ", ".join(name for name, _ in items[:limit])
    more = f", and {len(items) - limit} more" if len(items) > limit else ""
    return f"{'labels' if what == 'label' else 'classes'}: {shown}{more}"


def check_positive(names: Iterable[str], positive: str, *, where: str, what: str = "label") -> None:
    """Refuse a ``positive`` that is not exactly one of ``names`` (case clashes listed).

    Parameters
    ----------
    names
        Every class name in the data (one per image, or one per folder).
    positive
        The name given with ``--positive``.
    where
        The manifest or folder, for the message.
    what
        ``"label"`` or ``"class folder"``.

    Raises
    ------
    DataError
        ``positive`` absent (with the names present, the case-insensitive near
        match if any, and a hint for 0/1 labels), or present next to a name that
        differs from it only in case.
    """
    counts = Counter(names)
    fold = positive.casefold()
    near = sorted(n for n in counts if n.casefold() == fold and n != positive)
    if positive not in counts:
        if near:
            raise DataError(
                f"--positive {positive!r} is not a {what} of {where}; did you mean {near[0]!r}? "
                f"Class names are case-sensitive; {_listing(counts, what)}"
            )
        binary = {n.strip().lower() for n in counts} <= {"0", "1", "true", "false", "yes", "no", "positive",
                                                          "negative", "pos", "neg", "y", "n", "t", "f"}
        hint = " These are binary labels: leave out --positive (1/true/positive is the positive class)." if binary else ""
        # any near miss ('defects' for 'defect', 'Defects' too): compared case-folded, shown as spelt
        by_fold = {str(n).casefold(): str(n) for n in counts}
        close = difflib.get_close_matches(fold, list(by_fold), n=1, cutoff=0.75)
        mean = f" Did you mean {by_fold[close[0]]!r}?" if close else ""
        raise DataError(f"--positive {positive!r} is not a {what} of {where}; {_listing(counts, what)}.{mean}{hint}")
    if near:
        raise DataError(
            f"{where} has {what}s {positive!r} and {', '.join(repr(n) for n in near)} that differ only in case; "
            f"with --positive {positive!r} the others would silently count as negative. Spell the class one way "
            f"({_listing(counts, what)})"
        )
