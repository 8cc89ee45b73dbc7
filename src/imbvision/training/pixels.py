"""Pixel-space remedies for head mode: new minority images, embedded like real ones.

Synthesis (augment-oversample, copy-paste) and mixing (mixup, cutmix, ...) make
new training images from the *training* split only; they are embedded with the
same frozen backbone and added to the head's training rows (mixed ones with
their soft labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from ..data.decode import load_image, load_mask
from ..data.records import ImageRecord
from ..strategies.registry import Recipe, StrategyContext

__all__ = ["SyntheticSet", "make_synthetic_images", "load_pixels"]

MAX_SIDE = 512


@dataclass
class SyntheticSet:
    """New training images (uint8 HWC), their (soft) labels and which strategy made them."""

    images: list[np.ndarray] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    origin: list[str] = field(default_factory=list)
    masks: list[np.ndarray | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def _fit(img: torch.Tensor, mask: torch.Tensor | None, max_side: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    h, w = img.shape[-2:]
    s = max(h, w)
    if s <= max_side:
        return img, mask
    nh, nw = max(1, round(h * max_side / s)), max(1, round(w * max_side / s))
    img = TF.resize(img, [nh, nw], antialias=True)
    if mask is not None:
        mask = TF.resize(mask[None].float(), [nh, nw], interpolation=TF.InterpolationMode.NEAREST)[0] > 0.5
    return img, mask


def load_pixels(rec: ImageRecord, *, with_mask: bool = True, max_side: int = MAX_SIDE) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Decode a record to a float image (and mask), longest side at most ``max_side``."""
    img = load_image(rec.path)
    mask = None
    if with_mask and rec.mask is not None:
        mask = load_mask(rec.mask, (img.shape[-1], img.shape[-2]))
        if not bool(mask.any()):
            mask = None
    return _fit(img, mask, max_side)


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def make_synthetic_images(records: Sequence[ImageRecord], recipe: Recipe, *, seed: int, image_size: int,
                          max_n: int = 600, n_backgrounds: int = 64) -> SyntheticSet:
    """Run the recipe's synthesis and mixing steps on training records.

    Parameters
    ----------
    records
        The training split only (never validation or test).
    max_n
        Cap on new images per step (each must be embedded).
    """
    out = SyntheticSet()
    if not recipe.synthesis and recipe.mixing is None:
        return out
    y = np.array([r.label for r in records])
    pos = [records[i] for i in np.flatnonzero(y == 1)]
    neg_idx = np.flatnonzero(y == 0)
    rng = np.random.default_rng([seed, 104729])
    bg_idx = rng.choice(neg_idx, size=min(n_backgrounds, len(neg_idx)), replace=False)
    ctx = StrategyContext.from_labels(y, seed=seed)
    g = torch.Generator().manual_seed(seed)
    positives = [load_pixels(r) for r in pos]
    negatives = [load_pixels(records[i], with_mask=False)[0] for i in bg_idx]
    for spec in recipe.synthesis:
        op = spec.build(ctx)
        n = min(max_n, op.n_to_generate(len(pos), len(neg_idx)))
        if n <= 0:
            continue
        for img, mask in op.synthesize(positives, negatives, n, generator=g):
            out.images.append(_to_uint8(img))
            out.masks.append(mask.numpy() if mask is not None else None)
            out.labels.append(1.0)
            out.origin.append(spec.name)
    if recipe.mixing is not None:
        op = recipe.mixing.build(ctx)
        n = min(max_n, 4 * len(pos))
        size = [image_size, image_size]
        made = 0
        while made < n:
            b = min(32, n - made)
            # Half minority, half random negatives: mixing is meant to reach the rare class.
            pi = rng.integers(0, len(positives), size=(b + 1) // 2)
            ni = rng.integers(0, len(negatives), size=b // 2)
            imgs, masks, labels = [], [], []
            for i in pi:
                img, m = positives[i]
                imgs.append(TF.resize(img, size, antialias=True))
                mm = m if m is not None else torch.zeros(img.shape[-2:], dtype=torch.bool)
                masks.append(TF.resize(mm[None].float(), size, interpolation=TF.InterpolationMode.NEAREST)[0] > 0.5)
                labels.append(1.0)
            for i in ni:
                imgs.append(TF.resize(negatives[i], size, antialias=True))
                masks.append(torch.zeros(size, dtype=torch.bool))
                labels.append(0.0)
            order = torch.randperm(len(imgs), generator=g)
            x = torch.stack(imgs)[order]
            yy = torch.tensor(labels)[order]
            mk = torch.stack(masks)[order]
            xm, ym = op(x, yy, generator=g, masks=mk)
            for k in range(xm.shape[0]):
                out.images.append(_to_uint8(xm[k]))
                out.masks.append(None)
                out.labels.append(float(ym[k]))
                out.origin.append(recipe.mixing.name)
            made += b
    return out
