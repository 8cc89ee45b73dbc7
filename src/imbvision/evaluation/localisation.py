"""How well heat maps localise the object: pixel AUROC and AUPRO, from maps and masks.

Both are the localisation scores of the MVTec AD benchmark (Bergmann et al., *MVTec AD*, CVPR 2019;
*The MVTec Anomaly Detection Dataset*, IJCV 2021):

- **pixel AUROC**: every pixel of the scored images is a sample, labelled by the masks
  (``sklearn.metrics.roc_auc_score``);
- **AUPRO**: the per-region overlap (PRO) — the mean over every connected object region of the
  share of its pixels at or above a threshold — against the false-positive rate over all object-free
  pixels, integrated up to ``FPR = 0.3`` and divided by 0.3 (1 is perfect; a random map scores about
  0.15). Regions are the 8-connected components of each mask (``scipy.ndimage.label``, as the
  MVTec evaluation code). PRO is a weighted true-positive rate — each object pixel weighs
  ``1 / (area of its region × number of regions)`` — so the curve is scikit-learn's weighted
  ``roc_curve``, and only the integration up to the limit is written here.

The scored images are the masked positives and every negative; positives without a mask are left
out (their object pixels are unknown). Memory is bounded: each map and mask is taken at a long side
of at most ``max_side`` pixels (maps bilinear by the caller, masks nearest-neighbour, as anomalib
resizes masks), and when the pixels would exceed ``max_pixels`` the negative images' pixels are
sampled with a regular stride and weighted by it, so rates over object-free pixels stay unbiased.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import DataError

__all__ = ["aupro", "pixel_auroc", "localisation_scores", "resize_mask", "bounded_size", "FPR_LIMIT",
           "MAX_SIDE", "MAX_PIXELS"]

#: The false-positive rate AUPRO is integrated up to (Bergmann et al. 2021).
FPR_LIMIT = 0.3
#: Longest side of a scored map (pixels).
MAX_SIDE = 256
#: Most pixels scored at once before negative images are sampled.
MAX_PIXELS = 4_000_000


def bounded_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """``(W, H)`` scaled down (aspect kept, at least 1 pixel) so the long side is at most ``max_side``."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool ``(H, W)`` mask at ``size=(W, H)`` by nearest neighbour (PIL)."""
    from PIL import Image

    m = np.asarray(mask, dtype=bool)
    if (m.shape[1], m.shape[0]) == tuple(size):
        return m
    return np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(tuple(size), Image.NEAREST)) > 127


def _check(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> None:
    if len(maps) != len(masks):
        raise DataError(f"{len(maps)} heat maps for {len(masks)} masks; give one mask (or None) per map")
    for i, (h, m) in enumerate(zip(maps, masks)):
        if np.ndim(h) != 2:
            raise DataError(f"heat map {i} has shape {np.shape(h)}; give (H, W) maps")
        if m is not None and np.shape(m) != np.shape(h):
            raise DataError(f"mask {i} is {np.shape(m)} but its heat map is {np.shape(h)}; give them at one size")
        if not np.isfinite(h).all():
            raise DataError(f"heat map {i} holds NaN or infinite values; every pixel needs a finite score")


def _pixels(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], max_pixels: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Flattened scores, labels, FPR weights, PRO weights of the scored pixels, and the negatives' stride."""
    from scipy.ndimage import label

    _check(maps, masks)
    has = [m is not None and bool(np.any(m)) for m in masks]
    n_pos_px = sum(np.size(h) for h, k in zip(maps, has) if k)
    n_neg_px = sum(np.size(h) for h, k in zip(maps, has) if not k)
    stride = max(1, int(np.ceil(n_neg_px / max(1, max_pixels - n_pos_px))))
    regions: list[tuple[np.ndarray, int]] = []
    for m, k in zip(masks, has):
        if k:
            lab, n = label(np.asarray(m, dtype=bool), structure=np.ones((3, 3), dtype=int))
            regions.append((lab, n))
    n_regions = sum(n for _, n in regions)
    scores, labels, w_fpr, w_pro = [], [], [], []
    it = iter(regions)
    for h, k in zip(maps, has):
        s = np.asarray(h, dtype=np.float32).reshape(-1)
        if not k:  # an image without object pixels: every pixel is object-free (sampled by the stride)
            s = s[::stride]
            scores.append(s)
            labels.append(np.zeros(len(s), dtype=bool))
            w_fpr.append(np.full(len(s), float(stride)))
            w_pro.append(np.zeros(len(s)))
            continue
        lab, n = next(it)
        lab = lab.reshape(-1)
        area = np.bincount(lab, minlength=n + 1).astype(np.float64)
        obj = lab > 0
        scores.append(s)
        labels.append(obj)
        w_fpr.append(np.where(obj, 0.0, 1.0))
        w_pro.append(np.where(obj, 1.0 / (area[lab] * n_regions), 0.0))
    return (np.concatenate(scores), np.concatenate(labels), np.concatenate(w_fpr), np.concatenate(w_pro), stride)


def _need_both(labels: np.ndarray) -> None:
    if not labels.any():
        raise DataError("no object pixel in the masks: pixel AUROC and AUPRO need at least one masked positive")
    if labels.all():
        raise DataError("every pixel is an object pixel: pixel AUROC and AUPRO need object-free pixels too")


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], *,
                max_pixels: int = MAX_PIXELS) -> float:
    """ROC-AUC over pixels: each pixel a sample, its mask value the label.

    Parameters
    ----------
    maps
        Heat maps, each ``(H_i, W_i)`` float (higher = more object-like).
    masks
        Bool masks of the same shapes, or ``None`` for an image without object (all pixels negative).

    Raises
    ------
    DataError
        Shapes that differ, non-finite scores, or no object (or no object-free) pixel.
    """
    s, y, w_fpr, _, _ = _pixels(maps, masks, max_pixels)
    return _auroc_of(s, y, w_fpr)


