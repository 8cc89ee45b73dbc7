"""Stratified (and group-aware) train/validation/test splits and k-fold.

Built on scikit-learn's StratifiedShuffleSplit, StratifiedKFold and
StratifiedGroupKFold. Same seed, same split.

Duplicate sets (:attr:`ImageRecord.duplicate_set`, set by
:func:`~imbvision.data.checks.link_duplicates`) never straddle two parts:
without groups, the split is drawn over *units* (a duplicate set is one unit)
by a size-aware stratified assignment (:func:`_draw_units`), so the realised
fractions of images and the prevalence of each part stay at the request; with
groups, a duplicate set merges the groups it touches. A dataset without
duplicate sets is split exactly as before.

A unit too large to place without moving a part by more than
:data:`SPLIT_TOLERANCE` (e.g. one image under 5,000 names) is kept whole in
the training part -- where it cannot dominate a validation or test figure --
and the other images are split as asked; :attr:`Split.notes` says so, and
:func:`split_balance` measures what every split realised against the request.

A fixed test set (``fixed_test``: a ``--split-file`` or a layout's own
train/test division) is kept as given; validation is then drawn from the
other images, and may hold no positive (a zero-positive protocol).
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
from .split_balance import SPLIT_TOLERANCE, SplitBalanceWarning, balance_message, split_balance

__all__ = ["Split", "train_val_test_split", "kfold_splits", "read_split_csv", "read_split_rows", "split_balance",
           "balance_message", "SPLIT_TOLERANCE", "SplitBalanceWarning"]


@dataclass(frozen=True)
class Split:
    """Indices into a dataset for the three parts.

    ``notes`` are one-line remarks on what the draw had to do (a duplicate set too large
    to place kept in training, a fixed test set); ``fixed_test`` is True when the test
    part was given (``--split-file`` or ``--split official``), not drawn.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    notes: tuple[str, ...] = ()
    fixed_test: bool = False

    def assignment(self, n: int) -> np.ndarray:
        out = np.full(n, "", dtype=object)
        out[self.train], out[self.val], out[self.test] = "train", "val", "test"
        return out

    def write_csv(self, path: Path, dataset: Dataset) -> Path:
        """Write ``split.csv`` (index, path, label, group, split, duplicate_set, type, name).

        ``duplicate_set`` is blank for an image with no duplicate, else the id its copies share;
        ``type`` is the record's class name (defect type); ``name`` the path relative to the
        data root (:func:`~imbvision.data.names.display_names`: ``test/crack/003.png``, never a bare ``003.png``).
        """
        from .names import display_names, source_root

        part = self.assignment(len(dataset))
        names = display_names([r.path for r in dataset.records], source_root(dataset.source))
        rows = [[i, str(rec.path), rec.label, rec.group or "", part[i],
                 "" if rec.duplicate_set is None else rec.duplicate_set, rec.class_name, names[i]]
                for i, rec in enumerate(dataset.records) if part[i]]
        write_csv(path, ["index", "path", "label", "group", "split", "duplicate_set", "type", "name"], rows)
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
    """Both classes in every part (a drawn split)."""
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


def _draw_units(units: np.ndarray, y: np.ndarray, fractions: tuple[float, ...], seed: int,
                tolerance: float = SPLIT_TOLERANCE) -> tuple[list[np.ndarray], list[str]]:
    """Assign whole units to parts so that each part's images and positives follow ``fractions``.

    Units are taken largest first (ties in a seeded random order) and each goes to the part
    whose relative shortfall of negatives and positives it reduces most (a greedy,
    stratified, size-aware bin filling, as scikit-learn's ``StratifiedGroupKFold`` does for
    folds; written here because scikit-learn has no group-aware split with arbitrary
    fractions). A unit larger than the smallest drawn part plus ``tolerance`` (shares of all
    images) goes to part 0 (training) before the draw, and the other images are split as asked.

    Parameters
    ----------
    units
        ``(N,)`` unit id per image (0..U-1).
    y
        ``(N,)`` 0/1 labels.
    fractions
        Share of each part (sum 1); part 0 is training.

    Returns
    -------
    (list of arrays, list of str)
        Sorted image indices per part, and a remark per unit kept whole in training.
    """
    n = len(y)
    n_units = int(units.max()) + 1 if n else 0
    size = np.bincount(units, minlength=n_units)
    pos = np.bincount(units, weights=y, minlength=n_units).astype(np.int64)
    # too large: the smallest drawn part (val or test) could not hold it within the tolerance
    big = np.flatnonzero(size > max(1.0, (min(fractions[1:]) + tolerance) * n))
    notes = []
    for u in big:
        notes.append(f"a duplicate set of {size[u]:,} images ({size[u] / n:.1%} of the data, {pos[u]} positive) is "
                     "too large to place without bending the split: it is kept whole in train, and val and test "
                     f"are drawn from the other {n - int(size[big].sum()):,} images")
    rest = np.setdiff1d(np.arange(n_units), big)
    add = np.stack([size - pos, pos], axis=1).astype(np.float64)  # (U, 2): negatives, positives
    target = np.outer(np.asarray(fractions, dtype=np.float64), add[rest].sum(axis=0))  # (K, 2)
    scale = np.maximum(target, 1.0)
    have = np.zeros_like(target)
    rng = np.random.default_rng([seed, 4099])
    order = rest[rng.permutation(rest.size)]
    order = order[np.argsort(-size[order], kind="stable")]
    part_of = np.zeros(n_units, dtype=np.int64)
    for u in order:
        gain = (((have + add[u] - target) / scale) ** 2 - ((have - target) / scale) ** 2).sum(axis=1)
        k = int(np.argmin(gain))
        part_of[u] = k
        have[k] += add[u]
    part = part_of[units]
    return [np.flatnonzero(part == k) for k in range(len(fractions))], notes


