"""Shared pieces of the patch-level heads (``patch``, ``normality``, ``fusion``): input adaptation, label
checks, patch-map scoring and the record builder. Which heads take patch features is each record's
``representation``, not a list here."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError
from .head_base import Head
from .registry import StrategyContext

__all__ = ["as_patches", "patch_map"]


def as_patches(X: Any):
    """``PatchFeatures`` as given; an ``(N, D)`` array as a 1×1 grid (its rows also as global features)."""
    from ..backbones.patches import PatchFeatures

    if isinstance(X, PatchFeatures):
        return X
    arr = np.asarray(X, dtype=np.float32)
    if arr.ndim != 2 or not np.all(np.isfinite(arr)):
        raise DataError(f"patch heads take PatchFeatures or finite (N, D) features; got shape {arr.shape}")
    n = len(arr)
    return PatchFeatures(arr[:, None, None, :], np.arange(n), np.tile([0, 0, 8, 8], (n, 1)),
                         np.tile([8, 8], (n, 1)), 8, {"grid": "1x1"}, None, arr)


def _valid_rows(feats, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Image i's valid patches: ``(P, C)`` float32 features and their flat grid indices."""
    f = feats.image(i)
    v = feats.valid(i).reshape(-1)
    return f.reshape(-1, f.shape[-1])[v], np.flatnonzero(v)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, dtype=np.float64)))


def _check_binary(y: Any, n: int) -> np.ndarray:
    arr = np.asarray(y, dtype=np.float64)
    if arr.shape != (n,):
        raise DataError(f"labels must have shape ({n},); got {arr.shape}")
    if not np.all(np.isin(arr, (0.0, 1.0))):
        raise DataError("patch heads take hard binary labels 0/1 (mixing's soft labels give no patch labels)")
    return arr.astype(np.int64)



def _build(cls):
    def build(ctx: StrategyContext, **params: Any) -> Head:
        return cls(**params, seed=ctx.seed)
    return build


def patch_map(feats, score, batch: int = 128) -> np.ndarray:
    """``(N, h, w)`` scores of every patch, ``score((M, C) float32) -> (M,)``; padding patches get ``-inf``."""
    out = np.full((len(feats), *feats.grid), -np.inf)
    for s, block in feats.batches(batch):
        n, h, w, c = block.shape
        valid = np.stack([feats.valid(s + j) for j in range(n)])  # padding patches are never scored
        out[s:s + n][valid] = np.asarray(score(block[valid]))
    return out
