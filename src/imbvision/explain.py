"""Heat maps from patch-level heads: per-image maps, overlays, and masks derived from them.

* :func:`explain` – ``(N, H, W)`` patch-score maps at each image's resolution for a model
  whose head works on patches (``patch``, ``normality``, ``fusion``); ``Model.explain`` calls it.
* :func:`overlay_heatmap` – an RGB overlay (heat map blended on the image, mask outline in
  green) that reports and ``predict --heatmaps`` write as PNG.
* :func:`derive_mask` / :func:`derive_masks` – a positive's missing mask from its heat map,
  thresholded and checked against its image label, written as PNG masks plus a manifest that
  ``copy-paste`` and the object-aware mixers can use.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ConfigError

__all__ = ["explain", "overlay_heatmap", "save_overlay", "derive_mask", "derive_masks", "mask_iou",
           "patch_model_features", "is_patch_model", "write_heatmaps", "heatmap_size", "fit_to_map",
           "HEATMAP_MAX_SIDE", "OVERLAY_MAX_SIDE", "overlay_scale"]

#: Heat maps come at the image's own resolution up to this long side (pixels), aspect kept, so one
#: map of a 6000×4000 photo takes 1024×683 floats (2.8 MB), not 96 MB.
HEATMAP_MAX_SIDE = 1024
#: An overlay is enlarged (so a thin strip stays visible) only while its long side stays within this many
#: pixels: a 10000×100 image gives a 4096×40 overlay, not 26624×260 (memory bounded whatever the aspect).
OVERLAY_MAX_SIDE = 4096


def overlay_scale(height: int, width: int, min_side: int = 256, max_side: int = OVERLAY_MAX_SIDE) -> int:
    """The whole-number enlargement of a ``height × width`` overlay: until its short side is ``min_side``,
    but never past ``max_side`` on its long side (1 when the map is already that long).

    Examples
    --------
    >>> overlay_scale(64, 64), overlay_scale(10, 1024), overlay_scale(2000, 3000)
    (4, 4, 1)
    """
    want = int(np.ceil(min_side / max(1, min(height, width))))
    return max(1, min(want, max_side // max(1, height, width)))


def heatmap_size(size: tuple[int, int], max_side: int = HEATMAP_MAX_SIDE) -> tuple[int, int]:
    """``(W, H)`` of the heat map of an image of ``size=(W, H)``: the same, or scaled down (aspect kept,
    rounded) so that its long side is ``max_side``."""
    w, h = int(size[0]), int(size[1])
    if max(w, h) <= max_side:
        return w, h
    f = max_side / max(w, h)
    return max(1, round(w * f)), max(1, round(h * f))


def fit_to_map(image: np.ndarray, heat: np.ndarray, mask: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """``image`` (bilinear) and ``mask`` (nearest) resized to ``heat``'s ``(H, W)`` when a capped map is
    smaller than the image (see :data:`HEATMAP_MAX_SIDE`); unchanged when they already agree."""
    from PIL import Image

    hh, hw = np.shape(heat)[:2]
    img = np.asarray(image)
    if img.shape[:2] != (hh, hw):
        img = np.asarray(Image.fromarray(img).resize((hw, hh), Image.BILINEAR))
    if mask is not None and np.shape(mask)[:2] != (hh, hw):
        m = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255)
        mask = np.asarray(m.resize((hw, hh), Image.NEAREST)) > 127
    return img, mask


def is_patch_model(meta: dict) -> bool:
    """Whether a saved model's head scores patches (and so can draw heat maps): its record says ``heatmaps``."""
    from .strategies import list_strategies

    name = meta.get("head", {}).get("name")
    return meta.get("mode") == "head" and any(r.name == name and r.heatmaps for r in list_strategies("head"))


