"""Dataset checks: every bad input gives one clear error naming the file(s).

With ``skip_bad=True`` bad files are listed in ``bad_files.csv`` instead and
the rest of the dataset goes on. Every image is decoded once; its SHA-256 and
perceptual hash are kept (:class:`CheckReport`) for the label-clash check and
for :func:`link_duplicates`, which keeps copies of one picture on one side of
every split. :func:`load_checked` is the one load -> check -> report-bad
sequence that ``train``, ``compare``, ``embed`` and ``audit`` share.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._csv import write_csv
from .._digest import sha256_file
from .._progress import track
from .._text import plural
from ..errors import BadFileError, DataError
from .decode import PagesDroppedWarning, load_image_and_size, load_mask
from .duplicates import COSINE_THRESHOLD, HASH_THRESHOLD, find_duplicates, phash
from .check_cache import cached_check
from .records import Dataset, ImageRecord

__all__ = ["CheckReport", "check_dataset", "file_digest", "link_duplicates", "load_checked", "say", "check_file_name", "printable_name"]

#: Kept for callers of the old name; the one implementation is :func:`imbvision._digest.sha256_file`.
file_digest = sha256_file


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`: the usable dataset, what was dropped, and what was noticed.

    Attributes
    ----------
    dataset
        The usable records (with ``duplicate_set`` filled after :func:`link_duplicates`).
    bad
        ``(path, reason)`` of every skipped file.
    sha256, phash
        Per record of ``dataset``: the file's SHA-256 and 64-bit perceptual hash.
    notes
        One-line remarks for the user (hidden files skipped, pages dropped, duplicate sets grouped).
    """

    dataset: Dataset
    bad: list[tuple[str, str]] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    phash: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: What :func:`link_duplicates` found (``None`` before it ran): the groups splits and the audit share.
    duplicates: Any = None

    def write_bad_files(self, path: Path) -> Path | None:
        """Write ``bad_files.csv`` (path, reason) when anything was skipped; else remove a stale one."""
        path = Path(path)
        if not self.bad:
            path.unlink(missing_ok=True)  # an older run's list must not describe this one
            return None
        write_csv(path, ["path", "reason"], self.bad)
        return path


def say(line: str) -> None:
    """Print one remark on stderr (rich console, as the progress bars)."""
    from rich.console import Console

    Console(stderr=True).print(line, markup=False, highlight=False, soft_wrap=True)


def printable_name(path: object) -> str:
    """A file name as text: bytes that are not UTF-8 shown as ``\\xNN`` (safe to print and to write to CSV)."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def check_file_name(path: object) -> None:
    """Refuse a file name that is not valid UTF-8, naming it: every output (CSV, JSON, report) is UTF-8.

    Raises
    ------
    BadFileError
        With the name shown as :func:`printable_name` gives it.
    """
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        raise BadFileError(printable_name(path), "file name is not valid UTF-8; rename the file "
                           "(every output imbvision writes is UTF-8)") from None


def _check_record_noting_pages(rec: ImageRecord) -> list:
    """``[sha256, phash, page-drop notes]`` of one record: the JSON answer the check cache keeps."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PagesDroppedWarning)
        digest, ph = _check_record(rec)
    return [digest, int(ph), [str(w.message) for w in caught if issubclass(w.category, PagesDroppedWarning)]]


def _check_record(rec: ImageRecord) -> tuple[str, int]:
    """Decode the image (and mask) once; returns its SHA-256 and perceptual hash."""
    check_file_name(rec.path)
    if rec.mask is not None:
        check_file_name(rec.mask)
    rgb, size = load_image_and_size(rec.path)
    if rec.mask is not None:
        if not Path(rec.mask).exists():
            raise BadFileError(rec.mask, f"mask of {rec.path} not found; give an existing mask file or leave the mask empty")
        try:
            load_mask(rec.mask, size)
        except BadFileError as exc:
            raise BadFileError(exc.path, f"{exc.reason} (mask of {rec.path})") from None
    try:
        digest = sha256_file(rec.path)
    except OSError as exc:
        raise BadFileError(rec.path, f"cannot be read ({exc.strerror or exc})") from None
    return digest, phash(rgb)


def _bad_summary(bad: list[tuple[str, str]], limit: int = 3) -> str:
    shown = "; ".join(f"{p}: {r}" for p, r in bad[:limit])
    more = f"; and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"{plural(len(bad), 'file')} skipped as bad ({shown}{more})"


