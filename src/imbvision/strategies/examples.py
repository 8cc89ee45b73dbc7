"""Example grids: see what a synthesis or mixing strategy does to real images.

:func:`save_example_grid` renders images (with mask outlines in red) as a
PNG; :func:`strategy_examples` builds a strategy with its defaults and
renders before/after examples, for the report and for people deciding
whether a remedy produces plausible images on their data.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from .._io import atomic_write
from ..errors import ConfigError, DataError
from .registry import StrategyContext, get_strategy, make_spec

__all__ = ["save_example_grid", "strategy_examples"]


def _to_hwc(image: Tensor) -> np.ndarray:
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"each image must be a (3, H, W) or (1, H, W) tensor, got {shape}")
    arr = image.detach().float().cpu().clamp(0, 1)
    if arr.shape[0] == 1:
        arr = arr.expand(3, -1, -1)
    return arr.permute(1, 2, 0).numpy()


def save_example_grid(
    images: Sequence[Tensor],
    path: str | Path,
    *,
    masks: Sequence[Tensor | None] | None = None,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
) -> Path:
    """Save ``images`` as a PNG grid, ``masks`` outlined in red; returns the path.

    Parameters
    ----------
    images
        ``(3, H, W)`` float tensors in [0, 1]; sizes may differ.
    path
        Output PNG (written atomically).
    masks
        One ``(H, W)`` bool mask or None per image.
    titles
        One short caption per image.
    ncols
        Images per row.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    images = list(images)
    if not images:
        raise ValueError("save_example_grid needs at least one image")
    if masks is not None and len(masks) != len(images):
        raise ValueError(f"got {len(masks)} masks for {len(images)} images; give one per image (or None)")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(titles)} titles for {len(images)} images; give one per image")
    if ncols < 1:
        raise ConfigError(f"ncols={ncols} is invalid; valid: an integer >= 1")
    ncols = min(ncols, len(images))
    nrows = math.ceil(len(images) / ncols)
    cell = 2.4
    fig = Figure(figsize=(cell * ncols, cell * nrows + (0.25 * nrows if titles else 0)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(images):
            continue
        arr = _to_hwc(images[k])
        ax.imshow(arr, interpolation="nearest" if max(arr.shape[:2]) < 128 else "antialiased")
        m = None if masks is None else masks[k]
        if m is not None:
            mk = m.detach().cpu().bool().numpy()
            if mk.shape != arr.shape[:2]:
                raise ValueError(f"mask #{k} is {mk.shape} but its image is {arr.shape[:2]}")
            if mk.any() and not mk.all():
                # Pad so that objects touching the border get a closed outline.
                padded = np.pad(mk.astype(float), 1)
                ys = np.arange(-1, mk.shape[0] + 1)
                xs = np.arange(-1, mk.shape[1] + 1)
                ax.contour(xs, ys, padded, levels=[0.5], colors=["red"], linewidths=1.0)
                ax.set_xlim(-0.5, mk.shape[1] - 0.5)
                ax.set_ylim(mk.shape[0] - 0.5, -0.5)
        if titles is not None:
            ax.set_title(str(titles[k]), fontsize=8)
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())
    return path


def _fmt_label(y: Tensor) -> str:
    if y.ndim == 0:
        return f"y={float(y):.2f}"
    return "y=[" + ",".join(f"{float(v):.2f}" for v in y) + "]"


def strategy_examples(
    name: str,
    images: Sequence[Tensor],
    masks: Sequence[Tensor | None] | None,
    labels: Sequence[int],
    path: str | Path,
    seed: int = 0,
    *,
    n_examples: int = 4,
) -> Path:
    """Render before/after examples of a synthesis or mixing strategy (default params).

    Synthesis: per column, the source positive (mask outlined), for
    copy-paste the negative background, and the synthesized image with its
    new mask. Mixing: the first row is a batch (positives first, all images
    resized to the first one's size), the second the mixed batch with soft
    labels. Returns the written PNG path.

    Parameters
    ----------
    name
        A registered strategy of family ``synthesis`` or ``mixing``.
    images, masks, labels
        Example data; ``labels`` are class ids (binary: 1 = object present).
    path
        Output PNG.
    seed
        Seed of the generator that draws the examples.
    """
    rec = get_strategy(name)
    if rec.family not in ("synthesis", "mixing"):
        raise ConfigError(
            f"strategy_examples draws synthesis and mixing strategies; {name!r} is a {rec.family} strategy"
        )
    images = list(images)
    labels = [int(v) for v in labels]
    if len(labels) != len(images):
        raise ValueError(f"got {len(labels)} labels for {len(images)} images")
    mask_list: list[Tensor | None] = list(masks) if masks is not None else [None] * len(images)
    if len(mask_list) != len(images):
        raise ValueError(f"got {len(mask_list)} masks for {len(images)} images")
    counts = tuple(int(c) for c in np.bincount(labels, minlength=2))
    ctx = StrategyContext(class_counts=counts, seed=seed)
    obj = make_spec(name).build(ctx)
    g = torch.Generator().manual_seed(seed)
    pos = [i for i, y in enumerate(labels) if y != 0]
    neg = [i for i, y in enumerate(labels) if y == 0]

    if rec.family == "synthesis":
        return _synthesis_examples(name, rec.needs_background, obj, g, images, mask_list, pos, neg, path, n_examples)
    return _mixing_examples(name, obj, g, images, mask_list, labels, pos, neg, path, n_examples, ctx.num_classes)


def _synthesis_examples(name: str, needs_bg: bool, obj: Any, g: torch.Generator, images: list, mask_list: list,
                        pos: list[int], neg: list[int], path: str | Path, n_examples: int) -> Path:
    """Per column: the source positive, the background when the record ``needs_background``, the new image."""
    if not pos:
        raise DataError(f"{name} examples need at least one positive (label 1); got none")
    if needs_bg and not neg:
        raise DataError(f"{name} examples need at least one negative background; got none")
    k = min(n_examples, max(len(pos), 1) * 2)
    srcs, bgs, outs = [], [], []
    for c in range(k):
        i = pos[c % len(pos)]
        bg = images[neg[c % len(neg)]] if needs_bg else None
        out_img, out_mask = obj(images[i], mask_list[i], generator=g, background=bg)
        srcs.append(i)
        bgs.append(bg)
        outs.append((out_img, out_mask))
    grid_imgs: list[Tensor] = [images[i] for i in srcs]
    grid_masks: list[Tensor | None] = [mask_list[i] for i in srcs]
    grid_titles = [f"positive #{i}" for i in srcs]
    if needs_bg:
        grid_imgs += [b for b in bgs if b is not None]
        grid_masks += [None] * k
        grid_titles += [f"background #{neg[c % len(neg)]}" for c in range(k)]
    grid_imgs += [o[0] for o in outs]
    grid_masks += [o[1] for o in outs]
    grid_titles += [f"{name} #{c}" for c in range(k)]
    return save_example_grid(grid_imgs, path, masks=grid_masks, titles=grid_titles, ncols=k)


def _mixing_examples(name: str, obj: Any, g: torch.Generator, images: list, mask_list: list, labels: list[int],
                     pos: list[int], neg: list[int], path: str | Path, n_examples: int, num_classes: int) -> Path:
    """First row a batch (positives first, resized to the first image's size), second row the mixed batch."""
    from torchvision.transforms.v2 import functional as TF

    order = (pos[: max(1, n_examples // 2)] + neg)[: max(n_examples, 2)]
    if len(order) < 2:
        raise DataError(f"{name} examples need at least two images to mix; got {len(order)}")
    H, W = images[order[0]].shape[-2:]

    def fit(t: Tensor, is_mask: bool) -> Tensor:
        if tuple(t.shape[-2:]) == (H, W):
            return t
        if is_mask:
            from torchvision.transforms import InterpolationMode

            return TF.resize(t[None].to(torch.uint8), [H, W], interpolation=InterpolationMode.NEAREST)[0].bool()
        return TF.resize(t, [H, W], antialias=True)

    x = torch.stack([fit(images[i].float(), False) for i in order])
    y = torch.tensor([labels[i] for i in order])
    have_masks = [mask_list[i] is not None for i in order]
    mb = torch.stack([
        fit(mask_list[i].bool(), True) if mask_list[i] is not None else torch.zeros(H, W, dtype=torch.bool)
        for i in order
    ]) if any(have_masks) else None
    if num_classes <= 2:
        y_in = y.float()
    else:
        y_in = y
    x_mix, y_mix = obj(x, y_in, generator=g, masks=mb)
    grid_imgs = list(x) + list(x_mix)
    grid_masks = [mb[k] if mb is not None and have_masks[k] else None for k in range(len(order))]
    grid_masks += [None] * len(order)
    grid_titles = [f"#{i} y={labels[i]}" for i in order] + [f"{name} {_fmt_label(v)}" for v in y_mix]
    return save_example_grid(grid_imgs, path, masks=grid_masks, titles=grid_titles, ncols=len(order))