def patch_model_features(model, images: Sequence[np.ndarray], *, global_images: Sequence[np.ndarray] | None = None,
                         with_global: bool = True):
    """Patch features (with the global embedding for ``fusion``) of in-memory images for a saved model.

    ``images`` decoded for the patch canvas, ``global_images`` for the global view when that differs (see
    :meth:`~imbvision.model.Model.decode_inputs`); ``with_global=False`` skips the global embedding (heat maps).
    """
    from .training.patch_fit import patches_from_images

    return patches_from_images(list(images), model._get_backbone(), model._feature_settings(),
                               global_images=global_images, with_global=with_global)


def explain(model, images: Sequence[str | Path | np.ndarray], *, sigma: float = 4.0) -> np.ndarray | list[np.ndarray]:
    """Patch-score heat maps at image resolution.

    Parameters
    ----------
    model
        A loaded :class:`~imbvision.model.Model` with a ``patch``, ``normality`` or ``fusion`` head.
    images
        Paths or ``(H, W, 3)`` uint8 arrays.

    Returns
    -------
    ``(N, H, W)`` float32 array when all images share a size, else a list of ``(H_i, W_i)`` maps, at
    each image's own (full, before any draft decoding) resolution with the long side capped at
    :data:`HEATMAP_MAX_SIDE` pixels (aspect kept; :func:`heatmap_size`).
    Higher = more evidence for the positive class (patch logit, or standardised distance for
    ``normality``).

    Raises
    ------
    ConfigError
        The model's head sees one pooled vector per image (no patches to map).
    """
    from .data.decode import load_image_and_size

    if not is_patch_model(model.meta):
        head = model.meta.get("head", {}).get("name", model.meta.get("mode"))
        raise ConfigError(
            f"heat maps need a patch-level head (patch, normality or fusion); the model in {model.run_dir} uses "
            f"{head!r}, which sees one pooled vector per image. Train with e.g. --strategy patch or fusion."
        )
    side = model.decode_min_side("patches")
    decoded = [load_image_and_size(x, min_side=side) if not isinstance(x, np.ndarray) else (x, (x.shape[1], x.shape[0]))
               for x in images]  # a large JPEG decodes as training decoded its patch canvas; maps at its full size
    arrays, sizes = [a for a, _ in decoded], [s for _, s in decoded]
    if not arrays:
        return np.zeros((0, 0, 0), np.float32)
    feats = patch_model_features(model, arrays, with_global=False)  # the maps read the patch grids only
    return _maps(model, feats, sizes, sigma)


def explain_and_score(model, arrays: Sequence[np.ndarray], global_views: Sequence[np.ndarray] | None = None, *,
                      sigma: float = 4.0) -> tuple[list[np.ndarray], np.ndarray]:
    """Heat maps and raw head probabilities of decoded images from *one* feature computation.

    ``arrays`` (and ``global_views``) as :meth:`~imbvision.model.Model.decode_inputs` gives them. The
    probabilities equal :meth:`~imbvision.model.Model.raw_scores` of the same inputs (the same features:
    ``predict --heatmaps`` computes them once per image, not once for the maps and once for the scores).
    """
    if not arrays:
        return [], np.zeros(0)
    feats = patch_model_features(model, arrays, global_images=global_views)
    raw = np.asarray(model._get_head().predict_proba(feats))
    return _maps_list(_maps(model, feats, [(a.shape[1], a.shape[0]) for a in arrays], sigma)), raw


