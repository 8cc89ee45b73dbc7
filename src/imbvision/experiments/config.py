"""The configuration of a ``compare`` run (its ``config.json`` is the fingerprint its cells are keyed on).

Declared in :mod:`imbvision.spec` (one field per setting); re-exported here where the comparison reads it.
"""

from __future__ import annotations

from ..spec import BASELINE, EXECUTORS, CompareConfig

__all__ = ["CompareConfig", "BASELINE", "EXECUTORS"]
