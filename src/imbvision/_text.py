"""Small text helpers shared by the terminal and the reports."""

from __future__ import annotations

__all__ = ["plural"]


def plural(n: object, word: str, many: str | None = None) -> str:
    """``1 paired split`` / ``3 paired splits``: the count with the noun that agrees with it.

    ``many`` is the plural when it is not ``word + "s"`` (``plural(2, "strategy", "strategies")``).
    """
    many = many or word + "s"
    try:
        one = int(n) == 1
    except (TypeError, ValueError):  # an unknown count ("?") reads as plural
        one = False
    return f"{n} {word if one else many}"
