"""A given test set: ``--split-file FILE`` (CSV ``path,split``) or a layout's own division (``--split official``).

The test rows are kept exactly as given; the ``train`` and ``val`` rows form the
development part, from which every seed draws its train/validation split (so
``compare``'s seeds vary training and validation, never the test set). Paths
are read relative to the split file's folder or to the data root (the source's
folder), or absolute.

Checked before anything is trained, each failure one line naming the file:
not UTF-8 / not CSV / no ``path,split`` columns, an unknown split name, a path
listed twice, a path that is not an image of the data, an image of the data
that is not listed, a test set holding one class only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._choices import SPLIT_RULES
from .._csv import unneutralize
from ..errors import ConfigError, DataError
from .names import source_root
from .records import Dataset

__all__ = ["SPLIT_NAMES", "SPLIT_RULES", "given_test", "read_split_file"]

#: The split names a split file may use.
SPLIT_NAMES = ("train", "val", "test")
#: ``--split`` values: ``random`` (drawn per seed) or ``official`` (the layout's own train/test).


def _keys(path: Path) -> list[str]:
    a = os.path.normcase(os.path.abspath(path))
    r = os.path.normcase(os.path.realpath(path))
    return [a] if a == r else [a, r]


def read_split_file(path: str | os.PathLike[str], dataset: Dataset, *,
                    skipped: tuple[str, ...] = ()) -> tuple[np.ndarray, list[str]]:
    """The split name of every record of ``dataset`` from a ``path,split`` CSV.

    Parameters
    ----------
    path
        The split file.
    dataset
        The checked dataset (its records are matched by path).
    skipped
        Paths dropped as bad files (``--skip-bad``): rows naming them are ignored, and counted.

    Returns
    -------
    (ndarray, list of str)
        ``(N,)`` object array of ``train``/``val``/``test``, and one-line remarks.

    Raises
    ------
    DataError
        See the module docstring.
    """
    from .manifest import read_table

    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file {path} not found; give a CSV with columns path,split "
                        f"(split: {', '.join(SPLIT_NAMES)})")
    hint = f"required: path,split (split: {', '.join(SPLIT_NAMES)})"
    try:
        rows, _ = read_table(path, ("path", "split"), what="split file", hint=hint)
    except DataError:
        raise
    except ValueError as exc:  # csv field limits and the like: still "not a CSV" to the user
        raise DataError(f"split file {path} is not a CSV with columns path,split ({exc})") from None
    if not rows:
        raise DataError(f"split file {path} has a header but no rows; {hint}")
    where_of: dict[str, int] = {}
    for i, rec in enumerate(dataset.records):
        for k in _keys(Path(rec.path)):
            where_of.setdefault(k, i)
    bases = [path.parent] + ([r] if (r := source_root(dataset.source)) is not None else [])
    bad = {k for p in skipped for k in _keys(Path(p))}
    part = np.full(len(dataset), "", dtype=object)
    line_of: dict[int, int] = {}
    missing: list[str] = []
    dropped = 0
    for line, row in enumerate(rows, start=2):
        raw = unneutralize((row.get("path") or "").strip())
        name = unneutralize((row.get("split") or "").strip()).lower()
        if not raw:
            raise DataError(f"split file {path} line {line}: empty path")
        if name not in SPLIT_NAMES:
            raise DataError(f"split file {path} line {line}: unknown split {row.get('split')!r} for {raw}; "
                            f"valid: {', '.join(SPLIT_NAMES)}")
        cands = [Path(raw)] if Path(raw).is_absolute() else [b / raw for b in bases]
        hit = next((where_of[k] for c in cands for k in _keys(c) if k in where_of), None)
        if hit is None:
            if any(k in bad for c in cands for k in _keys(c)):
                dropped += 1
                continue
            missing.append(f"{raw} (line {line})")
            continue
        if hit in line_of:
            raise DataError(f"split file {path} lists {raw} twice (lines {line_of[hit]} and {line}); "
                            "keep one row per image")
        line_of[hit] = line
        part[hit] = name
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(f"split file {path} lists {len(missing)} path(s) that are not images of the data: "
                        f"{'; '.join(missing[:3])}{more}; paths are read relative to {' or '.join(map(str, bases))}")
    unlisted = [i for i in range(len(dataset)) if not part[i]]
    if unlisted:
        shown = "; ".join(str(dataset.records[i].path) for i in unlisted[:3])
        more = f" and {len(unlisted) - 3} more" if len(unlisted) > 3 else ""
        raise DataError(f"split file {path} does not list {len(unlisted)} image(s) of the data ({shown}{more}); "
                        "give every image a split (train, val or test)")
    notes = []
    if dropped:
        notes.append(f"split file {path}: {dropped} row(s) name files skipped as bad (see bad_files.csv)")
    if (part == "val").any():
        notes.append(f"split file {path}: its {int((part == 'val').sum())} val rows are pooled with the train rows; "
                     "every seed draws its validation split from them (the test rows stay fixed)")
    y = dataset.labels
    test = part == "test"
    npos = int(y[test].sum())
    if npos == 0 or npos == int(test.sum()):
        raise DataError(f"split file {path}: the test split holds {int(test.sum())} images, "
                        f"{'no' if npos == 0 else 'only'} positive{'' if npos == 0 else 's'}; AP and ROC-AUC need "
                        "both classes in test: mark positive and negative images test")
    return part, notes


def given_test(dataset: Dataset, *, split_file: str | None = None, split: str = "random",
               skipped: tuple[str, ...] = ()) -> tuple[np.ndarray | None, list[str]]:
    """Indices of the given test set (or ``None`` for a random split) and one-line remarks.

    Raises
    ------
    ConfigError
        An unknown ``split`` rule, or ``--split official`` together with a split file.
    DataError
        A bad split file (:func:`read_split_file`), or ``--split official`` on a source without its own division.
    """
    if split not in SPLIT_RULES:
        raise ConfigError(f"--split {split!r} invalid; valid: {', '.join(SPLIT_RULES)}")
    if split_file is not None and split == "official":
        raise ConfigError("--split official and --split-file both give the test set; use one of them")
    if split_file is not None:
        part, notes = read_split_file(split_file, dataset, skipped=skipped)
        return np.flatnonzero(part == "test"), notes
    if split == "official":
        parts = [r.part for r in dataset.records]
        if any(p is None for p in parts):
            raise DataError(f"--split official needs a source with its own train/test division (mvtec:PATH or "
                            f"anomaly-folder:PATH); {dataset.source or 'the data'} has none: use --split random "
                            "or --split-file FILE")
        test = np.flatnonzero(np.array(parts, dtype=object) == "test")
        y = dataset.labels
        if test.size == 0 or y[test].min() == y[test].max():
            raise DataError(f"--split official: the test part of {dataset.source} holds {test.size} images of one "
                            "class; AP needs positive and negative test images (test/good and test/<type>)")
        return test, [f"the layout's own test part is the test set ({test.size} images); validation is drawn "
                      "from its training part"]
    return None, []
