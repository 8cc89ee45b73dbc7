"""Dataset sources and the one source-string syntax every command uses.

========================================  =========================================
``magnetic-tile:PATH``                    Magnetic-tile layout: ``MT_Free`` negative,
                                          every other ``MT_*`` positive, masks beside
                                          images (``x.jpg`` + ``x.png``).
``mvtec:PATH`` (``anomaly-folder:PATH``)  Benchmark layout (MVTec AD): ``train/good``,
                                          ``test/good`` negative, ``test/<type>``
                                          positive, masks ``ground_truth/<type>/
                                          <name>_mask.png``; ``--split official``.
``csv:PATH`` or ``PATH.csv``              Manifest with columns ``path,label`` and
                                          optional ``mask,group``; paths relative to
                                          the CSV.
``folder:PATH`` or an existing folder     Class-folder tree ``PATH/<class>/**/*.png``;
                                          ``positive`` names the positive class.
``demo[:N[:RATE[:SEED[:SIZE]]]]``         The procedural demo set (generated once into
                                          the cache folder; SIZE in px, default 128).
========================================  =========================================

Each form is a record in :data:`~imbvision.data.source_registry.SOURCES`,
registered beside its reader (:mod:`.manifest`, :mod:`.folders`,
:mod:`.synthetic`); a new form is one decorated function in its own module
plus its import here.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from . import manifest, folders, synthetic  # noqa: F401,I001 - importing registers the built-in sources, in help order
from .folders import read_anomaly_folder, read_folder, read_magnetic_tile
from .manifest import read_csv, read_table
from .records import Dataset
from .source_registry import SOURCES, cache_root, source_help

__all__ = ["load_source", "read_folder", "read_csv", "read_table", "read_magnetic_tile", "read_anomaly_folder",
           "cache_root", "SOURCE_HELP", "SOURCES"]

SOURCE_HELP = source_help()


def load_source(text: str, *, positive: str | None = None) -> Dataset:
    """Read a dataset from a source string (see module docstring).

    Parameters
    ----------
    text
        The source string: ``kind:REST`` for a registered kind, or a bare ``.csv``
        file, folder or ``demo``.
    positive
        For class folders and CSV manifests with named labels: the positive class.

    Raises
    ------
    DataError
        For a missing path, empty folder, unknown label or a source that is not one of the forms.
    """
    text = str(text).strip()
    kind, sep, rest = text.partition(":")
    if sep and len(kind) > 1 and kind in SOURCES:  # len > 1: a Windows drive letter is not a kind
        return SOURCES.get(kind).read(rest, positive)
    if text in SOURCES:
        return SOURCES.get(text).read("", positive)
    for spec in SOURCES:
        if spec.matches is not None and spec.matches(text):
            return spec.read(text, positive)
    if not Path(text).exists():
        raise DataError(f"source {text!r} not found; {SOURCE_HELP}")
    raise DataError(f"source {text!r} is a file but not a .csv manifest; {SOURCE_HELP}")
