"""How image files are named to a user: with their folder, never the bare file name.

Where numbering restarts in every folder (``test/crack/003.png`` and
``test/good/003.png`` of the benchmark layout) the bare name ``003.png`` is
ambiguous; reports, CSVs and audit pages name a file relative to the data root
(the source's folder), or -- when the root is not known -- relative to the
folder all the listed files share.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

__all__ = ["source_root", "display_names"]


def source_root(source: str | None) -> Path | None:
    """The folder a source string's paths are relative to (``mvtec:/d`` -> ``/d``; a manifest -> its folder).

    ``None`` for a source without a path (``demo``) or an unknown form.
    """
    if not isinstance(source, str):  # an in-memory source (a dict or records) has no root folder
        return None
    kind, sep, rest = source.partition(":")
    if not sep or not rest or len(kind) <= 1:
        return None
    p = Path(rest)
    return p.parent if p.suffix.lower() == ".csv" or p.is_file() else p


def display_names(paths: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str] | None = None) -> list[str]:
    """Each path relative to ``root`` when inside it, else relative to the folder all ``paths`` share.

    Parameters
    ----------
    paths
        Image paths, ``(n,)``.
    root
        The data root (:func:`source_root`), optional.

    Returns
    -------
    list of str
        POSIX-style names, ``(n,)``; at least the file name, never the bare name of two different files.
    """
    absolute = [os.path.abspath(os.fspath(p)) for p in paths]
    if not absolute:
        return []
    base = os.path.abspath(os.fspath(root)) if root is not None else None
    if base is None or not all(a == base or a.startswith(base.rstrip(os.sep) + os.sep) for a in absolute):
        try:
            base = os.path.commonpath([os.path.dirname(a) for a in absolute])
        except ValueError:  # different drives
            return [Path(a).as_posix() for a in absolute]
    return [Path(os.path.relpath(a, base)).as_posix() for a in absolute]
