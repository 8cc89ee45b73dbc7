"""The resumable stores of ``compare``: cells and synthetic-image features, keyed by data and settings.

A stored item is reused only when it parses and carries the key the current
run would give it; anything else (a zero-byte file, garbled JSON, a damaged
safetensors file, a key from other data or settings) is recomputed. The key is
a fingerprint of the records' content, labels, masks and groups plus the
settings and split indices (:mod:`imbvision._fingerprint`), never the source
string alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .._fingerprint import combine, split_fingerprint

from ..training.synthetic_store import load_synthetic, save_synthetic, synthetic_key  # re-exported

__all__ = ["cell_key", "load_cell", "synthetic_key", "load_synthetic", "save_synthetic", "has_cells"]


def cell_key(data_key: str, strategy: str, seed: int, fold: int | None, split: Any) -> str:
    """Key of one compare cell: data and run settings, strategy, seed, fold and the split's indices."""
    return combine("cell-v1", data_key, strategy, seed, fold, split_fingerprint(split))


def load_cell(path: Path, key: str) -> dict[str, Any] | None:
    """The stored cell at ``path`` when it is whole and was made from the same data and settings, else ``None``."""
    try:
        cell = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, zero bytes, garbled, not UTF-8
        return None
    if not isinstance(cell, dict) or cell.get("key") != key:
        return None
    need = ("ap", "test_index", "test_score", "recall_at_p90", "f1", "mcc", "recall", "precision", "roc_auc", "head",
            "timing")
    if any(k not in cell for k in need) or len(cell["test_index"]) != len(cell["test_score"]):
        return None
    return cell


def has_cells(cells_dir: Path) -> bool:
    """Whether a compare folder holds any finished cell (so its settings are worth protecting)."""
    return Path(cells_dir).is_dir() and any(p.stat().st_size > 0 for p in Path(cells_dir).glob("*.json"))
