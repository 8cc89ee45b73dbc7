"""Stratified (and group-aware) train/validation/test splits and k-fold.

Built on scikit-learn's StratifiedShuffleSplit, StratifiedKFold and
StratifiedGroupKFold. Same seed, same split.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, StratifiedShuffleSplit

from .._io import atomic_write
from ..errors import ConfigError, DataError
from .records import Dataset

__all__ = ["Split", "train_val_test_split", "kfold_splits", "read_split_csv"]


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
        """Write ``split.csv`` (index, path, label, group, split)."""
        part = self.assignment(len(dataset))
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["index", "path", "label", "group", "split"])
        for i, rec in enumerate(dataset.records):
            if part[i]:
                w.writerow([i, str(rec.path), rec.label, rec.group or "", part[i]])
        with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
        return path


def read_split_csv(path: Path) -> Split:
    """Read a ``split.csv`` written by :meth:`Split.write_csv`."""
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            parts[row["split"]].append(int(row["index"]))
    return Split(*(np.array(parts[k], dtype=np.int64) for k in ("train", "val", "test")))


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


def train_val_test_split(dataset: Dataset, *, val: float = 0.2, test: float = 0.2, seed: int = 0) -> Split:
    """Stratified split (group-aware when the records have groups).

    With groups, no group lands in two parts; the fractions are then approximate.
    """
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ConfigError(f"split fractions val={val}, test={test} invalid; each in (0, 1) and val + test < 1")
    y = dataset.labels
    n = len(y)
    idx = np.arange(n)
    groups = dataset.groups
    npos = int(y.sum())
    if npos < 3 or n - npos < 3:
        raise DataError(
            f"{npos} positive and {n - npos} negative images: a train/val/test split needs at least "
            "3 of each class (one per split)"
        )
    if groups is None:
        outer = StratifiedShuffleSplit(n_splits=1, test_size=test, random_state=seed)
        rest, te = next(outer.split(idx, y))
        inner = StratifiedShuffleSplit(n_splits=1, test_size=val / (1 - test), random_state=seed + 1)
        tr, va = next(inner.split(rest, y[rest]))
        split = Split(np.sort(rest[tr]), np.sort(rest[va]), np.sort(te))
    else:
        k_test = max(2, int(round(1 / test)))
        outer = StratifiedGroupKFold(n_splits=k_test, shuffle=True, random_state=seed)
        rest, te = next(outer.split(idx, y, groups))
        k_val = max(2, int(round((1 - test) / val)))
        inner = StratifiedGroupKFold(n_splits=k_val, shuffle=True, random_state=seed + 1)
        tr, va = next(inner.split(rest, y[rest], groups[rest]))
        split = Split(np.sort(rest[tr]), np.sort(rest[va]), np.sort(te))
    _check_parts(y, split, "Use larger val/test fractions or add positive images.")
    return split


def kfold_splits(dataset: Dataset, k: int = 5, *, seed: int = 0, val: float = 0.2) -> Iterator[Split]:
    """Stratified k-fold: each fold is the test part once; validation is carved from the rest."""
    if k < 2:
        raise ConfigError(f"--folds {k} invalid; use 2 or more")
    y = dataset.labels
    groups = dataset.groups
    npos = int(y.sum())
    if npos < k:
        raise DataError(f"only {npos} positive images for {k} folds; use at most {max(2, npos)} folds")
    idx = np.arange(len(y))
    if groups is None:
        outer = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, y)
    else:
        outer = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, y, groups)
    for fold, (rest, te) in enumerate(outer):
        if groups is None:
            inner = StratifiedShuffleSplit(n_splits=1, test_size=val, random_state=seed + 1 + fold)
            tr, va = next(inner.split(rest, y[rest]))
        else:
            kv = max(2, int(round(1 / val)))
            tr, va = next(StratifiedGroupKFold(n_splits=kv, shuffle=True, random_state=seed + 1 + fold)
                          .split(rest, y[rest], groups[rest]))
        split = Split(np.sort(rest[tr]), np.sort(rest[va]), np.sort(te))
        _check_parts(y, split, f"Use fewer folds than {k} or add positive images.")
        yield split