def train_val_test_split(dataset: Dataset, *, val: float = 0.2, test: float = 0.2, seed: int = 0,
                         fixed_test: np.ndarray | None = None) -> Split:
    """Stratified split (group-aware when the records have groups).

    With groups, no group lands in two parts; the fractions are then approximate.

    Parameters
    ----------
    dataset
        The records (labels, groups, duplicate sets).
    val, test
        Requested fractions of all images, each in (0, 1), sum below 1.
    seed
        Same seed, same split.
    fixed_test
        Indices of a given test set (``--split-file``, ``--split official``): kept as given;
        ``test`` is then ignored and validation (``val`` of all images) is drawn from the rest.

    Raises
    ------
    ConfigError
        Fractions out of range.
    DataError
        Too few images of a class for three parts, or a given test set with one class.
    """
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ConfigError(f"split fractions val={val}, test={test} invalid; each in (0, 1) and val + test < 1")
    if fixed_test is not None:
        return _split_with_fixed_test(dataset, np.asarray(fixed_test, dtype=np.int64), val=val, seed=seed)
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
    if units is not None:  # whole duplicate sets, placed by size (see _draw_units)
        parts, notes = _draw_units(units, dataset.labels, (1 - val - test, val, test), seed)
        split = Split(*parts, notes=tuple(notes))
        _check_parts(dataset.labels, split, hint)
        return split
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
    _check_parts(dataset.labels, split, hint)
    return split


def _split_with_fixed_test(dataset: Dataset, test: np.ndarray, *, val: float, seed: int) -> Split:
    """Train/validation drawn from the images outside a given test set (which is kept as given)."""
    n = len(dataset)
    y = dataset.labels
    test = np.unique(test)
    if test.size == 0 or test.min() < 0 or test.max() >= n:
        raise DataError(f"the given test set holds {test.size} images of the {n}; it needs images of the data")
    pos = int(y[test].sum())
    if pos == 0 or pos == test.size:
        raise DataError(f"the given test set holds {test.size} images, {'none' if pos == 0 else 'all'} positive: AP "
                        "and ROC-AUC need both classes there; put positive and negative images in the test split")
    dev = np.setdiff1d(np.arange(n), test)
    if dev.size < 2:
        raise DataError(f"the given test set holds {test.size} of {n} images, leaving {dev.size} to train on; "
                        "mark more images train in the split file")
    frac = val * n / dev.size  # validation: `val` of all images, drawn from the rest
    if frac >= 0.9:
        raise ConfigError(f"--val {val} asks for {round(val * n)} validation images but only {dev.size} lie outside "
                          "the given test set; use a smaller --val")
    sub = dataset.subset(dev)
    yd = y[dev]
    groups = sub.groups
    units = split_units(sub.records)
    idx = np.arange(dev.size)
    notes = [f"the test set is given ({test.size} images, {pos} positive); train and val are drawn from the other "
             f"{dev.size} (seed {seed})"]
    sets = np.array([-1 if r.duplicate_set is None else r.duplicate_set for r in dataset.records])
    leak = np.intersect1d(sets[test][sets[test] >= 0], sets[dev][sets[dev] >= 0])
    if leak.size:  # the given test set is kept as given: say that copies of its images train the model
        notes.append(f"{leak.size} duplicate set(s) have copies both in the given test set and outside it "
                     f"({int(np.isin(sets[test], leak).sum())} test images): training sees copies of them, which "
                     "inflates the test figures; drop one copy, or give every copy the same split")
    hint = "Use a smaller --val, or mark more images train in the split file."
    if groups is not None:
        if units is not None:
            groups = np.array([f"unit-{u}" for u in units], dtype=object)
        k_val = max(2, int(round(1 / frac)))
        _need_groups(groups, yd, k_val, f"group-aware validation split (val={val:g}, {k_val} folds)", hint,
                     per_class=2 if yd.any() else 0)
        tr, va = _split(StratifiedGroupKFold(n_splits=k_val, shuffle=True, random_state=seed + 1), idx, yd, groups,
                        "group-aware validation split", hint)[0]
    elif units is not None:
        (tr, va), more = _draw_units(units, yd, (1 - frac, frac), seed)
        notes += more
    elif 0 < int(yd.sum()) < 2:  # a single positive cannot be stratified: drawn without stratification
        inner = StratifiedShuffleSplit(n_splits=1, test_size=frac, random_state=seed + 1)
        tr, va = next(inner.split(idx, np.zeros_like(yd)))
    else:
        inner = StratifiedShuffleSplit(n_splits=1, test_size=frac, random_state=seed + 1)
        tr, va = _split(inner, idx, yd, None, "validation split", hint)[0]
    split = Split(np.sort(dev[tr]), np.sort(dev[va]), test, notes=tuple(notes), fixed_test=True)
    if split.val.size == 0 or split.train.size == 0:
        raise DataError(f"the {split.train.size} training and {split.val.size} validation images outside the given "
                        f"test set cannot both be non-empty at --val {val}; {hint}")
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
