"""Stratified (and group-aware) train/validation/test splits and k-fold.

Built on scikit-learn's StratifiedShuffleSplit, StratifiedKFold and
StratifiedGroupKFold. Same seed, same split.

Duplicate sets (:attr:`ImageRecord.duplicate_set`, set by
:func:`~imbvision.data.checks.link_duplicates`) never straddle two parts:
without groups, the split is drawn over *units* (a duplicate set counts as one
unit, labelled positive when any member is) and each unit's images follow it;
with groups, a duplicate set merges the groups it touches. A dataset without
duplicate sets is split exactly as before.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, StratifiedShuffleSplit

from .._csv import unneutralize, write_csv
from ..errors import ConfigError, DataError
from .records import Dataset, split_units

__all__ = ["Split", "train_val_test_split", "kfold_splits", "read_split_csv", "read_split_rows"]


@dataclass(frozen=True)
class Split:
    """Indices into a dataset for the three parts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def assignment(self, n: int) -> np.ndarray:
        out = np.full(n, "", dtype=object)
        out[self.train], out[self.val], out[self.test] = "train", "val", "test"
        return out

    def write_csv(self, path: Path, dataset: Dataset) -> Path:
        """Write ``split.csv`` (index, path, label, group, split, duplicate_set).

        ``duplicate_set`` is blank for an image with no duplicate, else the id its copies share.
        """
        part = self.assignment(len(dataset))
        rows = [[i, str(rec.path), rec.label, rec.group or "", part[i],
                 "" if rec.duplicate_set is None else rec.duplicate_set]
                for i, rec in enumerate(dataset.records) if part[i]]
        write_csv(path, ["index", "path", "label", "group", "split", "duplicate_set"], rows)
        return path


def read_split_rows(path: Path) -> dict[int, dict[str, str]]:
    """The rows of a ``split.csv`` by dataset index, cells exactly as written (formula quoting undone)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return {int(r["index"]): {k: unneutralize(v or "") for k, v in r.items()} for r in csv.DictReader(fh)}


def read_split_csv(path: Path) -> Split:
    """Read a ``split.csv`` written by :meth:`Split.write_csv`."""
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            parts[unneutralize(row["split"])].append(int(row["index"]))
    return Split(*(np.array(parts[k], dtype=np.int64) for k in ("train", "val", "test")))


def _counts(y: np.ndarray, groups: np.ndarray | None) -> str:
    npos = int(y.sum())
    text = f"{npos} positive and {len(y) - npos} negative images"
    if groups is not None:
        text += (f" in {len(set(groups.tolist()))} groups ({len(set(groups[y == 1].tolist()))} with a positive, "
                 f"{len(set(groups[y == 0].tolist()))} with a negative)")
    return text


def _split(splitter, idx: np.ndarray, y: np.ndarray, groups: np.ndarray | None, what: str, hint: str):
    """First (or every) fold of a scikit-learn splitter, its ValueErrors turned into a DataError."""
    try:
        return list(splitter.split(idx, y, groups) if groups is not None else splitter.split(idx, y))
    except ValueError as exc:
        raise DataError(f"cannot make the {what} from {_counts(y, groups)}: {exc} {hint}") from None


def _need_groups(groups: np.ndarray | None, y: np.ndarray, k: int, what: str, hint: str,
                 per_class: int | None = None) -> None:
    """At least ``k`` groups in all, and each class in at least ``per_class`` (default ``k``) groups."""
    if groups is None:
        return
    total = len(set(groups.tolist()))
    if total < k:
        raise DataError(f"the {what} needs at least {k} groups but there are {total} ({_counts(y, groups)}): "
                        f"no group may be split. {hint}")
    need = k if per_class is None else per_class
    for label, name in ((1, "positive"), (0, "negative")):
        have = len(set(groups[y == label].tolist()))
        if have < need:
            raise DataError(
                f"the {what} needs {name} images in at least {need} different groups, but they are in {have} "
                f"({_counts(y, groups)}): no group may be split. {hint}"
            )


def _check_parts(y: np.ndarray, split: Split, hint: str) -> None:
    for name in ("train", "val", "test"):
        idx = getattr(split, name)
        pos = int(y[idx].sum()) if len(idx) else 0
        if len(idx) == 0 or pos == 0 or pos == len(idx):
            what = "no positive" if pos == 0 else "no negative"
            raise DataError(
                f"the {name} split has {len(idx)} images and {what} image: AP and thresholds "
                f"need both classes there. {hint}"
            )


def _expand(units: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Images of the chosen units, sorted."""
    return np.flatnonzero(np.isin(units, chosen))


