"""Error types raised for bad user input.

Every error quotes the bad value or file and says what would be valid. They
subclass :class:`ValueError` so callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations

__all__ = ["ImbvisionError", "DataError", "BadFileError", "ConfigError", "BundleError"]


class ImbvisionError(ValueError):
    """Base class of every error imbvision raises for bad input."""


class DataError(ImbvisionError):
    """A dataset as a whole is unusable (one class, empty folder, label clash...)."""


class BadFileError(DataError):
    """One file cannot be used; ``path`` names it and ``reason`` says why."""

    def __init__(self, path: object, reason: str | None = None) -> None:
        if reason is None:
            # PyTorch re-raises an error from a DataLoader worker as ``type(msg)`` with the worker's traceback
            # text; keep only its last line, so any worker count gives the same one-line error.
            path, reason = _from_worker_text(str(path))
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _from_worker_text(text: str) -> tuple[str, str]:
    lines = text.rstrip().splitlines() or [""]
    last, marker = lines[-1], "BadFileError: "
    body = last[last.find(marker) + len(marker):] if marker in last else last
    path, sep, reason = body.partition(": ")
    return (path, reason) if sep else ("", body)


class ConfigError(ImbvisionError):
    """An option, strategy name or parameter is out of its valid range."""


class BundleError(ImbvisionError):
    """A saved model bundle is missing, truncated, tampered with or incompatible."""
