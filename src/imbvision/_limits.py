"""Ranges of the settings that size memory or seed random generators, checked before any work.

NumPy and scikit-learn take seeds in ``0..2**32 - 1``; the splits also use
``seed + 1``, hence the upper bound ``2**32 - 2``. Sizes are bounded so that no
option (or value in a saved file) can make a command allocate gigabytes.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError

__all__ = ["SEED_MAX", "RANGES", "check_range"]

SEED_MAX = 2**32 - 2

#: option name → (lowest, highest) valid integer.
RANGES: dict[str, tuple[int, int]] = {
    "seed": (0, SEED_MAX), "image_size": (32, 1024), "batch_size": (2, 4096), "workers": (0, 64),
    "devices": (1, 1024), "max_synthetic": (0, 100_000), "n_boot": (0, 1_000_000), "patience": (0, 10_000),
    "epochs": (1, 100_000), "k": (1, 1000),
}


def check_range(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` when it is an integer in ``lo..hi`` (default: ``RANGES[name]``).

    Raises
    ------
    ConfigError
        Naming the option (``--name``), the value and the valid range.
    """
    if lo is None or hi is None:
        lo, hi = RANGES[name]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"--{name.replace('_', '-')} {value!r} invalid; use an integer in {lo}..{hi}")
    return value
