"""The synthetic-image feature cache: keyed by the data, the steps, the seed and the training split.

A stored file is reused only when it parses and carries the key the current run
would give it (the key is a fingerprint of the records' content, labels, masks
and groups plus the settings, never the source string alone); anything else
(a zero-byte or damaged file, another key) is recomputed. ``train`` and every
``compare`` executor share it through :func:`imbvision.training.cell.synthetic_features`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from .._digest import arrays_digest
from .._fingerprint import combine
from ..notices import CacheWarning

__all__ = ["synthetic_key", "load_synthetic", "save_synthetic"]


def synthetic_key(data_key: str, specs: list[str], seed: int, train_index: Any, *settings: Any) -> str:
    """Key of the synthetic-image features made for one training split (its indices, in full)."""
    idx = np.ascontiguousarray(np.asarray(train_index, dtype=np.int64))
    return combine("synthetic-v3", data_key, specs, seed, hashlib.sha256(idx.tobytes()).hexdigest(), len(idx),
                   [str(v) for v in settings])


def load_synthetic(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Stored ``(X, y)`` when the file is whole, carries ``key`` and its arrays agree; else ``None`` (recompute)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            if meta.get("key") != key:
                return None
            X, y = fh.get_tensor("X"), fh.get_tensor("y")
    except Exception:  # noqa: BLE001 - any parse failure means a damaged cache file: recompute it
        _damaged(path)
        return None
    if meta.get("sha256") != arrays_digest({"X": X, "y": y}):  # flipped bytes, or a file from before checksums
        _damaged(path)
        return None
    if X.ndim < 2 or y.ndim != 1 or len(X) != len(y) or not np.isfinite(X).all():
        return None
    return X, y


def save_synthetic(path: Path, key: str, X: np.ndarray, y: np.ndarray) -> None:
    """Write ``(X, y)`` atomically with ``key`` in the safetensors metadata."""
    from safetensors.numpy import save

    from .._io import atomic_write

    arrays = {"X": np.ascontiguousarray(X), "y": np.ascontiguousarray(y)}
    try:
        with atomic_write(path, "wb") as fh:  # atomic: concurrent writers of one entry each leave a whole file
            fh.write(save(arrays, metadata={"key": key, "sha256": arrays_digest(arrays)}))
    except OSError as exc:
        import errno
        import warnings

        if exc.errno not in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, getattr(errno, "EDQUOT", 0)):
            raise
        warnings.warn(f"synthetic-feature cache {path} cannot be written ({exc.strerror}); the features are "
                      "used from memory", CacheWarning, stacklevel=2)


def _damaged(path: Path) -> None:
    import warnings

    warnings.warn(f"synthetic-feature cache {path} is damaged (checksum or format); recomputing it", CacheWarning,
                  stacklevel=3)
