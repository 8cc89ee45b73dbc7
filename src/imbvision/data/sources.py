"""Dataset sources and the one source-string syntax every command uses.

========================================  =========================================
``magnetic-tile:PATH``                    Magnetic-tile layout: ``MT_Free`` negative,
                                          every other ``MT_*`` positive, masks beside
                                          images (``x.jpg`` + ``x.png``).
``csv:PATH`` or ``PATH.csv``              Manifest with columns ``path,label`` and
                                          optional ``mask,group``; paths relative to
                                          the CSV.
``folder:PATH`` or an existing folder     Class-folder tree ``PATH/<class>/**/*.png``;
                                          ``positive`` names the positive class.
``demo[:N[:RATE[:SEED]]]``                The procedural demo set (generated once into
                                          the cache folder).
========================================  =========================================
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import ConfigError, DataError
from .decode import IMAGE_SUFFIXES
from .records import Dataset, ImageRecord

__all__ = ["load_source", "read_folder", "read_csv", "read_table", "read_magnetic_tile", "cache_root", "SOURCE_HELP"]

SOURCE_HELP = (
    "a source is magnetic-tile:PATH, csv:PATH (or a .csv file), folder:PATH (or a folder, "
    "with --positive CLASS), or demo[:N[:RATE[:SEED]]]"
)

_TRUE = {"1", "true", "yes", "positive", "pos", "y", "t"}
_FALSE = {"0", "false", "no", "negative", "neg", "n", "f"}


def cache_root() -> Path:
    """Folder for generated data and caches (``$IMBVISION_CACHE`` or ``~/.cache/imbvision``)."""
    env = os.environ.get("IMBVISION_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "imbvision"


def load_source(text: str, *, positive: str | None = None) -> Dataset:
    """Read a dataset from a source string (see module docstring).

    Parameters
    ----------
    text
        The source string.
    positive
        For class folders and CSV manifests with named labels: the positive class.

    Raises
    ------
    DataError
        For a missing path, empty folder, unknown label or a source that is not one of the forms.
    """
    text = str(text).strip()
    kind, sep, rest = text.partition(":")
    if sep and len(kind) > 1 and kind in ("magnetic-tile", "csv", "folder", "demo"):
        if kind == "magnetic-tile":
            return read_magnetic_tile(Path(rest))
        if kind == "csv":
            return read_csv(Path(rest), positive=positive)
        if kind == "folder":
            return read_folder(Path(rest), positive=positive)
        return _demo(rest)
    if text == "demo":
        return _demo("")
    path = Path(text)
    if path.suffix.lower() == ".csv":
        return read_csv(path, positive=positive)
    if path.is_dir():
        return read_folder(path, positive=positive)
    if not path.exists():
        raise DataError(f"source {text!r} not found; {SOURCE_HELP}")
    raise DataError(f"source {text!r} is a file but not a .csv manifest; {SOURCE_HELP}")


def _demo(rest: str) -> Dataset:
    from .synthetic import DemoSpec, ensure_demo_dataset

    parts = [p for p in rest.split(":") if p]
    usage = "write demo[:N[:RATE[:SEED]]], e.g. demo:600:0.05:0"
    if len(parts) > 3:
        raise DataError(f"bad demo source 'demo:{rest}': {len(parts)} fields; {usage}")
    try:
        n = int(parts[0]) if len(parts) > 0 else 600
        rate = float(parts[1]) if len(parts) > 1 else 0.05
        seed = int(parts[2]) if len(parts) > 2 else 0
    except ValueError as exc:
        raise DataError(f"bad demo source 'demo:{rest}' ({exc}); {usage}") from None
    try:
        spec = DemoSpec(n=n, positive_rate=rate, seed=seed)
    except ValueError as exc:  # ConfigError from DemoSpec: n or rate out of range
        raise DataError(f"bad demo source 'demo:{rest}': {exc}; {usage}") from None
    folder = cache_root() / "demo" / f"n{spec.n}-r{spec.positive_rate:g}-s{spec.seed}"
    return read_csv(ensure_demo_dataset(folder, spec))


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_folder(root: Path, *, positive: str | None) -> Dataset:
    """Class-folder tree ``root/<class>/**/<image>``; ``positive`` is the positive class."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"folder {root} not found; {SOURCE_HELP}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"folder {root} has no class sub-folders; expected {root}/<class>/<image files>")
    if positive is None:
        raise DataError(f"folder {root} has classes {', '.join(classes)}; say which is positive with --positive CLASS")
    if positive not in classes:
        raise DataError(f"positive class {positive!r} is not a sub-folder of {root}; classes: {', '.join(classes)}")
    records: list[ImageRecord] = []
    for name in classes:
        files = _images_under(root / name)
        if not files:
            raise DataError(
                f"class folder {root / name} has no images (valid suffixes: {', '.join(IMAGE_SUFFIXES)}); "
                "remove it or add images"
            )
        label = int(name == positive)
        records += [ImageRecord(path=f.resolve(), label=label, class_name=name) for f in files]
    return Dataset(records, source=f"folder:{root}", positive_name=positive, negative_name="other")


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
    """Read a UTF-8 CSV into rows, with one clear error for bad encoding, bad CSV or missing columns.

    ``what`` names the file in messages ("manifest", "review file"); ``hint`` says what is expected.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            fields = [(f or "").strip() for f in (reader.fieldnames or [])]
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


def read_csv(path: Path, *, positive: str | None = None) -> Dataset:
    """Manifest ``path,label[,mask,group]``; relative paths are relative to the CSV."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} not found; {SOURCE_HELP}")
    rows, _ = read_table(path, ("path", "label"), what="manifest", hint="required: path,label; optional: mask,group")
    if not rows:
        raise DataError(f"manifest {path} has a header but no rows")
    base = path.parent
    records = []
    for i, row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "") for k, v in row.items()}
        where = f"{path} line {i}"
        p = row["path"].strip()
        if not p:
            raise DataError(f"{where}: empty path")
        img = Path(p) if Path(p).is_absolute() else base / p
        m = row.get("mask", "").strip()
        mask = None if not m else (Path(m) if Path(m).is_absolute() else base / m)
        g = row.get("group", "").strip() or None
        label = _parse_label(row["label"], positive, where)
        records.append(ImageRecord(path=img, label=label, mask=mask, group=g, class_name=row["label"].strip()))
    return Dataset(records, source=f"csv:{path}", positive_name=positive or "1", negative_name="0")


def read_magnetic_tile(root: Path) -> Dataset:
    """The Magnetic-tile defect dataset layout (``MT_<class>/Imgs/*.jpg`` + ``.png`` masks)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"magnetic-tile folder {root} not found; expected the folder holding MT_Free, MT_Crack, ...")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("MT_"))
    if "MT_Free" not in classes:
        raise DataError(f"{root} has no MT_Free folder; found {', '.join(classes) or 'no MT_* folders'}")
    records = []
    for name in classes:
        imgs = sorted(p for p in (root / name).rglob("*.jpg"))
        if not imgs:
            raise DataError(f"class folder {root / name} has no .jpg images")
        for img in imgs:
            mask = img.with_suffix(".png")
            records.append(ImageRecord(
                path=img, label=int(name != "MT_Free"), mask=mask if mask.exists() else None,
                group=None, class_name=name,
            ))
    return Dataset(records, source=f"magnetic-tile:{root}", positive_name="defect", negative_name="MT_Free")
