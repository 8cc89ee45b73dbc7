"""What a split realised against the request: share of the images and prevalence of every part.

A split that keeps duplicate sets or groups whole can drift from the requested
fractions; :func:`split_balance` measures every part, and :func:`balance_message`
is the one-line warning shown (and kept in the report) when a part moves by more
than :data:`SPLIT_TOLERANCE`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SPLIT_TOLERANCE", "SplitBalanceWarning", "split_balance", "balance_message"]

#: Largest move (in points of a fraction, 0.05 = 5 points) of a part's share of the images,
#: or of the validation/test prevalence from the data's, that a split may make silently.
SPLIT_TOLERANCE = 0.05


class SplitBalanceWarning(UserWarning):
    """A split's realised fractions or prevalence differ from the request by more than :data:`SPLIT_TOLERANCE`."""


def split_balance(split: Any, y: np.ndarray, *, val: float, test: float,
                  tolerance: float = SPLIT_TOLERANCE) -> dict:
    """What a split realised against the request: images, share, positives and prevalence per part.

    Parameters
    ----------
    split
        The split (before any ``--train-positive-rate`` drop, which is deliberate).
    y
        ``(N,)`` 0/1 labels of the dataset.
    val, test
        The requested fractions (with a fixed test set: the test share is the given one).
    tolerance
        Largest move of a share, or of the validation/test prevalence from the data's, in points of a
        fraction; one image's worth (1/N of a share, 1/n of a part's prevalence) is allowed on top,
        since counts are whole.

    Returns
    -------
    dict
        ``requested`` (share per part), ``parts`` (``images``, ``fraction``, ``positives``,
        ``prevalence`` per part), ``prevalence`` (of all split images), ``tolerance``,
        ``off`` (one phrase per departure beyond the tolerance, empty when none) and ``notes``.
    """
    y = np.asarray(y)
    n = len(split.train) + len(split.val) + len(split.test)
    allidx = np.concatenate([split.train, split.val, split.test]).astype(np.int64)
    prev = float(y[allidx].mean()) if n else float("nan")
    if split.fixed_test:
        test = len(split.test) / n if n else test
    requested = {"train": 1 - val - test, "val": val, "test": test}
    parts, off = {}, []
    for name in ("train", "val", "test"):
        idx = getattr(split, name)
        npos = int(y[idx].sum()) if len(idx) else 0
        parts[name] = {"images": int(len(idx)), "fraction": len(idx) / n if n else float("nan"), "positives": npos,
                       "prevalence": npos / len(idx) if len(idx) else float("nan")}
        if abs(parts[name]["fraction"] - requested[name]) > tolerance + 1 / max(n, 1) + 1e-12:  # + one image
            off.append(f"{name} {parts[name]['fraction']:.1%} of the images (asked {requested[name]:.0%})")
    for name in ("val", "test"):
        q = parts[name]["prevalence"]
        if split.fixed_test and name == "test":
            continue  # given, not drawn
        if parts[name]["images"] and abs(q - prev) > tolerance + 1 / parts[name]["images"] + 1e-12:
            off.append(f"{name} prevalence {q:.1%} (data {prev:.1%})")
    return {"requested": requested, "parts": parts, "prevalence": prev, "tolerance": tolerance, "off": off,
            "notes": list(split.notes)}


def balance_message(balance: dict, *, seed: int | None = None) -> str | None:
    """One line saying how a split departs from the request (``None`` when it does not)."""
    if not balance["off"]:
        return None
    tol = balance["tolerance"]
    where = f"the split of seed {seed}" if seed is not None else "the split"
    why = f": {balance['notes'][-1]}" if balance["notes"] else " (duplicate sets or groups kept whole)"
    return (f"{where} differs from the request by more than {tol * 100:g} points -- "
            + "; ".join(balance["off"]) + why)
