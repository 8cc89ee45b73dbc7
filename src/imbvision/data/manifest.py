"""CSV manifests: ``path,label[,mask,group]``, one row per image.

Checked up front, before any image is read: a column given twice, the same
image listed twice (23 of 42 images landed in two splits before), a
``--positive`` that is not a label, and labels that differ only in case are
errors naming the file, the lines and what would be valid. A listed file name
is kept exactly (a leading space is part of the name) when such a file
exists; otherwise surrounding spaces are taken as CSV formatting.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

from .._csv import unneutralize
from ..errors import DataError
from .labels import check_positive
from .records import Dataset, ImageRecord
from .source_registry import register_source, source_help

__all__ = ["read_csv", "read_table"]

_TRUE = {"1", "true", "yes", "positive", "pos", "y", "t"}
_FALSE = {"0", "false", "no", "negative", "neg", "n", "f"}


def _parse_label(value: str, positive: str | None, where: str) -> int:
    v = value.strip()
    if positive is not None:
        return int(v == positive)
    low = v.lower()
    if low in _TRUE:
        return 1
    if low in _FALSE:
        return 0
    raise DataError(
        f"{where}: unknown label {value!r}; valid: 0/1 (or true/false, positive/negative), "
        "or name the positive class with --positive CLASS"
    )


def read_table(path: Path, required: tuple[str, ...], *, what: str, hint: str) -> tuple[list[dict], list[str]]:
    """Read a UTF-8 CSV into rows, with one clear error for bad encoding, bad CSV, repeated or missing columns.

    ``what`` names the file in messages ("manifest", "review file"); ``hint`` says what is expected.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [(f or "").strip() for f in (reader.fieldnames or [])]
            seen: dict[str, int] = {}
            for f in fields:
                if f.casefold() in seen:
                    raise DataError(
                        f"{what} {path} has the column {f!r} twice (header: {', '.join(fields)}); the last would "
                        f"silently win -- keep one column of each name; {hint}"
                    )
                seen[f.casefold()] = 1
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{what} {path} is not valid CSV: {exc}") from None
    missing = [c for c in required if c not in fields]
    if missing:
        raise DataError(
            f"{what} {path} lacks column(s) {', '.join(missing)}; found {', '.join(fields) or 'none'}; {hint}"
        )
    return rows, fields


def _listed_path(base: Path, raw: str) -> Path:
    """The file a manifest cell names: exactly as written when it exists, else without surrounding spaces.

    A cell that imbvision itself neutralised against spreadsheet formulas (``'=x.png``) is read back too.
    """
    tried = []
    for text in (raw, raw.strip(), unneutralize(raw.strip())):
        if text and text not in tried:
            tried.append(text)
    paths = [Path(t) if Path(t).is_absolute() else base / t for t in tried]
    for p in paths:
        if os.path.lexists(p):
            return p
    return paths[min(1, len(paths) - 1)]


@register_source("csv", syntax="csv:PATH (or a .csv file)",
                 description="manifest with columns path,label and optional mask,group; paths relative to the CSV",
                 matches=lambda text: text.lower().endswith(".csv"))
def _csv_source(rest: str, positive: str | None) -> Dataset:
    return read_csv(Path(rest), positive=positive)


def read_csv(path: Path, *, positive: str | None = None) -> Dataset:
    """Manifest ``path,label[,mask,group]``; relative paths are relative to the CSV.

    Raises
    ------
    DataError
        A missing or unreadable manifest, repeated columns, an image listed on two
        rows, an unknown label, or a ``positive`` that is not exactly a label.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} not found; {source_help()}")
    rows, _ = read_table(path, ("path", "label"), what="manifest", hint="required: path,label; optional: mask,group")
    if not rows:
        raise DataError(f"manifest {path} has a header but no rows")
    rows = [{(k or "").strip(): (v or "") for k, v in row.items()} for row in rows]
    if positive is not None:
        check_positive((r["label"].strip() for r in rows), positive, where=f"manifest {path}")
    base = path.parent
    records = []
    lines: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows, start=2):
        where = f"{path} line {i}"
        if not row["path"].strip():
            raise DataError(f"{where}: empty path")
        img = _listed_path(base, row["path"])
        m = row.get("mask", "")
        mask = _listed_path(base, m) if m.strip() else None
        g = row.get("group", "").strip() or None
        label = _parse_label(row["label"], positive, where)
        lines[os.path.normpath(os.path.abspath(img))].append(i)
        records.append(ImageRecord(path=img, label=label, mask=mask, group=g, class_name=row["label"].strip()))
    repeated = [(p, ls) for p, ls in lines.items() if len(ls) > 1]
    if repeated:
        shown = "; ".join(f"{p} on lines {', '.join(map(str, ls))}" for p, ls in repeated[:3])
        more = f"; and {len(repeated) - 3} more" if len(repeated) > 3 else ""
        raise DataError(
            f"manifest {path} lists {len(repeated)} image(s) on more than one row ({shown}{more}); a repeated row "
            "would put one image in two splits -- keep one row per image"
        )
    return Dataset(records, source=f"csv:{path}", positive_name=positive or "1", negative_name="0")
