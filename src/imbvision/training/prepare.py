"""Shared preparation: read, check and split the data, once per run."""

from __future__ import annotations

from dataclasses import dataclass
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


def limit_train_positives(split: Split, y: np.ndarray, rate: float, seed: int) -> Split:
    """Keep only enough training positives for a positive rate of ``rate`` (validation and test untouched).

    ``rate=0`` drops every training positive (for the ``normality`` head, which learns from negatives alone).
    """
    tr = split.train
    pos, neg = tr[y[tr] == 1], tr[y[tr] == 0]
    if rate == 0:
        return Split(np.sort(neg), split.val, split.test)
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
    return Split(np.sort(np.concatenate([neg, chosen])), split.val, split.test)


def duplicate_features(cfg, progress: bool = False):
    """``features(dataset)`` for near-duplicate grouping: global embeddings of ``cfg``'s backbone (cached)."""
    def features(ds: Dataset) -> np.ndarray:
        from ..backbones import create_backbone, embed_dataset

        bb = create_backbone(cfg.backbone, weights=cfg.weights)
        from ..backbones.resolution import DEFAULT_IMAGE_SIZE
        size = cfg.image_size or DEFAULT_IMAGE_SIZE  # the grouping's thresholds were set at 224 px
        return embed_dataset(ds, backbone=bb, image_size=size, tiles=cfg.tiles, cache_dir=cfg.resolved_cache_dir(),
                             progress=progress).global_
    return features


def prepare_data(source: str, *, positive: str | None = None, seed: int = 0, val: float = 0.2, test: float = 0.2,
                 skip_bad: bool = False, train_positive_rate: float | None = None, out_dir: Path | None = None,
                 progress: bool = False, group_duplicates: bool = True, features=None) -> Prepared:
    """Load ``source``, check every file, split stratified; write ``bad_files.csv`` and ``split.csv``.

    With ``group_duplicates`` (the default) exact duplicates -- and near duplicates when
    ``features(dataset) -> (N, D) embeddings`` is given -- stay on one side of the split.
    """
    report = load_checked(source, positive=positive, skip_bad=skip_bad, out_dir=out_dir, progress=progress,
                          group_duplicates=group_duplicates, features=features)
    ds = report.dataset
    split = train_val_test_split(ds, val=val, test=test, seed=seed)
    if train_positive_rate is not None:
        split = limit_train_positives(split, ds.labels, train_positive_rate, seed)
    if out_dir is not None:
        split.write_csv(Path(out_dir) / "split.csv", ds)
    return Prepared(ds, split, report.bad)
