"""The dataset record: one image, its binary label, optional mask and group."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["ImageRecord", "Dataset", "labels_of", "groups_of", "split_units"]

POSITIVE, NEGATIVE = 1, 0


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset.

    Attributes
    ----------
    path
        Image file.
    label
        1 when the object of interest is present (the rare, positive class), else 0.
    mask
        Optional mask file, same size as the image, object where the value is set.
    group
        Optional group (patient, part, scene): no group is split across train/val/test.
    class_name
        The original class name (folder or CSV label) for reports.
    duplicate_set
        Id of the set of exact/near duplicates this image belongs to (set by
        :func:`~imbvision.data.checks.link_duplicates`), else ``None``: a set is
        kept on one side of every split, like a group.
    part
        The layout's own division (``"train"`` or ``"test"``: the benchmark folder layout's
        ``train/`` and ``test/``), used by ``--split official``; ``None`` when the source has none.
    """

    path: Path
    label: int
    mask: Path | None = None
    group: str | None = None
    class_name: str = ""
    duplicate_set: int | None = None
    part: str | None = None


@dataclass
class Dataset:
    """A list of records plus the source string that produced it."""

    records: list[ImageRecord]
    source: str = ""
    positive_name: str = "positive"
    negative_name: str = "negative"
    #: One-line remarks from reading the source (e.g. hidden files skipped), shown by the checks.
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> ImageRecord:
        return self.records[i]

    def __iter__(self):
        return iter(self.records)

    @property
    def labels(self) -> np.ndarray:
        return labels_of(self.records)

    @property
    def groups(self) -> np.ndarray | None:
        return groups_of(self.records)

    def subset(self, index: Sequence[int] | np.ndarray) -> "Dataset":
        return Dataset([self.records[int(i)] for i in index], self.source, self.positive_name, self.negative_name,
                       list(self.notes))

    def summary(self) -> dict[str, int]:
        y = self.labels
        return {"images": int(len(y)), "positive": int(y.sum()), "negative": int((1 - y).sum()),
                "with_mask": int(sum(r.mask is not None for r in self.records))}


def labels_of(records: Sequence[ImageRecord]) -> np.ndarray:
    """Labels as an int64 array."""
    return np.fromiter((r.label for r in records), dtype=np.int64, count=len(records))


def split_units(records: Sequence[ImageRecord]) -> np.ndarray | None:
    """Units that no split may divide: images linked by a group or a duplicate set share one unit.

    Returns ``(N,)`` unit ids (connected components over both links, numbered by
    first image), or ``None`` when no record has a duplicate set (then the groups alone decide).
    """
    if not any(r.duplicate_set is not None for r in records):
        return None
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    first: dict[tuple[str, object], int] = {}
    rows, cols = [], []
    for i, r in enumerate(records):
        for key in (("g", r.group), ("d", r.duplicate_set)):
            if key[1] is None:
                continue
            j = first.setdefault(key, i)
            if j != i:
                rows.append(i)
                cols.append(j)
    n = len(records)
    _, comp = connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)), directed=False)
    _, ids = np.unique(comp, return_index=True)
    order = np.empty(comp.max() + 1, dtype=np.int64)
    order[np.argsort(ids)] = np.arange(len(ids))
    return order[comp]


def groups_of(records: Sequence[ImageRecord]) -> np.ndarray | None:
    """Groups as an object array, or ``None`` when no record has one."""
    if not any(r.group is not None for r in records):
        return None
    return np.array([r.group if r.group is not None else f"__single_{i}" for i, r in enumerate(records)], dtype=object)
