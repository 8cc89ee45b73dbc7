"""Folder sources: a class-folder tree, the Magnetic-tile layout and the benchmark (MVTec AD) layout.

Hidden files and folders (names starting with ``.``: ``.ipynb_checkpoints``,
macOS ``._x.jpg`` resource forks, ``.DS_Store``) are skipped, as image
libraries (torchvision's ``ImageFolder`` among them) do, and counted in a
note on the dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from .decode import IMAGE_SUFFIXES
from .labels import check_positive
from .records import Dataset, ImageRecord
from .source_registry import register_source, source_help
from .._text import plural

__all__ = ["read_folder", "read_magnetic_tile", "read_anomaly_folder", "images_under", "GOOD"]

#: The folder name of normal (negative) images in the benchmark layout.
GOOD = "good"


def images_under(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> tuple[list[Path], int]:
    """Image files under ``folder`` (sorted) and the number of hidden files/folders skipped."""
    found: list[Path] = []
    hidden = 0
    for here, dirs, files in os.walk(folder):
        keep = [d for d in dirs if not d.startswith(".")]
        hidden += len(dirs) - len(keep)
        dirs[:] = sorted(keep)
        for name in files:
            if name.startswith("."):
                hidden += 1
            elif name.lower().endswith(suffixes):
                found.append(Path(here) / name)
    return sorted(found), hidden


def _hidden_note(hidden: int, root: Path) -> list[str]:
    return [f"{plural(hidden, 'hidden file or folder', 'hidden files and folders')} under {root} skipped (names starting with '.')"] if hidden else []


@register_source("folder", syntax="folder:PATH (or a folder, with --positive CLASS)",
                 description="class-folder tree PATH/<class>/**/<image>; --positive names the positive class",
                 matches=lambda text: Path(text).is_dir())
def _folder_source(rest: str, positive: str | None) -> Dataset:
    return read_folder(Path(rest), positive=positive)


def read_folder(root: Path, *, positive: str | None) -> Dataset:
    """Class-folder tree ``root/<class>/**/<image>``; ``positive`` is the positive class."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"folder {root} not found; {source_help()}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"folder {root} has no class sub-folders; expected {root}/<class>/<image files>")
    if positive is None:
        raise DataError(f"folder {root} has classes {', '.join(classes)}; say which is positive with --positive CLASS")
    check_positive(classes, positive, where=f"folder {root}", what="class folder")
    records: list[ImageRecord] = []
    hidden = 0
    for name in classes:
        files, h = images_under(root / name)
        hidden += h
        if not files:
            raise DataError(
                f"class folder {root / name} has no images (valid suffixes: {', '.join(IMAGE_SUFFIXES)}); "
                "remove it or add images"
            )
        label = int(name == positive)
        records += [ImageRecord(path=f.resolve(), label=label, class_name=name) for f in files]
    return Dataset(records, source=f"folder:{root}", positive_name=positive, negative_name="other",
                   notes=_hidden_note(hidden, root))


@register_source("magnetic-tile", syntax="magnetic-tile:PATH",
                 description="the Magnetic-tile defect set: MT_Free negative, every other MT_* positive, masks beside images")
def _magnetic_tile_source(rest: str, positive: str | None) -> Dataset:
    return read_magnetic_tile(Path(rest))


