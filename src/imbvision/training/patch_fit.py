"""Head mode for patch-level heads (``patch``, ``normality``, ``fusion``): features, masks, fit.

Used by ``train`` and ``compare`` alike. Order on the training rows only:
pixel-space synthesis (its images keep their masks) → patch features → head
fit with the recipe's loss (rebuilt at the patch level) and sampler.
Feature-space resamplers and mixing do not apply (a SMOTE row or a mixed
image has no patches or patch labels) and are refused with a clear message.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from ..errors import BadFileError, ConfigError
from ..strategies.registry import Recipe, StrategyContext
from .cell import Representation, register_representation
from .head import HeadFit

__all__ = ["grid_masks", "patches_from_images", "fit_patch_head", "concat_features", "PATCH_NOTE", "BadMask"]

PATCH_NOTE = "patch-level head: scores are not prior-corrected (threshold and calibration come from validation)"


class BadMask:
    """Placeholder in ``PatchFeatures.masks`` for a positive's unusable mask, kept until a head that reads
    masks (its record says ``reads_masks``) is fitted on that image (then it raises, naming the file) — so a
    bad mask never stops a head that does not use it."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason

    def error(self) -> BadFileError:
        return BadFileError(self.path, self.reason)


def grid_masks(records: Sequence, feats, *, skip_bad: bool = False, mark: bool = False
               ) -> tuple[list[Any], list[tuple[str, str]]]:
    """Each positive's mask as a patch grid (``None`` where it has none, and for negatives).

    A positive's mask that is empty or of another size than its image raises
    :class:`~imbvision.errors.BadFileError` naming the file; with ``skip_bad`` the mask is
    dropped instead (the image then takes part through multiple-instance learning) and
    listed in the returned ``bad`` pairs. With ``mark`` (implies listing), a :class:`BadMask` takes
    the dropped mask's place, so a head that reads masks can still refuse it.
    """
    from ..backbones.patches import mask_to_grid
    from ..data.decode import load_mask

    out: list[np.ndarray | None] = []
    bad: list[tuple[str, str]] = []
    for i, r in enumerate(records):
        if r.label != 1 or r.mask is None:
            out.append(None)
            continue
        try:
            m = load_mask(r.mask, size=tuple(int(v) for v in feats.sizes[i])).numpy()
            if not m.any():
                raise BadFileError(r.mask, "mask of a positive image is empty; draw the object, remove the mask "
                                           "(the image then trains by multiple-instance learning) or pass --skip-bad")
        except BadFileError as exc:
            if not (skip_bad or mark):
                raise
            bad.append((str(r.mask), exc.reason))
            out.append(BadMask(str(r.mask), exc.reason) if mark else None)
            continue
        out.append(mask_to_grid(m, feats.boxes[i], feats.image_size, feats.grid))
    return out, bad


def concat_features(a, b):
    """Rows of ``a`` then ``b`` in one in-memory :class:`PatchFeatures` (float16; masks and global rows kept)."""
    from ..backbones.patches import PatchFeatures

    if a.grid != b.grid or a.dim != b.dim:
        raise ConfigError(f"patch grids differ ({a.grid}x{a.dim} vs {b.grid}x{b.dim})")
    store = np.concatenate([np.asarray(a.store[a.rows], np.float16), np.asarray(b.store[b.rows], np.float16)])
    glob = None
    if a.global_ is not None and b.global_ is not None:
        glob = np.concatenate([a.global_, b.global_]).astype(np.float32)
    masks = (list(a.masks or [None] * len(a)) + list(b.masks or [None] * len(b)))
    groups = None
    if a.groups is not None:  # each added image is a group of its own
        ga = np.asarray(a.groups, dtype=np.int64)
        groups = np.concatenate([ga, (ga.max() + 1 if len(ga) else 0) + np.arange(len(b), dtype=np.int64)])
    return PatchFeatures(store, np.arange(len(store)), np.concatenate([a.boxes, b.boxes]),
                         np.concatenate([a.sizes, b.sizes]), a.image_size, a.settings, None, glob, masks, groups)


def image_groups(records: Sequence) -> np.ndarray | None:
    """``(N,)`` int group per image: its split unit (duplicate set and group linked), else its group, else ``None``."""
    from ..data.records import groups_of, split_units

    units = split_units(records)
    if units is not None:
        return units.astype(np.int64)
    g = groups_of(records)
    return None if g is None else np.unique(g.astype(str), return_inverse=True)[1].astype(np.int64)


