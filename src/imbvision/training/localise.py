"""The localisation score of a fitted heat-map head on one split: its maps against the masks.

Shared by ``train`` (``results.json`` and the report) and every ``compare`` cell (the leaderboard):
the head's patch scores of the split's masked positives and all its negatives, drawn as maps at a
bounded resolution (:func:`~imbvision.evaluation.localisation.bounded_size`) with the same
alignment and smoothing as the heat maps a user sees (:func:`~imbvision.backbones.patches.grid_to_image`),
scored by :func:`~imbvision.evaluation.localisation.localisation_scores` (pixel AUROC, AUPRO).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..evaluation.localisation import MAX_SIDE, bounded_size, localisation_scores, resize_mask
from ..strategies.registry import Recipe

__all__ = ["split_localisation", "gives_heatmaps", "localisation_means"]


def gives_heatmaps(recipe: Recipe) -> bool:
    """Whether the recipe's head draws heat maps (its record says so)."""
    from .head import choose_head

    return bool(choose_head(recipe).record.heatmaps)


def split_localisation(head: Any, feats: Any, records: Sequence, index: np.ndarray, *, max_side: int = MAX_SIDE,
                       sigma: float = 4.0, batch: int = 64) -> dict[str, Any] | None:
    """Pixel AUROC and AUPRO of ``head``'s heat maps on the images ``index`` (e.g. the test split).

    Parameters
    ----------
    head
        A fitted head with ``patch_scores(features) -> (n, h, w)``.
    feats
        The patch features of every record (indexed by ``index``).
    records
        The dataset's records (labels and mask paths).
    index
        Rows to score; positives without a mask (or with one that cannot be read) are left out.
    max_side
        Longest side of each scored map, pixels.

    Returns
    -------
    dict or None
        :func:`~imbvision.evaluation.localisation.localisation_scores` plus ``unmasked_positives``
        (left out) and ``max_side``; ``None`` when no scored positive has a mask.
    """
    from ..backbones.patches import grid_to_image
    from ..data.decode import load_mask

    index = np.asarray(index, dtype=np.int64)
    masks: dict[int, np.ndarray] = {}
    left_out = 0
    for i in index:
        r = records[int(i)]
        if r.label != 1:
            continue
        try:
            m = load_mask(r.mask).numpy() if r.mask is not None else None
        except Exception:  # noqa: BLE001 - an unreadable mask only leaves its image out of this score
            m = None
        if m is None or not m.any():
            left_out += 1
            continue
        masks[int(i)] = m
    if not masks:
        return None
    keep = np.array([int(i) for i in index if records[int(i)].label == 0 or int(i) in masks], dtype=np.int64)
    maps, gts = [], []
    for s in range(0, len(keep), batch):
        part = keep[s:s + batch]
        sub = feats[part]
        z = np.asarray(head.patch_scores(sub), dtype=np.float64)
        for j, i in enumerate(part):
            W, H = (int(v) for v in sub.sizes[j])
            size = bounded_size(W, H, max_side)
            g = np.where(np.isfinite(z[j]), z[j], np.nan)
            g = np.where(np.isnan(g), np.nanmin(g) if np.isfinite(g).any() else 0.0, g)
            maps.append(grid_to_image(g, sub.boxes[j], sub.image_size, size, sigma=sigma))
            gts.append(resize_mask(masks[int(i)], size) if int(i) in masks else None)
    out = localisation_scores(maps, gts)
    return {**out, "unmasked_positives": left_out, "max_side": max_side}


def localisation_means(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean pixel AUROC and AUPRO over the compare cells that scored heat maps (heat-map heads, data with masks)."""
    locs = [c["localisation"] for c in cells if c.get("localisation")]
    if not locs:
        return {}
    return {"pixel_auroc": float(np.mean([v["pixel_auroc"] for v in locs])),
            "aupro": float(np.mean([v["aupro"] for v in locs])), "localisation_cells": len(locs)}
