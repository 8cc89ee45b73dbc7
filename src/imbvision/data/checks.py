"""Dataset checks: every bad input gives one clear error naming the file(s).

With ``skip_bad=True`` bad files are listed in ``bad_files.csv`` instead and
the rest of the dataset goes on.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadFileError, DataError
from .._io import atomic_write
from .check_cache import cached_check, cached_digest
from .decode import load_mask, read_size
from .records import Dataset, ImageRecord

__all__ = ["CheckReport", "check_dataset", "file_digest"]


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`: the usable dataset and what was dropped."""

    dataset: Dataset
    bad: list[tuple[str, str]] = field(default_factory=list)

    def write_bad_files(self, path: Path) -> Path | None:
        """Write ``bad_files.csv`` (path, reason) when anything was skipped."""
        if not self.bad:
            return None
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["path", "reason"])
        w.writerows(self.bad)
        with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
        return path


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_record(rec: ImageRecord) -> None:
    size = read_size(rec.path)
    if rec.mask is not None:
        if not Path(rec.mask).exists():
            raise BadFileError(rec.mask, f"mask of {rec.path} not found; give an existing mask file or leave the mask empty")
        try:
            load_mask(rec.mask, size)
        except BadFileError as exc:
            raise BadFileError(exc.path, f"{exc.reason} (mask of {rec.path})") from None


def _bad_summary(bad: list[tuple[str, str]], limit: int = 3) -> str:
    shown = "; ".join(f"{p}: {r}" for p, r in bad[:limit])
    more = f"; and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"{len(bad)} file(s) skipped as bad ({shown}{more})"


def check_dataset(dataset: Dataset, *, skip_bad: bool = False, require_both_classes: bool = True,
                  progress: bool = False) -> CheckReport:
    """Decode every image (and mask) once and check the dataset as a whole.

    Checks: readable, non-empty, not truncated images; masks present and of
    the image's size; no file content under two labels; both classes present.

    Raises
    ------
    BadFileError
        The first bad file, unless ``skip_bad``.
    DataError
        Label clashes (unless ``skip_bad``), a dataset left empty or with one class.
    """
    if len(dataset) == 0:
        raise DataError(f"dataset {dataset.source or ''} has no images")
    good: list[ImageRecord] = []
    bad: list[tuple[str, str]] = []
    from contextlib import closing, nullcontext

    iterator = iter(dataset.records)
    if progress:
        from rich.progress import track
        iterator = track(dataset.records, description="checking images")
    # closing(): an error mid-way stops the progress display at once instead of at interpreter exit.
    with closing(iterator) if progress else nullcontext():
        for rec in iterator:
            try:
                cached_check(rec, _check_record)  # decodes only files not checked before (check_cache)
            except BadFileError as exc:
                if not skip_bad:
                    raise BadFileError(exc.path, exc.reason + ("" if "--skip-bad" in exc.reason else
                                       " (or pass --skip-bad to list bad files in bad_files.csv and go on)")) from None
                bad.append((exc.path, exc.reason))
                continue
            good.append(rec)
    # The same bytes under two labels: a labelling error that would leak across splits.
    by_digest: dict[str, list[ImageRecord]] = defaultdict(list)
    for rec in good:
        by_digest[cached_digest(rec.path, file_digest)].append(rec)
    clash = [recs for recs in by_digest.values() if len({r.label for r in recs}) > 1]
    if clash:
        if not skip_bad:
            first = clash[0]
            names = "; ".join(f"{r.path} (label {r.label})" for r in first)
            raise DataError(
                f"{len(clash)} image(s) appear under both labels, e.g. the same content in {names}. "
                "Fix the labels, or pass --skip-bad to drop them into bad_files.csv"
            )
        drop = {id(r) for recs in clash for r in recs}
        for recs in clash:
            for r in recs:
                bad.append((str(r.path), "same file content appears under both labels"))
        good = [r for r in good if id(r) not in drop]
    out = Dataset(good, dataset.source, dataset.positive_name, dataset.negative_name)
    if require_both_classes:
        y = out.labels
        # The caller writes bad_files.csv only after this returns, so the message names the bad files itself.
        skipped = f"; {_bad_summary(bad)}" if bad else ""
        if len(y) == 0:
            raise DataError(f"no usable images left in {dataset.source or 'the dataset'}{skipped}")
        if y.min() == y.max():
            have = "positive" if y[0] == 1 else "negative"
            raise DataError(
                f"only one class present ({len(y)} {have} images) in {dataset.source}; "
                f"imbvision needs both positive and negative images{skipped}"
            )
    return CheckReport(out, bad)
