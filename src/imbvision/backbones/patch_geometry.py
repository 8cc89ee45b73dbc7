"""Patch-grid geometry: image ↔ ``S × S`` canvas ↔ patch grid (the ``resize`` rules of
:mod:`imbvision.backbones.patches`), and patch-score grids back to image-sized heat maps.

Where a patch sits: patch cell ``i`` of a stride-``s`` grid is centred on canvas pixel ``s·i``, and
every conversion here uses that centre. The backbone's convolutions pad symmetrically (``k // 2``),
so ``s·i`` is the geometric centre of a block's cell, but trained filters respond off it: a small
symmetric blob moves EfficientNet-Lite0's stride-16 features most at about +6 px and its stride-32
features at about +13 px (down and right). :func:`measure_block_centres` measures that offset per
block and :class:`~imbvision.backbones.patches.PatchNet` resamples each block's map by it, so the
``s·i`` rule holds for the features themselves (heat maps, mask labels and padding alike).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .._choices import RESIZE_MODES
from ..spec import check_setting

__all__ = ["RESIZE_MODES", "canvas_view", "mask_to_grid", "grid_to_image", "valid_grid", "measure_block_centres",
           "resample_matrix"]

def _check_resize(resize: str) -> None:
    check_setting("resize", resize)


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




# --------------------------------------------------------------------------- #
# effective centres of the feature blocks
# --------------------------------------------------------------------------- #
def measure_block_centres(body, strides: Sequence[int], *, size: int = 160, sigma: float = 3.0
                          ) -> tuple[tuple[float, float], ...]:
    """Each feature block's effective centre offset ``(dy, dx)`` in canvas pixels, measured.

    A small symmetric Gaussian blob (``sigma`` px, bright on a uniform grey canvas) is painted at 12
    positions away from the canvas edges; for each block the change of the features against the
    blank canvas, ``‖f(blob) − f(blank)‖`` per cell, is located by its centroid (cells above half the
    peak, cell ``i`` at pixel ``s·i``). The mean of ``centroid − blob`` is the offset: symmetric
    padding puts cell ``i`` at ``s·i`` geometrically, but trained filters respond off-centre
    (EfficientNet-Lite0: +6 px at stride 16, +13 px at stride 32, down and right).

    Parameters
    ----------
    body
        ``body(uint8 (N, 3, S, S) tensor) -> list of (N, C, S/s, S/s)`` maps, one per stride.
    strides
        The maps' strides in canvas pixels.

    Returns
    -------
    tuple of (dy, dx)
        One pair per stride, each clipped to ``[-s, s]``; ``(0, 0)`` where a block does not respond.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    lo, hi = 2 * max(strides), size - 2 * max(strides)
    pos = [(float(cy), float(cx)) for cy in np.linspace(lo, hi, 4).round() for cx in np.linspace(lo, hi, 3).round()]
    canvases = [np.full((size, size), 128.0, np.float32)]
    canvases += [128.0 + 100.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2)) for cy, cx in pos]
    x = torch.from_numpy(np.clip(np.stack(canvases), 0, 255).astype(np.uint8))[:, None].repeat(1, 3, 1, 1)
    with torch.no_grad():
        maps = body(x)
    out = []
    for f, s in zip(maps, strides):
        r = (f[1:] - f[:1]).float().norm(dim=1).numpy()
        offs = []
        for m, (cy, cx) in zip(r, pos):
            w = np.maximum(m - 0.5 * m.max(), 0.0)
            if not np.isfinite(w).all() or w.sum() <= 0:
                continue
            gy, gx = np.mgrid[0:m.shape[0], 0:m.shape[1]] * float(s)
            offs.append(((w * gy).sum() / w.sum() - cy, (w * gx).sum() / w.sum() - cx))
        dy, dx = np.mean(offs, axis=0) if offs else (0.0, 0.0)
        out.append((float(np.clip(dy, -s, s)), float(np.clip(dx, -s, s))))
    return tuple(out)


def resample_matrix(n_out: int, n_in: int, start: float, step: float) -> np.ndarray:
    """``(n_out, n_in)`` bilinear weights reading input cell position ``start + step·i`` for output ``i``.

    Positions outside ``[0, n_in − 1]`` hold the edge value (as replicate padding). ``A @ x`` resamples
    ``x`` along that axis; written as a matrix so the shift exports to ONNX as one MatMul.
    """
    p = np.clip(start + step * np.arange(n_out), 0.0, n_in - 1.0)
    j0 = np.floor(p).astype(np.int64)
    j1 = np.minimum(j0 + 1, n_in - 1)
    t = p - j0
    A = np.zeros((n_out, n_in), np.float32)
    np.add.at(A, (np.arange(n_out), j0), 1.0 - t)
    np.add.at(A, (np.arange(n_out), j1), t)
    return A
