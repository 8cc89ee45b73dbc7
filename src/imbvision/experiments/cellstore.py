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


def synthetic_key(data_key: str, specs: list[str], seed: int, split: Any, kind: str, image_size: int, tiles: int,
                  max_n: int) -> str:
    """Key of the synthetic-image features made for one training split."""
    return combine("synthetic-v2", data_key, specs, seed, split_fingerprint(split), kind, image_size, tiles, max_n)


def load_synthetic(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Stored ``(X, y)`` when the file is whole, carries ``key`` and its arrays agree; else ``None`` (recompute)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as fh:
            if (fh.metadata() or {}).get("key") != key:
                return None
            X, y = fh.get_tensor("X"), fh.get_tensor("y")
    except Exception:  # noqa: BLE001 - any parse failure means a damaged cache file: recompute it
        return None
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y) or not np.isfinite(X).all():
        return None
    return X, y


def save_synthetic(path: Path, key: str, X: np.ndarray, y: np.ndarray) -> None:
    """Write ``(X, y)`` atomically with ``key`` in the safetensors metadata."""
    from safetensors.numpy import save

    from .._io import atomic_write

    with atomic_write(path, "wb") as fh:
        fh.write(save({"X": np.ascontiguousarray(X), "y": np.ascontiguousarray(y)}, metadata={"key": key}))
