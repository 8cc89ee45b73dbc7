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

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ConfigError(ImbvisionError):
    """An option, strategy name or parameter is out of its valid range."""


class BundleError(ImbvisionError):
    """A saved model bundle is missing, truncated, tampered with or incompatible."""