def read_magnetic_tile(root: Path) -> Dataset:
    """The Magnetic-tile defect dataset layout (``MT_<class>/Imgs/*.jpg`` + ``.png`` masks)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"magnetic-tile folder {root} not found; expected the folder holding MT_Free, MT_Crack, ...")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("MT_"))
    if "MT_Free" not in classes:
        raise DataError(f"{root} has no MT_Free folder; found {', '.join(classes) or 'no MT_* folders'}")
    records = []
    hidden = 0
    for name in classes:
        imgs, h = images_under(root / name, (".jpg",))
        hidden += h
        if not imgs:
            raise DataError(f"class folder {root / name} has no .jpg images")
        for img in imgs:
            mask = img.with_suffix(".png")
            records.append(ImageRecord(
                path=img, label=int(name != "MT_Free"), mask=mask if mask.exists() else None,
                group=None, class_name=name,
            ))
    return Dataset(records, source=f"magnetic-tile:{root}", positive_name="defect", negative_name="MT_Free",
                   notes=_hidden_note(hidden, root))


_ANOMALY_SYNTAX = "mvtec:PATH (or anomaly-folder:PATH)"
_ANOMALY_HELP = ("the benchmark layout of MVTec AD: train/good/ and test/good/ negative, test/<type>/ positive, "
                 "masks in ground_truth/<type>/<name>_mask.png; --split official keeps its train/test")


@register_source("mvtec", syntax=_ANOMALY_SYNTAX, description=_ANOMALY_HELP)
def _mvtec_source(rest: str, positive: str | None) -> Dataset:
    return read_anomaly_folder(Path(rest))


@register_source("anomaly-folder", syntax="anomaly-folder:PATH", description="the same layout as mvtec:PATH")
def _anomaly_folder_source(rest: str, positive: str | None) -> Dataset:
    return read_anomaly_folder(Path(rest))


def _mask_of(root: Path, kind: str, img: Path) -> Path | None:
    """``ground_truth/<type>/<name>_mask.png`` (MVTec AD), else ``ground_truth/<type>/<name>.png``."""
    for cand in (root / "ground_truth" / kind / f"{img.stem}_mask.png", root / "ground_truth" / kind / f"{img.stem}.png"):
        if cand.is_file():
            return cand
    return None


def read_anomaly_folder(root: Path) -> Dataset:
    """The benchmark folder layout of MVTec AD (and the sets published in it; anomalib's ``Folder``/``MVTec``).

    ``train/good/*`` and ``test/good/*`` are negatives; every ``test/<type>/*`` (and any
    ``train/<type>/*`` other than ``good``) is positive, its type kept as ``class_name`` (per-type
    AP in reports); masks come from ``ground_truth/<type>/<name>_mask.png``. Each record's
    ``part`` is its top folder (``train`` or ``test``), the layout's own division that
    ``--split official`` keeps.

    Raises
    ------
    DataError
        A missing folder, a category root given instead of one category (``bottle/``,
        ``cable/``, ...), no ``test/`` or no ``good`` images, or a type folder without images.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"benchmark-layout folder {root} not found; expected {root}/train/good, {root}/test/<type>")
    if not (root / "test").is_dir():
        cats = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "test").is_dir())
        if cats:
            raise DataError(f"{root} holds {len(cats)} categories ({', '.join(cats[:6])}{', ...' if len(cats) > 6 else ''}); "
                            f"give one of them, e.g. mvtec:{root / cats[0]}")
        raise DataError(f"{root} has no test/ folder; the benchmark layout is train/good/, test/good/, test/<type>/ "
                        "and ground_truth/<type>/<name>_mask.png")
    records: list[ImageRecord] = []
    hidden = 0
    for part in ("train", "test"):
        top = root / part
        if not top.is_dir():
            continue
        kinds = sorted(p.name for p in top.iterdir() if p.is_dir() and not p.name.startswith("."))
        for kind in kinds:
            files, h = images_under(top / kind)
            hidden += h
            if not files:
                raise DataError(f"type folder {top / kind} has no images (valid suffixes: {', '.join(IMAGE_SUFFIXES)}); "
                                "remove it or add images")
            label = int(kind != GOOD)
            records += [ImageRecord(path=f, label=label, mask=_mask_of(root, kind, f) if label else None,
                                    class_name=kind, part=part) for f in files]
    if not any(r.label == 0 for r in records):
        raise DataError(f"{root} has no {GOOD}/ images (train/{GOOD} or test/{GOOD}): the layout's negatives")
    return Dataset(records, source=f"mvtec:{root}", positive_name="defect", negative_name=GOOD,
                   notes=_hidden_note(hidden, root))
