"""Patch-grid geometry: image ↔ ``S × S`` canvas ↔ patch grid (the ``resize`` rules of
:mod:`imbvision.backbones.patches`), and patch-score grids back to image-sized heat maps.

Where a patch sits: the backbone's convolutions pad symmetrically (``k // 2``), so the feature at
grid cell ``i`` of a stride-``s`` map is centred on canvas pixel ``s·i`` — not ``s·(i + ½)``, the
centre of the ``s × s`` block it would tile (measured: the gradient centroid of a cell of
EfficientNet-Lite0's stride-16 block lies within a few pixels of ``16·i``). Every conversion here
uses that centre; the half-block convention shifted heat maps by ½–1 patch down and to the right.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ConfigError

__all__ = ["RESIZE_MODES", "canvas_view", "mask_to_grid", "grid_to_image", "valid_grid"]

RESIZE_MODES = ("stretch", "keep-aspect")


def _check_resize(resize: str) -> None:
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize {resize!r} invalid; valid: {', '.join(RESIZE_MODES)}")


def canvas_view(arr: np.ndarray, size: int, resize: str = "stretch") -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Resize an ``(H, W, 3)`` uint8 image onto an ``S × S`` canvas.

    Returns
    -------
    view
        ``(3, S, S)`` uint8.
    box
        ``(left, top, right, bottom)`` of the image on the canvas, in canvas pixels
        (the whole canvas for ``stretch``).
    """
    _check_resize(resize)
    im = Image.fromarray(arr)
    if resize == "stretch":
        out = np.asarray(im.resize((size, size), Image.BILINEAR, reducing_gap=None), dtype=np.uint8)
        return out.transpose(2, 0, 1), (0, 0, size, size)
    w, h = im.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(im.resize((nw, nh), Image.BILINEAR, reducing_gap=None), dtype=np.uint8)
    left, top = (size - nw) // 2, (size - nh) // 2
    out = np.pad(small, ((top, size - nh - top), (left, size - nw - left), (0, 0)), mode="edge")
    return out.transpose(2, 0, 1), (left, top, left + nw, top + nh)


def valid_grid(box: Sequence[float], size: int, grid: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` bool: patches whose centre (canvas pixel ``s·i``) lies on the image, not the padding."""
    gh, gw = grid
    cy = np.arange(gh) * (size / gh) + 0.5  # pixel s·i, in continuous coordinates (pixel p spans [p, p+1))
    cx = np.arange(gw) * (size / gw) + 0.5
    ok_y = (cy >= box[1]) & (cy < box[3])
    ok_x = (cx >= box[0]) & (cx < box[2])
    valid = ok_y[:, None] & ok_x[None, :]
    if not valid.any():  # a sliver image: keep the nearest row/column
        valid[np.argmin(np.abs(cy - (box[1] + box[3]) / 2)), np.argmin(np.abs(cx - (box[0] + box[2]) / 2))] = True
    return valid


def mask_to_grid(mask: np.ndarray, box: Sequence[int], size: int, grid: tuple[int, int]) -> np.ndarray:
    """Fraction of object pixels per patch, ``(h, w)`` float32 in [0, 1].

    ``mask`` is the ``(H, W)`` bool mask at the image's original size; it is placed on the
    canvas exactly as the image was (``box``) and averaged over the ``s × s`` window centred on
    each patch (canvas pixels ``s·i − s/2 … s·i + s/2 − 1``).
    """
    m = Image.fromarray((np.asarray(mask, dtype=bool) * 255).astype(np.uint8))
    left, top, right, bottom = (int(v) for v in box)
    canvas = np.zeros((size, size), np.float32)
    canvas[top:bottom, left:right] = np.asarray(m.resize((right - left, bottom - top), Image.BILINEAR),
                                                dtype=np.float32) / 255.0
    gh, gw = grid
    sy, sx = size // gh, size // gw
    # shift by half a window so that block i of the shifted canvas is the window centred on pixel s·i
    shifted = np.zeros_like(canvas)
    shifted[sy // 2:, sx // 2:] = canvas[:size - sy // 2, :size - sx // 2]
    return shifted.reshape(gh, sy, gw, sx).mean(axis=(1, 3))


def grid_to_image(heat: np.ndarray, box: Sequence[int], size: int, out_size: tuple[int, int],
                  sigma: float = 4.0) -> np.ndarray:
    """A ``(h, w)`` patch-score grid → ``(H, W)`` float32 map at the image's size ``out_size=(W, H)``.

    Upsampled bilinearly to the canvas with cell ``i`` at canvas pixel ``s·i`` (edge values held
    beyond the last cell), cropped to the image's ``box``, resized, then smoothed with a Gaussian of
    ``sigma`` canvas pixels (PatchCore's σ = 4), scaled to the output.
    """
    t = torch.from_numpy(np.ascontiguousarray(heat, dtype=np.float32))[None, None]
    gh, gw = t.shape[-2:]
    sy, sx = size // gh, size // gw
    # align_corners=True onto s·(n−1)+1 pixels puts cell i exactly on pixel s·i; then hold the edge
    up = F.interpolate(t, size=(sy * (gh - 1) + 1, sx * (gw - 1) + 1), mode="bilinear", align_corners=True)
    up = F.pad(up, (0, size - up.shape[-1], 0, size - up.shape[-2]), mode="replicate")[0, 0].numpy()
    left, top, right, bottom = (int(v) for v in box)
    crop = up[top:bottom, left:right]
    W, H = out_size
    out = np.asarray(Image.fromarray(crop).resize((W, H), Image.BILINEAR), dtype=np.float32)
    if sigma > 0:
        from scipy.ndimage import gaussian_filter
        out = gaussian_filter(out, sigma * max(W, H) / size).astype(np.float32)
    return out


