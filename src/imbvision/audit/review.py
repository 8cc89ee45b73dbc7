"""Apply the user's review of ``suspects.csv`` to a *new* manifest.

The source dataset, its manifest and its images are never modified: the
result is a fresh CSV manifest (``path,label,mask,group``, absolute paths,
labels ``1``/``0``) that :func:`imbvision.data.sources.load_source` reads
back without ``--positive``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._csv import unneutralize, write_csv
from ..data.manifest import read_table
from ..data.records import Dataset
from ..errors import ConfigError, DataError

__all__ = ["apply_review", "VALID_DECISIONS"]

#: What the ``decision`` column may hold (blank means keep).
VALID_DECISIONS = ("keep", "relabel", "drop")


def _source_manifest(dataset: Dataset) -> Path | None:
    src = (dataset.source or "").strip()
    if src.startswith("csv:"):
        return Path(src[4:])
    if src.lower().endswith(".csv"):
        return Path(src)
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _key(p: str | Path) -> str:
    return str(Path(p).expanduser().resolve())


def apply_review(review_csv: str | Path, source_dataset: Dataset, out_manifest: str | Path) -> dict[str, Any]:
    """Write a new manifest with the decisions of a reviewed ``suspects.csv`` applied.

    Parameters
    ----------
    review_csv
        ``suspects.csv`` with its ``decision`` column filled: ``keep``,
        ``relabel`` (flip the binary label; the image's mask is left out, as it
        outlined the old label's object) or ``drop`` (leave the image out of
        the new manifest); blank means keep. Case and surrounding spaces are ignored.
    source_dataset
        The dataset the audit ran on.
    out_manifest
        The new CSV manifest to write (never the source manifest, never the review file).

    Returns
    -------
    dict
        ``manifest``, ``images``, ``positive``, ``negative``, ``kept``, ``relabelled``,
        ``dropped`` and the lists ``relabelled_paths``, ``dropped_paths``.

    Raises
    ------
    ConfigError
        An unknown decision (the row, the value and the valid values are named),
        contradictory decisions for one image, or ``out_manifest`` that would
        overwrite the source manifest or the review file.
    DataError
        A review without ``path``/``decision`` columns, a path not in the
        source dataset, or a ``label`` that differs from the dataset's (the
        review belongs to another version of the data).
    """
    review_csv = Path(review_csv)
    out_manifest = Path(out_manifest)
    src = _source_manifest(source_dataset)
    if src is not None and _same_file(out_manifest, src):
        raise ConfigError(
            f"refusing to overwrite the source manifest {src}; write the reviewed manifest to a new file "
            "(e.g. manifest.reviewed.csv)"
        )
    if _same_file(out_manifest, review_csv):
        raise ConfigError(f"refusing to overwrite the review file {review_csv}; choose another output path")
    image_paths = {_key(r.path) for r in source_dataset}
    if _key(out_manifest) in image_paths:
        raise ConfigError(f"refusing to write the manifest onto image {out_manifest}; choose a .csv path")
    if not review_csv.is_file():
        raise DataError(f"review file {review_csv} not found; pass the suspects.csv written by the audit")
    rows, _ = read_table(review_csv, ("path", "decision"), what="review file",
                         hint="expected the suspects.csv written by the audit (path, ..., decision)")

    index = {_key(r.path): i for i, r in enumerate(source_dataset)}
    decisions: dict[int, str] = {}
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "") for k, v in row.items()}
        where = f"{review_csv} line {line}"
        raw = row.get("decision", "")
        dec = raw.strip().lower() or "keep"
        if dec not in VALID_DECISIONS:
            raise ConfigError(
                f"{where} ({row.get('path', '')}): unknown decision {raw!r}; valid: "
                f"{', '.join(VALID_DECISIONS)} (blank = keep)"
            )
        raw_path = row["path"]
        p = unneutralize(raw_path.strip())
        if not p:
            raise DataError(f"{where}: empty path")
        i = None
        for text in (unneutralize(raw_path), p):  # the name exactly as written first (a leading space is a name)
            path = Path(text) if Path(text).is_absolute() else review_csv.parent / text
            i = index.get(_key(path)) if i is None else i
        if i is None:
            raise DataError(f"{where}: {p} is not an image of the source dataset {source_dataset.source!r}; "
                            "was the review made on another dataset?")
        lab = row.get("label", "").strip()
        if lab and lab in ("0", "1") and int(lab) != source_dataset[i].label:
            raise DataError(
                f"{where}: {p} is labelled {lab} in the review but {source_dataset[i].label} in the dataset; "
                "the review was made on another version of the labels -- re-run the audit"
            )
        if i in decisions and decisions[i] != dec:
            raise ConfigError(f"{where}: {p} has decision {dec!r} here but {decisions[i]!r} on an earlier row; "
                              "give one decision per image")
        decisions[i] = dec

    out_rows: list[list[Any]] = []
    relabelled: list[str] = []
    dropped: list[str] = []
    n1 = n0 = 0
    for i, rec in enumerate(source_dataset):
        dec = decisions.get(i, "keep")
        if dec == "drop":
            dropped.append(str(rec.path))
            continue
        label = int(rec.label)
        mask = rec.mask
        if dec == "relabel":
            label = 1 - label
            relabelled.append(str(rec.path))
            mask = None  # the mask outlined the old label's object (or nothing); it no longer applies
        n1 += label
        n0 += 1 - label
        out_rows.append([
            str(Path(rec.path).resolve()), label,
            "" if mask is None else str(Path(mask).resolve()),
            "" if rec.group is None else rec.group,
        ])
    if n1 + n0 == 0:
        raise DataError("every image was dropped; the new manifest would be empty")
    write_csv(out_manifest, ["path", "label", "mask", "group"], out_rows)
    return {
        "manifest": str(out_manifest),
        "source": source_dataset.source,
        "images": n1 + n0,
        "positive": n1,
        "negative": n0,
        "kept": len(source_dataset) - len(relabelled) - len(dropped),
        "relabelled": len(relabelled),
        "dropped": len(dropped),
        "relabelled_paths": relabelled,
        "dropped_paths": dropped,
    }