def fit_patch_head(feats, y: np.ndarray, recipe: Recipe, *, seed: int = 0, extra_X=None, extra_y=None,
                   masks: Sequence[np.ndarray | None] | None = None) -> HeadFit:
    """Fit the recipe's patch-level head on training images (``fit_head``'s signature).

    Parameters
    ----------
    feats
        Training images' :class:`~imbvision.backbones.patches.PatchFeatures` (``global_`` set for ``fusion``,
        ``masks`` the per-image ``(h, w)`` mask grids or ``None``).
    y
        Their 0/1 labels.
    extra_X, extra_y
        Patch features (with their masks) and labels of synthesised images (e.g. from ``copy-paste``).
    masks
        Overrides ``feats.masks``.
    """
    t0 = time.perf_counter()
    if recipe.resamplers:
        raise ConfigError(f"{', '.join(s.name for s in recipe.resamplers)} resample pooled feature rows and do not "
                          f"apply to head {recipe.head.name!r}; use a loss, a sampler or a synthesis remedy with it")
    if recipe.mixing is not None:
        raise ConfigError(f"{recipe.mixing.name} makes soft-labelled mixed images without patch labels; it does not "
                          f"apply to head {recipe.head.name!r}")
    y = np.asarray(y, dtype=np.float64)
    if masks is not None:
        feats.masks = list(masks)
    if feats.masks is not None:
        bad = [m for m in feats.masks if isinstance(m, BadMask)]
        if bad and recipe.head.record.reads_masks:
            raise bad[0].error()
        feats.masks = [None if isinstance(m, BadMask) else m for m in feats.masks]
    if extra_X is not None and len(extra_X):
        feats = concat_features(feats, extra_X)
        y = np.concatenate([y, (np.asarray(extra_y) >= 0.5).astype(np.float64)])
    n1 = int((y == 1).sum())
    n0 = len(y) - n1
    if recipe.head.record.needs_positives and n1 == 0:  # the record says who learns from negatives alone
        raise ConfigError(f"head {recipe.head.name!r} needs positives in the training split; with none use "
                          "--strategy normality")
    ctx = StrategyContext(class_counts=(n0, max(n1, 1)), seed=seed)
    sampler = recipe.sampler.build(ctx) if recipe.sampler is not None else None
    head = recipe.head.build(ctx)
    head.fit(feats, y, loss_name=recipe.loss.name, sampler=sampler, seed=seed)
    notes = [PATCH_NOTE]
    if not recipe.head.record.uses_loss and any(s.record.family in ("loss", "sampler") for s in recipe.specs):
        notes.append(f"{recipe.head.name} uses the negatives only: the loss and sampler do not change it")
    return HeadFit(head, recipe.head.name, dict(recipe.head.params), recipe.loss.name, len(y), n1 / max(1, len(y)),
                   None, time.perf_counter() - t0, (n0, n1), notes)


def head_summary(head: Any) -> dict[str, Any]:
    """What a patch-level head reports (fusion weights, MIL counts) for results and the leaderboard."""
    out: dict[str, Any] = {}
    if getattr(head, "weights", None):
        out["fusion_weights"] = {k: round(v, 4) for k, v in head.weights.items()}
        out["fusion_winner"] = max(head.weights, key=head.weights.get)
    if getattr(head, "info_", None):
        out["patch"] = dict(head.info_)
    return out


def _layers_of(settings: Any) -> str:
    return settings.patch_layers


def _patches_from_records(records: Sequence, backbone: Any, settings: Any, cache_dir, progress: bool):
    """Patch features of the dataset (cached), each positive's mask grid, and the global embedding (fusion)."""
    from ..backbones import embed_dataset
    from ..backbones.patches import patch_features

    resize = settings.resize
    feats = patch_features(records, backbone=backbone, image_size=settings.image_size, resize=resize,
                           cache_dir=cache_dir, progress=progress, layers=_layers_of(settings))
    skip_bad = getattr(settings, "skip_bad", False)
    # Without --skip-bad a bad mask stays marked: only a head that reads masks and trains on it refuses it.
    masks, bad = grid_masks(records, feats, skip_bad=skip_bad, mark=not skip_bad)
    if skip_bad and bad:
        import warnings

        from ..notices import DataWarning
        warnings.warn(f"--skip-bad: {len(bad)} positive mask(s) dropped (those images train by multiple-instance "
                      f"learning): " + "; ".join(f"{p}: {why.split(';')[0]}" for p, why in bad[:3])
                      + ("; …" if len(bad) > 3 else ""), DataWarning, stacklevel=2)
    feats.masks = masks
    feats.groups = image_groups(records)
    feats.global_ = embed_dataset(records, backbone=backbone, image_size=settings.image_size, tiles=settings.tiles,
                                  cache_dir=cache_dir, progress=False, resize=resize).features(settings.kind)
    return feats, {**(feats.stats or {}), "bad_masks": [f"{p}: {why.split(';')[0]}" for p, why in bad]}


def patches_from_images(images: Sequence[np.ndarray], backbone: Any, settings: Any, cache_dir=None, masks=None,
                        global_images: Sequence[np.ndarray] | None = None, with_global: bool = True):
    """Patch features (with mask grids where a synthesised image has a mask) of new uint8 images.

    Parameters
    ----------
    images
        ``(H, W, 3)`` uint8 images as decoded for the patch canvas (part ``"patches"`` of
        :mod:`imbvision.backbones.decoding`).
    global_images
        The same images as decoded for the global view (part ``"global"``), when that differs: a large
        JPEG with ``tiles`` is decoded at another draft scale for its global view than for its patch
        canvas, in training as in prediction. ``None``: ``images`` serve both (in-memory images).
    with_global
        Whether to compute the global embedding (``feats.global_``, used by ``fusion``); heat maps do not
        need it.
    """
    from ..backbones import embed_arrays
    from ..backbones.patches import mask_to_grid, patch_features_arrays

    resize = settings.resize
    if global_images is not None and len(global_images) != len(images):
        raise ValueError(f"{len(global_images)} global views for {len(images)} images; give one per image")
    feats = patch_features_arrays(list(images), backbone, image_size=settings.image_size, resize=resize,
                                  layers=_layers_of(settings))
    masks = masks if masks is not None else [None] * len(feats)
    feats.masks = [None if m is None or not np.asarray(m).any() else
                   mask_to_grid(np.asarray(m, dtype=bool), feats.boxes[i], feats.image_size, feats.grid)
                   for i, m in enumerate(masks)]
    if with_global:
        views = list(images) if global_images is None else list(global_images)
        feats.global_ = embed_arrays(views, backbone, image_size=settings.image_size, tiles=settings.tiles,
                                     resize=resize).features(settings.kind).astype(np.float32)
    return feats


register_representation(Representation("patches", _patches_from_records, patches_from_images, fit=fit_patch_head,
                                       takes_masks=True))
