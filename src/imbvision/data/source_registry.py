"""The registry of data sources: ``kind:REST`` strings map to reader records.

Each reader module registers itself with :func:`register_source` beside its
definition (timm's ``_registry`` pattern); this module never imports them.
:mod:`imbvision.data.sources` imports the built-in ones and dispatches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..registry import Registry
from .records import Dataset

__all__ = ["SourceSpec", "SOURCES", "register_source", "cache_root", "source_help"]


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


def cache_root() -> Path:
    """Folder for generated data and caches (``$IMBVISION_CACHE`` or ``~/.cache/imbvision``)."""
    env = os.environ.get("IMBVISION_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "imbvision"
