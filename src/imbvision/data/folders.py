"""Folder sources: a class-folder tree and the Magnetic-tile layout.

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

__all__ = ["read_folder", "read_magnetic_tile", "images_under"]


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