def _maps(model, feats, sizes, sigma: float):
    from .backbones.patches import grid_to_image

    z = model._get_head().patch_scores(feats)
    maps = []
    arrays = range(len(sizes))
    for i in arrays:
        g = np.where(np.isfinite(z[i]), z[i], np.nan)
        g = np.where(np.isnan(g), np.nanmin(g), g)
        maps.append(grid_to_image(g, feats.boxes[i], feats.image_size, heatmap_size(sizes[i]), sigma=sigma))
    if len({m.shape for m in maps}) == 1:
        return np.stack(maps)
    return maps


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, mask: np.ndarray | None = None, *,
                    vmin: float | None = None, vmax: float | None = None, alpha: float = 0.45,
                    cmap: str = "jet", min_side: int = 256) -> np.ndarray:
    """Blend a heat map on an image and outline the mask.

    Parameters
    ----------
    image
        ``(H, W, 3)`` uint8 (or ``(H, W)`` grey).
    heat
        ``(H, W)`` scores; scaled to [0, 1] between ``vmin`` and ``vmax`` (default: the map's
        1st and 99.5th percentiles).
    mask
        Optional ``(H, W)`` bool; its outline is drawn in green.
    min_side
        The result is enlarged (nearest neighbour, by a whole factor) until its short side is at least this
        many pixels, so a small object stays visible in a thumbnail -- but its long side never beyond
        :data:`OVERLAY_MAX_SIDE` (:func:`overlay_scale`).

    Returns
    -------
    ``(H', W', 3)`` uint8, aspect kept, long side at most ``max(OVERLAY_MAX_SIDE, max(H, W))``; the map itself
    is capped at :data:`HEATMAP_MAX_SIDE` by :func:`explain`.
    """
    from matplotlib import colormaps
    from PIL import Image
    from scipy.ndimage import binary_erosion

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    heat = np.asarray(heat, dtype=np.float64)
    if heat.shape != img.shape[:2]:
        raise ConfigError(f"heat map is {heat.shape} but the image is {img.shape[:2]}; give maps at image resolution")
    lo = np.nanpercentile(heat, 1) if vmin is None else vmin
    hi = np.nanpercentile(heat, 99.5) if vmax is None else vmax
    t = np.clip((heat - lo) / max(hi - lo, 1e-12), 0, 1)
    rgb = colormaps[cmap](np.nan_to_num(t))[..., :3] * 255
    out = (1 - alpha) * img.astype(np.float64) + alpha * rgb
    out = out.clip(0, 255).astype(np.uint8)
    scale = overlay_scale(img.shape[0], img.shape[1], min_side)
    if scale > 1:
        out = np.asarray(Image.fromarray(out).resize((out.shape[1] * scale, out.shape[0] * scale), Image.NEAREST))
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != img.shape[:2]:
            raise ConfigError(f"mask is {m.shape} but the image is {img.shape[:2]}")
        if scale > 1:
            m = np.kron(m, np.ones((scale, scale), dtype=bool))
        edge = m & ~binary_erosion(m, iterations=max(1, scale), border_value=0)
        out = out.copy()
        out[edge] = (0, 255, 0)
    return out


def save_overlay(path: str | Path, image: np.ndarray, heat: np.ndarray, mask: np.ndarray | None = None,
                 **kwargs: Any) -> Path:
    """Write :func:`overlay_heatmap` as a PNG (atomically) and return the path."""
    from PIL import Image

    from ._io import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(overlay_heatmap(image, heat, mask, **kwargs)).save(buf, format="PNG")
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())
    return path


