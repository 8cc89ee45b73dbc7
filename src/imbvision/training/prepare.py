"""Shared preparation: read, check and split the data, once per run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data.checks import load_checked
from ..data.records import Dataset
from ..data.splits import Split, train_val_test_split
from ..errors import DataError

__all__ = ["Prepared", "prepare_data", "limit_train_positives", "duplicate_features"]


@dataclass
class Prepared:
    dataset: Dataset
    split: Split
    bad: list[tuple[str, str]]
    #: What the split realised against the request (:func:`~imbvision.data.splits.split_balance`).
    balance: dict | None = None


def positives_dropped_note(before: Split, after: Split, y: np.ndarray, rate: float) -> str | None:
    """One line saying how many training positives ``--train-positive-rate`` dropped (``None``: none)."""
    had, kept = int(y[before.train].sum()), int(y[after.train].sum())
    if had == kept:
        return None
    return (f"--train-positive-rate {rate:g}: {had - kept} of {had} training positives dropped "
            f"({kept} kept beside {int((y[after.train] == 0).sum())} training negatives; val and test untouched)")


def limit_train_positives(split: Split, y: np.ndarray, rate: float, seed: int) -> Split:
    """Keep only enough training positives for a positive rate of ``rate`` (validation and test untouched).

    ``rate=0`` drops every training positive (for the ``normality`` head, which learns from negatives alone).
    The returned split's ``notes`` end with how many were dropped (:func:`positives_dropped_note`).
    """
    tr = split.train
    pos, neg = tr[y[tr] == 1], tr[y[tr] == 0]

    def done(train: np.ndarray) -> Split:
        out = replace(split, train=train)
        note = positives_dropped_note(split, out, y, rate)
        return replace(out, notes=split.notes + ((note,) if note else ()))

    if rate == 0:
        return done(np.sort(neg))
    keep = int(round(rate * len(neg) / (1 - rate)))
    if keep < 2:
        raise DataError(
            f"--train-positive-rate {rate} leaves {keep} training positives for {len(neg)} negatives; "
            "use a higher rate (at least 2 positives are needed)"
        )
    if keep >= len(pos):
        return split
    rng = np.random.default_rng([seed, 7919])
    chosen = np.sort(rng.choice(pos, size=keep, replace=False))
    return done(np.sort(np.concatenate([neg, chosen])))


def duplicate_features(cfg=None, progress: bool = False, *, cache_dir: Path | None = None):
    """``features(dataset)`` for near-duplicate grouping, on the one fixed representation.

    The embedded EfficientNet-Lite0 at 224 px (:data:`~imbvision.data.duplicates.GROUPING_BACKBONE`,
    :data:`~imbvision.data.duplicates.GROUPING_IMAGE_SIZE`), whatever the run's backbone, image
    size or tiles: runs on the same data share their duplicate groups, hence their splits.
    Cached in ``cache_dir`` (default: ``cfg``'s cache folder).
    """
    from ..data.duplicates import GROUPING_BACKBONE, GROUPING_IMAGE_SIZE

    def features(ds: Dataset) -> np.ndarray:
        from ..backbones import create_backbone, embed_dataset

        folder = cache_dir if cache_dir is not None else cfg.resolved_cache_dir()
        bb = create_backbone(GROUPING_BACKBONE)
        return embed_dataset(ds, backbone=bb, image_size=GROUPING_IMAGE_SIZE, tiles=0, cache_dir=folder,
                             progress=progress).global_
    return features


def say_split(split: Split, balance: dict, *, progress: bool, seed: int | None = None) -> None:
    """Say the split's remarks (given test set, sets kept in train, positives dropped) once, in the report too,
    and warn (:class:`~imbvision.data.splits.SplitBalanceWarning`) in one line when it departs from the request."""
    import warnings

    from ..data.checks import say
    from ..data.splits import SplitBalanceWarning, balance_message
    from ..notices import add_report_note

    for note in split.notes:
        add_report_note(note)
        if progress:
            say(note)
    msg = balance_message(balance, seed=seed)
    if msg:
        warnings.warn(msg, SplitBalanceWarning, stacklevel=2)


def prepare_data(source: str, *, positive: str | None = None, seed: int = 0, val: float = 0.2, test: float = 0.2,
                 skip_bad: bool = False, train_positive_rate: float | None = None, out_dir: Path | None = None,
                 progress: bool = False, group_duplicates: bool = True, features=None,
                 split_file: str | None = None, split: str = "random") -> Prepared:
    """Load ``source``, check every file, split stratified; write ``bad_files.csv`` and ``split.csv``.

    With ``group_duplicates`` (the default) exact duplicates -- and near duplicates when
    ``features(dataset) -> (N, D) embeddings`` is given -- stay on one side of the split.
    ``split_file`` (CSV ``path,split``) or ``split="official"`` fix the test set
    (:func:`~imbvision.data.split_file.given_test`); train/val are then drawn from the rest.
    ``Prepared.balance`` records what the split realised (before any positive drop).
    """
    from ..data.split_file import given_test
    from ..data.splits import split_balance

    report = load_checked(source, positive=positive, skip_bad=skip_bad, out_dir=out_dir, progress=progress,
                          group_duplicates=group_duplicates, features=features)
    ds = report.dataset
    fixed, notes = given_test(ds, split_file=split_file, split=split, skipped=tuple(p for p, _ in report.bad))
    sp = train_val_test_split(ds, val=val, test=test, seed=seed, fixed_test=fixed)
    sp = replace(sp, notes=tuple(notes) + sp.notes)
    balance = split_balance(sp, ds.labels, val=val, test=test)
    if train_positive_rate is not None:
        sp = limit_train_positives(sp, ds.labels, train_positive_rate, seed)
        balance["train_after_positive_rate"] = {"images": int(len(sp.train)), "positives": int(ds.labels[sp.train].sum())}
    say_split(sp, balance, progress=progress)
    if out_dir is not None:
        sp.write_csv(Path(out_dir) / "split.csv", ds)
    return Prepared(ds, sp, report.bad, balance)
