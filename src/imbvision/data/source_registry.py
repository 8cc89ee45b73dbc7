"""The registry of data sources: ``kind:REST`` strings map to reader records.

Each reader module registers itself with :func:`register_source` beside its
definition (timm's ``_registry`` pattern); this module never imports them.
:mod:`imbvision.data.sources` imports the built-in ones and dispatches.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..registry import Registry
from .records import Dataset

__all__ = ["SourceSpec", "SOURCES", "register_source", "cache_root", "cache_override", "source_help"]


@dataclass(frozen=True)
class SourceSpec:
    """One data-source kind.

    Attributes
    ----------
    name
        The prefix before ``:`` (``csv``, ``folder``, ...).
    read
        ``read(rest, positive) -> Dataset``: ``rest`` is the text after ``name:``.
    syntax
        How the source is written, for help texts.
    description
        What layout it reads.
    matches
        Optional test of a bare string (no prefix) that this reader claims, e.g. an existing folder.
    """

    name: str
    read: Callable[[str, "str | None"], Dataset]
    syntax: str
    description: str
    matches: Callable[[str], bool] | None = None


SOURCES: Registry[SourceSpec] = Registry("data source")


def register_source(name: str, *, syntax: str, description: str,
                    matches: Callable[[str], bool] | None = None):
    """Decorator: register ``fn(rest, positive) -> Dataset`` as the reader of ``name:REST`` sources."""

    def deco(fn: Callable[[str, "str | None"], Dataset]):
        SOURCES.register(name, SourceSpec(name, fn, syntax, description, matches))
        return fn

    return deco


def source_help() -> str:
    """One line listing every registered source form."""
    return "a source is " + ", ".join(s.syntax for s in SOURCES)


#: A ``--cache-dir`` given to a command, in force while :func:`cache_override` is open.
_CACHE_OVERRIDE: "contextvars.ContextVar[Path | None]" = contextvars.ContextVar("imbvision_cache", default=None)


def cache_root() -> Path:
    """Folder for generated data and caches.

    In order: a :func:`cache_override` in force (a command's ``--cache-dir``),
    ``$IMBVISION_CACHE``, ``~/.cache/imbvision``. The demo set, the embedding cache and
    the image-check database all live under it, so one ``--cache-dir`` moves them all.
    """
    over = _CACHE_OVERRIDE.get()
    if over is not None:
        return over
    env = os.environ.get("IMBVISION_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "imbvision"


@contextlib.contextmanager
def cache_override(folder: "str | os.PathLike[str] | None"):
    """Make :func:`cache_root` return ``folder`` inside the ``with`` block (``None``: no change)."""
    if folder is None:
        yield
        return
    folder = Path(folder).expanduser()
    token = _CACHE_OVERRIDE.set(folder)
    # The environment variable too: worker threads (which do not inherit context variables), DataLoader
    # processes and Ray workers started inside the block then find the same root.
    old = os.environ.get("IMBVISION_CACHE")
    os.environ["IMBVISION_CACHE"] = str(folder)
    try:
        yield
    finally:
        _CACHE_OVERRIDE.reset(token)
        if old is None:
            os.environ.pop("IMBVISION_CACHE", None)
        else:
            os.environ["IMBVISION_CACHE"] = old