def _unit_view(dataset: Dataset) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(units or None, labels to split, groups to split by): see the module docstring."""
    y = dataset.labels
    units = split_units(dataset.records)
    if units is None:
        return None, y, dataset.groups
    if dataset.groups is not None:  # duplicate sets merge groups; the group path does the rest
        return None, y, np.array([f"unit-{u}" for u in units], dtype=object)
    yu = np.zeros(int(units.max()) + 1, dtype=np.int64)
    np.maximum.at(yu, units, y)
    return units, yu, None


def train_val_test_split(dataset: Dataset, *, val: float = 0.2, test: float = 0.2, seed: int = 0) -> Split:
    """Stratified split (group-aware when the records have groups).

    With groups, no group lands in two parts; the fractions are then approximate.
    """
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ConfigError(f"split fractions val={val}, test={test} invalid; each in (0, 1) and val + test < 1")
    units, y, groups = _unit_view(dataset)
    n = len(y)
    idx = np.arange(n)
    npos = int(y.sum())
    if npos < 3 or n - npos < 3:
        raise DataError(
            f"{npos} positive and {n - npos} negative images: a train/val/test split needs at least "
            "3 of each class (one per split); add "
            + ("positive" if npos < 3 else "negative") + " images, or merge in data from another source"
        )
    hint = "Use larger val/test fractions or add positive images."
    if groups is None:
        outer = StratifiedShuffleSplit(n_splits=1, test_size=test, random_state=seed)
        rest, te = _split(outer, idx, y, None, "test split", hint)[0]
        inner = StratifiedShuffleSplit(n_splits=1, test_size=val / (1 - test), random_state=seed + 1)
        tr, va = _split(inner, rest, y[rest], None, "validation split", hint)[0]
        split = Split(np.sort(rest[tr]), np.sort(rest[va]), np.sort(te))
    else:
        ghint = "Use larger val/test fractions, or add images from more groups (patients, parts, scenes)."
        k_test = max(2, int(round(1 / test)))
        _need_groups(groups, y, k_test, f"group-aware train/val/test split (test={test:g}, {k_test} folds)", ghint,
                     per_class=3)
        outer = StratifiedGroupKFold(n_splits=k_test, shuffle=True, random_state=seed)
        rest, te = _split(outer, idx, y, groups, "group-aware test split", ghint)[0]
        k_val = max(2, int(round((1 - test) / val)))
        _need_groups(groups[rest], y[rest], k_val, f"group-aware validation split (val={val:g}, {k_val} folds)", ghint,
                     per_class=2)
        inner = StratifiedGroupKFold(n_splits=k_val, shuffle=True, random_state=seed + 1)
        tr, va = _split(inner, rest, y[rest], groups[rest], "group-aware validation split", ghint)[0]
        split = Split(np.sort(rest[tr]), np.sort(rest[va]), np.sort(te))
    if units is not None:
        split = Split(*(_expand(units, part) for part in (split.train, split.val, split.test)))
    _check_parts(dataset.labels, split, hint)
    return split


def kfold_splits(dataset: Dataset, k: int = 5, *, seed: int = 0, val: float = 0.2) -> Iterator[Split]:
    """Stratified k-fold: each fold is the test part once; validation is carved from the rest."""
    if k < 2:
        raise ConfigError(f"--folds {k} invalid; use 2 or more")
    units, y, groups = _unit_view(dataset)
    if not 0 < val < 1:
        raise ConfigError(f"validation fraction val={val} invalid; use a value in (0, 1)")
    npos = int(y.sum())
    nneg = len(y) - npos
    if min(npos, nneg) < k:
        few = "positive" if npos <= nneg else "negative"
        raise DataError(f"only {min(npos, nneg)} {few} images for {k} folds ({_counts(y, groups)}); "
                        f"use at most {max(2, min(npos, nneg))} folds")
    hint = f"Use fewer folds than {k} or add positive images."
    if groups is not None:
        hint = f"Use fewer folds than {k}, or add images from more groups (patients, parts, scenes)."
    _need_groups(groups, y, k, f"group-aware {k}-fold split", hint)
    idx = np.arange(len(y))
    if groups is None:
        outer = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        outer = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = _split(outer, idx, y, groups, f"{k}-fold split", hint)
    for fold, (rest, te) in enumerate(folds):
        if groups is None:
            inner = StratifiedShuffleSplit(n_splits=1, test_size=val, random_state=seed + 1 + fold)
            tr, va = _split(inner, rest, y[rest], None, f"validation part of fold {fold + 1}", hint)[0]
        else:
            kv = max(2, int(round(1 / val)))
            _need_groups(groups[rest], y[rest], kv, f"validation part of fold {fold + 1} (val={val:g}, {kv} folds)", hint,
                             per_class=2)
            inner = StratifiedGroupKFold(n_splits=kv, shuffle=True, random_state=seed + 1 + fold)
            tr, va = _split(inner, rest, y[rest], groups[rest], f"validation part of fold {fold + 1}", hint)[0]
        split = Split(np.sort(rest[tr]), np.sort(rest[va]), np.sort(te))
        if units is not None:
            split = Split(*(_expand(units, part) for part in (split.train, split.val, split.test)))
        _check_parts(dataset.labels, split, hint)
        yield split
