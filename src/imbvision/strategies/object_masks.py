"""Object masks: image and mask checks, bounding boxes, the automatic mask proposal and its contact sheet.

Owns :func:`propose_mask` (segment a positive's object when it has no mask), used by the
synthesisers (``augment-oversample`` and ``copy-paste`` with ``auto_mask``) and by ``derive-masks``
beside the heat maps; :func:`save_mask_contact_sheet`, the PNG grid a person checks proposals on;
:func:`mask_bbox`; and the ``(3, H, W)`` image / ``(H, W)`` mask checks the synthesisers share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

__all__ = ["propose_mask", "save_mask_contact_sheet", "mask_bbox"]


def _check_image(image: Any, what: str = "image") -> Tensor:
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"{what} must be a (3, H, W) float tensor in [0, 1], got {shape}")
    if not image.is_floating_point():
        raise ValueError(f"{what} must be a float tensor in [0, 1], got dtype {image.dtype}")
    return image


def _check_mask(mask: Any, image: Tensor, what: str = "mask") -> Tensor:
    if not isinstance(mask, Tensor) or mask.ndim != 2 or tuple(mask.shape) != tuple(image.shape[1:]):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(
            f"{what} must be an (H, W) bool tensor the size of its image "
            f"{tuple(image.shape[1:])}, got {shape}"
        )
    return mask.bool()


def mask_bbox(mask: Tensor) -> tuple[int, int, int, int] | None:
    """Bounding box ``(y0, y1, x0, x1)`` (end exclusive) of a bool mask; None if empty."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


# --------------------------------------------------------------------------- automatic masks


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values``.

    Written with numpy (a histogram and a between-class variance) because
    scikit-image, which has ``threshold_otsu``, is only a test dependency.
    """
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(float)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centers)
    with np.errstate(divide="ignore", invalid="ignore"):
        m0 = s0 / w0
        m1 = (s0[-1] - s0) / w1
        between = w0 * w1 * (m0 - m1) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    return float(edges[int(np.argmax(between)) + 1])


def _area_resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))[None, None]
    mode = "area" if size[0] <= a.shape[0] and size[1] <= a.shape[1] else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return torch.nn.functional.interpolate(t, size=size, mode=mode, **kw)[0, 0].numpy()


def propose_mask(
    image: Tensor,
    *,
    work_size: int = 256,
    kernel_frac: float = 0.5,
    min_contrast: float = 0.04,
    keep_frac: float = 0.25,
) -> Tensor:
    """Segment the object of ``image`` automatically (for positives without a mask).

    Method: the grayscale image (shrunk to at most ``work_size`` pixels a
    side) is compared with an estimate of its background: a median filter
    whose window is ``kernel_frac`` of the shorter side, computed on a
    48-pixel thumbnail (the background is smooth, so this is fast) and
    enlarged back. Objects smaller than about half the window vanish from
    the median, so ``|gray - background|`` is large on the object and small
    on the background. That difference is lightly smoothed, thresholded by
    Otsu's method, cleaned by a 3x3 opening and closing and hole filling;
    the connected component with the largest total difference is kept, with
    any other of at least ``keep_frac`` of its total. The mask is enlarged
    to the image size (bilinear coverage >= 0.5, so outlines stay smooth).

    Limits: an object spanning much more than half the window is only partly
    found (its centre becomes "background"); a faint object (peak difference
    under ``min_contrast``) gives an empty mask; on strongly textured or
    unevenly lit surfaces (streaks, dark borders) the proposal often picks
    the texture instead of the object. Always check proposals with
    :func:`save_mask_contact_sheet` before relying on them.

    Parameters
    ----------
    image
        ``(3, H, W)`` float tensor in [0, 1].

    Returns
    -------
    Tensor
        ``(H, W)`` bool mask, possibly empty.
    """
    image = _check_image(image)
    _, H, W = image.shape
    img = image.detach().float().cpu()
    gray = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).numpy().astype(np.float64)
    f = min(1.0, work_size / max(H, W))
    hw = (max(1, round(H * f)), max(1, round(W * f)))
    small = _area_resize(gray, hw) if f < 1.0 else gray
    ft = min(1.0, 48 / max(hw))
    thw = (max(1, round(hw[0] * ft)), max(1, round(hw[1] * ft)))
    thumb = _area_resize(small, thw) if ft < 1.0 else small
    k = max(3, int(kernel_frac * min(thw)) | 1)
    bg = ndimage.median_filter(thumb, size=k, mode="reflect")
    bg = _area_resize(bg, hw) if ft < 1.0 else bg
    diff = ndimage.gaussian_filter(np.abs(small - bg), sigma=0.7)
    if float(diff.max()) < min_contrast:
        return torch.zeros(H, W, dtype=torch.bool)
    thr = max(_otsu(diff), min_contrast / 2)
    fg = diff > thr
    st = np.ones((3, 3), bool)
    fg = ndimage.binary_opening(fg, structure=st)
    fg = ndimage.binary_closing(fg, structure=st, border_value=0)
    fg = ndimage.binary_fill_holes(fg)
    labels, n = ndimage.label(fg)
    if n == 0:
        return torch.zeros(H, W, dtype=torch.bool)
    mass = np.asarray(ndimage.sum(diff, labels, np.arange(1, n + 1)))
    keep = np.flatnonzero(mass >= keep_frac * mass.max()) + 1
    sel = np.isin(labels, keep)
    if f < 1.0:
        sel = _area_resize(sel.astype(np.float64), (H, W)) >= 0.5
    return torch.from_numpy(np.ascontiguousarray(sel))


def save_mask_contact_sheet(
    images: Sequence[Tensor],
    masks: Sequence[Tensor | None],
    path: str | Path,
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 6,
) -> Path:
    """Save a PNG grid of ``images`` with their ``masks`` outlined in red.

    Meant for a person to check automatic masks (:func:`propose_mask`)
    before copy-paste relies on them. Returns the written path.
    """
    from .examples import save_example_grid

    if titles is None:
        titles = []
        for i, (im, m) in enumerate(zip(images, masks)):
            area = 0.0 if m is None else 100.0 * float(m.float().mean())
            titles.append(f"#{i}  mask {area:.1f}%")
    return save_example_grid(images, path, masks=masks, titles=titles, ncols=ncols)