def _auroc_of(s: np.ndarray, y: np.ndarray, w_fpr: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    _need_both(y)
    return float(roc_auc_score(y, s, sample_weight=np.where(y, 1.0, w_fpr)))


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], *, fpr_limit: float = FPR_LIMIT,
          max_pixels: int = MAX_PIXELS) -> float:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit`` (Bergmann et al. 2021).

    Parameters
    ----------
    maps, masks
        As :func:`pixel_auroc`.
    fpr_limit
        Upper end of the integration over the false-positive rate of object-free pixels, in (0, 1].

    Returns
    -------
    float
        ``∫₀^limit PRO(FPR) dFPR / limit`` in [0, 1]; the curve is linear between its points and
        interpolated at the limit.
    """
    s, y, w_fpr, w_pro, _ = _pixels(maps, masks, max_pixels)
    return _aupro_of(s, y, w_fpr, w_pro, fpr_limit)


def _aupro_of(s: np.ndarray, y: np.ndarray, w_fpr: np.ndarray, w_pro: np.ndarray, fpr_limit: float) -> float:
    from sklearn.metrics import roc_curve

    if not 0 < fpr_limit <= 1:
        raise DataError(f"fpr_limit must be in (0, 1]; got {fpr_limit!r}")
    _need_both(y)
    fpr, pro, _ = roc_curve(y, s, sample_weight=w_fpr + w_pro)
    keep = fpr <= fpr_limit
    x, v = fpr[keep], pro[keep]
    if x[-1] < fpr_limit:  # the segment that crosses the limit, cut there
        j = int(np.searchsorted(fpr, fpr_limit))
        x = np.r_[x, fpr_limit]
        v = np.r_[v, np.interp(fpr_limit, fpr[j - 1:j + 1], pro[j - 1:j + 1])]
    return float(np.trapezoid(v, x) / fpr_limit)


def localisation_scores(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], *,
                        fpr_limit: float = FPR_LIMIT, max_pixels: int = MAX_PIXELS) -> dict[str, Any]:
    """Pixel AUROC and AUPRO of one set of maps, with what they were computed on.

    Returns
    -------
    dict
        ``pixel_auroc``, ``aupro``, ``fpr_limit``, ``images``, ``masked_positives`` (images with
        object pixels), ``regions``, ``pixels`` (scored), ``negative_pixel_stride`` (1: every pixel of
        the negative images; ``k``: every ``k``-th, weighted by ``k``).
    """
    from scipy.ndimage import label

    s, y, w_fpr, w_pro, stride = _pixels(maps, masks, max_pixels)
    regions = sum(label(np.asarray(m, dtype=bool), structure=np.ones((3, 3), dtype=int))[1]
                  for m in masks if m is not None and np.any(m))
    return {"pixel_auroc": _auroc_of(s, y, w_fpr), "aupro": _aupro_of(s, y, w_fpr, w_pro, fpr_limit),
            "fpr_limit": fpr_limit,
            "images": len(maps), "masked_positives": int(sum(m is not None and bool(np.any(m)) for m in masks)),
            "regions": int(regions), "pixels": int(len(s)), "negative_pixel_stride": int(stride)}