def check_dataset(dataset: Dataset, *, skip_bad: bool = False, require_both_classes: bool = True,
                  progress: bool = False) -> CheckReport:
    """Decode every image (and mask) once and check the dataset as a whole.

    Checks: readable, non-empty, not truncated images with finite pixels; masks
    present, finite and of the image's size; no file content under two labels;
    both classes present. Multi-page files are noted (first page used).

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
    hashes: list[tuple[str, int]] = []
    paged: list[str] = []
    # closing(): an error mid-way stops the progress display at once instead of at interpreter exit.
    with closing(track(dataset.records, progress, "checking images")) as iterator:
        for rec in iterator:
            try:
                digest, ph, pages = cached_check(rec, _check_record_noting_pages)  # decodes only files not seen
                hashes.append((digest, ph))
                paged += pages
            except BadFileError as exc:
                if not skip_bad:
                    raise BadFileError(exc.path, exc.reason + ("" if "--skip-bad" in exc.reason else
                                       " (or pass --skip-bad to list bad files in bad_files.csv and go on)")) from None
                bad.append((exc.path, exc.reason))
                continue
            good.append(rec)
    # The same bytes under two labels: a labelling error that would leak across splits.
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, (digest, _) in enumerate(hashes):
        by_digest[digest].append(i)
    clash = [idx for idx in by_digest.values() if len({good[i].label for i in idx}) > 1]
    if clash:
        if not skip_bad:
            names = "; ".join(f"{good[i].path} (label {good[i].label})" for i in clash[0])
            raise DataError(
                f"{plural(len(clash), 'image')} {'appears' if len(clash) == 1 else 'appear'} under both labels, e.g. the same content in {names}. "
                "Fix the labels, or pass --skip-bad to drop them into bad_files.csv"
            )
        drop = {i for idx in clash for i in idx}
        bad += [(str(good[i].path), "same file content appears under both labels") for idx in clash for i in idx]
        keep = [i for i in range(len(good)) if i not in drop]
        good, hashes = [good[i] for i in keep], [hashes[i] for i in keep]
    notes = list(dataset.notes)
    if paged:
        notes.append(f"{plural(len(paged), 'multi-page file')}: only the first page is used (e.g. {paged[0]})")
    out = Dataset(good, dataset.source, dataset.positive_name, dataset.negative_name, list(dataset.notes))
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
    return CheckReport(out, bad, [h for h, _ in hashes], [p for _, p in hashes], notes)


def link_duplicates(report: CheckReport, features: "np.ndarray | Callable[[np.ndarray], np.ndarray] | None" = None, *,
                    hash_threshold: int = HASH_THRESHOLD, cosine_threshold: float = COSINE_THRESHOLD) -> CheckReport:
    """Mark exact and near duplicates so that every split keeps each set on one side.

    The detector is the audit's (:func:`imbvision.data.duplicates.find_duplicates`):
    exact = same bytes; near = perceptual hash within ``hash_threshold`` bits
    and embedding cosine >= ``cosine_threshold``. Without ``features`` only
    exact duplicates are linked (a perceptual hash alone matches unrelated
    plain textures: on Magnetic-tile it pairs 2,092 images against 71 with both).

    Parameters
    ----------
    report
        From :func:`check_dataset`.
    features
        Optional ``(N, D)`` embeddings of ``report.dataset`` in order, or ``embed(indices)``
        giving the rows of those images only (:func:`~imbvision.data.duplicates.find_duplicates`).

    Returns
    -------
    CheckReport
        The same report with ``duplicate_set`` on the records of each set and one
        note saying how many sets were grouped.
    """
    ds = report.dataset
    if features is not None and not callable(features) and np.asarray(features).shape[0] != len(ds):
        raise DataError(f"features have {np.asarray(features).shape[0]} rows for {len(ds)} images; one row per image")
    dup = find_duplicates(report.sha256, report.phash, features, hash_threshold=hash_threshold,
                          cosine_threshold=cosine_threshold, near=features is not None)
    records = [replace(r, duplicate_set=int(s) if s else None) for r, s in zip(ds.records, dup.set_id)]
    report.dataset = Dataset(records, ds.source, ds.positive_name, ds.negative_name, list(ds.notes))
    kinds = "exact and near" if features is not None else "exact (near duplicates need embeddings)"
    pos = len({int(s) for s, r in zip(dup.set_id, records) if s and r.label == 1})
    if dup.sets:  # nothing to say (or to warn about in the report) when there are none
        sizes = np.bincount(dup.set_id)[1:]
        cut = (f"; {plural(dup.links_cut, 'near link')} cut so that no set of look-alikes exceeds {dup.max_set} images"
               if dup.links_cut else "")
        report.notes.append(
            f"{plural(dup.sets, 'duplicate set')} ({kinds}; {plural(dup.images_in_sets, 'image')}, largest "
            f"{int(sizes.max())}, {plural(pos, 'set')} with a positive{cut}) kept together when splitting; "
            "--no-group-duplicates turns this off"
        )
    report.duplicates = dup
    return report


def load_checked(source: str | Dataset, *, positive: str | None = None, skip_bad: bool = False,
                 out_dir: Path | None = None, progress: bool = False, require_both_classes: bool = True,
                 group_duplicates: bool = False,
                 features: Callable[[Dataset], np.ndarray] | None = None) -> CheckReport:
    """Load a source (or take a dataset), check every file, write/remove ``bad_files.csv``, say what was noticed.

    Parameters
    ----------
    source
        A source string (:func:`imbvision.data.sources.load_source`) or a loaded dataset.
    out_dir
        Where ``bad_files.csv`` goes (a stale one from an earlier run is removed); None writes nothing.
    progress
        Show the progress bar and print each note (and the bad-file count) on stderr.
    group_duplicates
        Link duplicate sets for splitting (:func:`link_duplicates`); ``features(dataset)``
        supplies embeddings for near duplicates, asked only for the images with a hash-near partner.
    """
    from .sources import load_source

    ds = load_source(source, positive=positive) if isinstance(source, str) else source
    report = check_dataset(ds, skip_bad=skip_bad, require_both_classes=require_both_classes, progress=progress)
    if group_duplicates:
        ds_ = report.dataset
        link_duplicates(report, (lambda idx: features(ds_.subset(idx))) if features is not None else None)
    written = report.write_bad_files(Path(out_dir) / "bad_files.csv") if out_dir is not None else None
    from ..notices import add_report_note

    for note in report.notes:  # duplicates grouped, hidden files skipped, pages dropped: in the report too
        add_report_note(note)
    if progress:
        for note in report.notes:
            say(note)
        if written:
            say(f"{plural(len(report.bad), 'bad file')} skipped: see {written}")
    return report
