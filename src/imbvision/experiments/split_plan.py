"""The splits of a comparison: one per seed (and fold), what each realised, and what is said about them.

With a given test set (``--split-file``, ``--split official``) every seed keeps
it and redraws only train/validation; :data:`FIXED_TEST_REPLICATION` is what the
intervals then cover, said in ``leaderboard.json``, the report and the terminal.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["plan_splits", "say_splits", "split_rows", "fixed_test_of", "FIXED_TEST_REPLICATION"]


def fixed_test_of(c: Any, ds: Any, bad: list) -> tuple[np.ndarray | None, list[str]]:
    """The given test set of a comparison (``None``: drawn per seed) and its remarks; refuses ``--folds`` with one."""
    from ..data.split_file import given_test
    from ..errors import ConfigError

    fixed, notes = given_test(ds, split_file=c.split_file, split=c.split, skipped=tuple(p for p, _ in bad))
    if fixed is not None and c.folds:
        raise ConfigError("--folds draws every test part itself, but --split-file / --split official fix the test "
                          "set; drop --folds (each seed then redraws train/val around the fixed test set)")
    return fixed, notes


def plan_splits(ds, seeds: int, folds: int | None, val: float, test: float, rate: float | None,
            fixed_test: np.ndarray | None = None, balances: list | None = None):
    """``(seed, fold, Split)`` of every cell; ``balances`` (if given) receives each split's
    :func:`~imbvision.data.splits.split_balance` (before any positive drop), in the same order."""
    from ..data.splits import kfold_splits, split_balance, train_val_test_split
    from ..training.prepare import limit_train_positives

    out = []
    for s in range(seeds):
        if folds:
            for f, sp in enumerate(kfold_splits(ds, folds, seed=s, val=val)):
                out.append((s, f, sp))
        else:
            out.append((s, None, train_val_test_split(ds, val=val, test=test, seed=s, fixed_test=fixed_test)))
    if balances is not None:
        balances.extend({"seed": s, "fold": f, **split_balance(sp, ds.labels, val=val, test=1 / folds if folds else test)}
                        for s, f, sp in out)
    if rate is not None:
        out = [(s, f, limit_train_positives(sp, ds.labels, rate, s)) for s, f, sp in out]
        for b, (_, _, sp) in zip(balances or [], out):
            b["train_after_positive_rate"] = {"images": int(len(sp.train)), "positives": int(ds.labels[sp.train].sum())}
    return out


def say_splits(splits, balances: list, notes: list[str], progress: bool) -> None:
    """One line per kind of remark over all splits: the given test set, sets kept in train, positives dropped,
    and one :class:`~imbvision.data.splits.SplitBalanceWarning` naming the splits that depart from the request."""
    from ..data.checks import say
    from ..data.splits import SplitBalanceWarning, balance_message
    from ..notices import add_report_note

    lines = list(notes)
    first = splits[0][2].notes if splits else ()
    lines += [n for n in first if not n.startswith("--train-positive-rate")]
    dropped = [sp.notes[-1] for _, _, sp in splits if sp.notes and sp.notes[-1].startswith("--train-positive-rate")]
    if dropped:
        lines.append(dropped[0] + (f" (seed {splits[0][0]}; {len(dropped)} splits, counts per split in "
                                   "leaderboard.json)" if len(dropped) > 1 else ""))
    for line in dict.fromkeys(lines):
        add_report_note(line)
        if progress:
            say(line)
    off = [b for b in balances if b["off"]]
    if off:
        msg = balance_message(off[0], seed=off[0]["seed"])
        if len(off) > 1:
            msg += f" (and {len(off) - 1} more of the {len(balances)} splits: see leaderboard.json 'splits')"
        warnings.warn(msg, SplitBalanceWarning, stacklevel=2)


#: What the intervals cover when every seed shares one given test set (--split-file, --split official).
FIXED_TEST_REPLICATION = (
    "The test set is given and the same in every split: each seed redraws only train/validation around it. "
    "The intervals and p-values therefore cover the variation from redrawing train/validation and from "
    "training, not the sampling of the test images: they say how the remedies compare on this test set, "
    "not on another test set drawn from the same source (a larger given test set narrows that gap).")


def split_rows(balances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's table of what every split realised against the request."""
    rows = []
    for b in balances:
        p, rq = b["parts"], b["requested"]
        rows.append({"split": f"seed {b['seed']}" + (f" fold {b['fold']}" if b.get("fold") is not None else ""),
                     **{f"{k} (asked {rq[k]:.0%})": f"{p[k]['fraction']:.1%}" for k in ("train", "val", "test")},
                     "val prevalence": f"{p['val']['prevalence']:.1%}", "test prevalence": f"{p['test']['prevalence']:.1%}",
                     "test positives": p["test"]["positives"], "within tolerance": "no" if b["off"] else "yes"})
    return rows