def derive_mask(heat: np.ndarray, label: int, *, rel: float = 0.5, min_peak: float | None = None) -> np.ndarray | None:
    """A mask from a heat map, checked against the image label.

    The map is thresholded at ``background + rel × (peak − background)`` (background = the map's
    median) and only the connected region holding the peak is kept.

    Returns
    -------
    ``(H, W)`` bool for a positive; an empty mask for a negative (label 0: no object by definition);
    ``None`` for a positive whose peak stays below ``min_peak`` (the model does not see its object,
    so no mask is better than a wrong one).
    """
    from scipy.ndimage import label as cc_label

    heat = np.asarray(heat, dtype=np.float64)
    if int(label) == 0:
        return np.zeros(heat.shape, dtype=bool)
    peak, bg = float(np.nanmax(heat)), float(np.nanmedian(heat))
    if min_peak is not None and peak < min_peak:
        return None
    m = heat >= bg + rel * (peak - bg)
    lab, _ = cc_label(m)
    at = np.unravel_index(int(np.nanargmax(heat)), heat.shape)
    return lab == lab[at]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def derive_masks(model, records: Sequence, out_dir: str | Path, *, rel: float = 0.5) -> Path:
    """Derive masks for the positives without one and write them with a manifest.

    Writes ``out_dir/masks/<n>.png`` (0/255), ``out_dir/derived_masks.png`` (a contact sheet of up to 36
    derived masks outlined on their images) and ``out_dir/manifest.csv`` (``path,label,mask,group``):
    the records as given, a derived mask wherever a positive had none and its heat map peaks above
    the model's decision threshold. Train ``copy-paste`` on that manifest (``--data out_dir/manifest.csv``).
    """
    from PIL import Image

    from ._csv import write_csv
    from ._io import atomic_write

    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows: list[list[Any]] = []
    need = {i for i, r in enumerate(records) if r.label == 1 and r.mask is None}
    sheet: list[tuple[Any, Any, str]] = []
    for i, r in enumerate(records):
        mask = r.mask
        if i in need:  # one image at a time: memory stays bounded
            m = derive_mask(_maps_list(explain(model, [r.path]))[0], 1, rel=rel)
            if m is not None and m.any() and len(sheet) < 36:
                sheet.append((r.path, m, Path(r.path).name))
            if m is not None and m.any():
                mask = out / "masks" / f"{i:06d}.png"
                with atomic_write(mask, "wb") as fh:
                    Image.fromarray(m.astype(np.uint8) * 255).save(fh, format="PNG")
        rows.append([str(Path(r.path).resolve()), r.label, "" if mask is None else str(Path(mask).resolve()),
                     r.group or ""])
    write_csv(out / "manifest.csv", ["path", "label", "mask", "group"], rows)  # formula prefixes neutralised
    if sheet:  # the derived masks outlined on their images, for a person to check before copy-paste uses them
        import torch

        from .data.decode import load_image
        from .strategies.object_masks import save_mask_contact_sheet
        save_mask_contact_sheet([load_image(p) for p, _, _ in sheet], [torch.from_numpy(m) for _, m, _ in sheet],
                                out / "derived_masks.png", [t for _, _, t in sheet])
    return out / "manifest.csv"


def _maps_list(maps) -> list[np.ndarray]:
    return list(maps) if not isinstance(maps, np.ndarray) else [m for m in maps]


def write_heatmaps(model, paths: Sequence[str | Path], out_dir: str | Path, *, batch: int = 32,
                   masks: dict[str, str | Path] | None = None, scores: dict[str, float] | None = None) -> int:
    """Write one overlay PNG per readable image (``<n>_<stem>.png``) into ``out_dir``; returns how many.

    ``masks`` maps an image path to its mask file, outlined in green (a mask that cannot be read
    is left out; the image is still written). Files are decoded as the model decoded them in
    training (:meth:`Model.decode`, part ``"patches"``), so a large JPEG's overlay comes at its draft size.
    Raises ConfigError for a model without a patch-level head (before any file is written).
    """
    from .data.decode import load_mask
    from .errors import BadFileError

    from ._io import ensure_output_dir

    if not is_patch_model(model.meta):
        explain(model, [])  # raises the explanatory error
    out = ensure_output_dir(out_dir)  # an existing file, a read-only or special folder: one line, before any work
    n = 0
    for s in range(0, len(paths), batch):
        items, views = [], []
        for p in paths[s:s + batch]:
            try:
                a, v = model.decode_inputs([p])  # every part as training decoded it (the patch canvas first)
            except BadFileError:
                continue  # listed by predict's CSV
            items.append((p, a[0]))
            views += v or []
        if not items:
            continue
        maps, raw = explain_and_score(model, [a for _, a in items], views or None)
        if scores is not None:  # the same features score the image: predict need not compute them again
            scores.update((str(p), float(r)) for (p, _), r in zip(items, raw))
        for (p, arr), heat in zip(items, maps):
            mask = None
            if masks and masks.get(str(p)):
                try:
                    mask = load_mask(masks[str(p)]).numpy()
                except (BadFileError, OSError, ValueError):
                    mask = None  # a mask that does not fit is not drawn; the data check reports it
            # a large image's map is capped (HEATMAP_MAX_SIDE): the overlay comes at the map's size
            img, mask = fit_to_map(arr, heat, mask)
            save_overlay(out / f"{n:05d}_{Path(p).stem}.png", img, heat, mask)
            n += 1
    return n
