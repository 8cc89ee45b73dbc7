"""The ``copy-paste`` synthesiser: a positive's object cut by its mask and pasted onto a negative.

Owns :class:`CopyPaste`, its draw (:class:`CopyPasteParams`), its parameter table
(:data:`COPY_PASTE_PARAMS`, the record's) and Poisson blending. The object is cut from a positive by
its mask and pasted onto a negative (seed: "crop it and paste it onto various backgrounds"), at a
random position, scale and rotation, with ``hard``, ``feather`` or ``poisson`` blending; the pasted
object always lies wholly inside the frame. The draw/apply split, the random-draw helpers and the
``_Synthesizer`` base are :mod:`~imbvision.strategies.synthesis`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from ..errors import ConfigError, DataError
from .object_masks import _check_image, _check_mask, mask_bbox
from .registry import Param, StrategyContext, StrategyRecord, register_strategy
from .synthesis import _BILINEAR, _binarize, _check_generator, _coin, _cycle, _Synthesizer, _uniform, scale_order

__all__ = ["CopyPaste", "CopyPasteParams", "COPY_PASTE_PARAMS"]


COPY_PASTE_PARAMS: dict[str, Param] = {
    "ratio": Param(0.5, "float", low=0.0, low_open=True,
                   doc="target positives per negative after synthesis"),
    "scale_min": Param(0.75, "float", low=0.0, low_open=True, high=10.0,
                       doc="min object scale (1 = its size at the background's resolution)"),
    "scale_max": Param(1.25, "float", low=0.0, low_open=True, high=10.0, doc="max object scale"),
    "rotation": Param(30.0, "float", low=0.0, high=180.0, doc="max rotation in degrees"),
    "hflip": Param(True, "bool", doc="random horizontal flip of the object (p=0.5)"),
    "blend": Param("feather", "str", choices=("feather", "hard", "poisson"),
                   doc="feather: blurred alpha; hard: binary alpha; poisson: gradient-domain"),
    "feather": Param(1.5, "float", low=0.0, high=50.0, doc="feather sigma in px (blend=feather)"),
    "auto_mask": Param(True, "bool", doc="segment positives without a mask (propose_mask)"),
}


@dataclass(frozen=True)
class CopyPasteParams:
    """One draw of :class:`CopyPaste`.

    ``scale`` multiplies the object's size at the background's resolution;
    ``angle`` is in degrees (counter-clockwise); ``u``, ``v`` in [0, 1] place
    the object's extent between the top/left and bottom/right edges of the
    background, so it stays inside whatever its final size.
    """

    scale: float
    angle: float
    hflip: bool
    u: float
    v: float


def _poisson_blend(bg: np.ndarray, src: np.ndarray, valid: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Seamless cloning (Perez et al. 2003) of ``src`` into ``bg`` over ``region``.

    Solves the discrete Poisson equation ``lap f = lap src`` on the pixels of
    ``region`` with ``f = bg`` outside it (Dirichlet), using 4-neighbours
    inside the frame. Guidance is ``src``'s gradient where both pixels come
    from the source (``valid``), else ``bg``'s. A sparse LU solve is exact;
    above 300k unknowns conjugate gradients (started from the hard paste)
    keep memory bounded. ``bg``/``src``: (C, H, W); masks (H, W).
    """
    from scipy import sparse
    from scipy.sparse import linalg as splinalg

    H, W = region.shape
    idx = -np.ones((H, W), dtype=np.int64)
    ys, xs = np.nonzero(region)
    n = ys.size
    idx[ys, xs] = np.arange(n)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.zeros(n)]
    rhs = np.zeros((bg.shape[0], n))
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        qy, qx = ys + dy, xs + dx
        inside = (qy >= 0) & (qy < H) & (qx >= 0) & (qx < W)
        p = np.flatnonzero(inside)
        qy, qx = qy[inside], qx[inside]
        vals[0][p] += 1.0  # degree
        both = valid[ys[p], xs[p]] & valid[qy, qx]
        guide = np.where(both, src[:, ys[p], xs[p]] - src[:, qy, qx], bg[:, ys[p], xs[p]] - bg[:, qy, qx])
        rhs[:, p] += guide
        q_idx = idx[qy, qx]
        unknown = q_idx >= 0
        rows.append(p[unknown])
        cols.append(q_idx[unknown])
        vals.append(-np.ones(int(unknown.sum())))
        known = ~unknown
        rhs[:, p[known]] += bg[:, qy[known], qx[known]]
    A = sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    out = bg.copy()
    if n <= 300_000:
        lu = splinalg.splu(A, permc_spec="MMD_AT_PLUS_A")  # minimum degree suits 2-D grids
        for c in range(bg.shape[0]):
            out[c, ys, xs] = lu.solve(rhs[c])
    else:
        x0 = np.where(valid, src, bg)
        for c in range(bg.shape[0]):
            out[c, ys, xs], _ = splinalg.cg(A, rhs[c], x0=x0[c, ys, xs], rtol=1e-5, maxiter=2000)
    return np.clip(out, 0.0, 1.0)


class CopyPaste(_Synthesizer):
    """Cut the object from a positive by its mask and paste it onto a negative.

    The object (its mask's bounding box plus a margin for blending) is
    rescaled so that ``scale = 1`` means its size once its source image is
    resized to the background's resolution, optionally flipped, rotated,
    and placed at a random position. The object's extent is always wholly
    inside the background: the position is drawn within the free room, and
    an object too large for the background is shrunk until it fits. The new
    mask is the pasted object's mask (the background is a negative).

    Blending: ``hard`` copies the object's pixels exactly; ``feather``
    blends with a Gaussian-blurred alpha (``feather`` sigma in px) to hide
    the seam; ``poisson`` is gradient-domain seamless cloning (Perez et al.
    2003) over the object mask dilated by one pixel, solved exactly with a
    sparse linear solver (about 1 s per 50k object pixels): the object keeps its texture but takes on the
    background's brightness (good for defects on textured surfaces, less so
    for objects whose absolute colour matters).
    """

    name = "copy-paste"
    needs_background = True

    def __init__(self, **params: Any) -> None:
        v = self._resolve(COPY_PASTE_PARAMS, params)
        self.params = v
        self.ratio: float = v["ratio"]
        self.scale_min: float = v["scale_min"]
        self.scale_max: float = v["scale_max"]
        self.rotation: float = v["rotation"]
        self.hflip: bool = v["hflip"]
        self.blend: str = v["blend"]
        self.feather: float = v["feather"]
        self.auto_mask: bool = v["auto_mask"]

    def __repr__(self) -> str:
        return f"CopyPaste({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"

    def draw(self, *, generator: torch.Generator) -> CopyPasteParams:
        """Draw scale, angle, flip and position (independent of the images' sizes)."""
        g = _check_generator(generator)
        return CopyPasteParams(
            scale=_uniform(g, self.scale_min, self.scale_max),
            angle=_uniform(g, -self.rotation, self.rotation) if self.rotation > 0 else 0.0,
            hflip=self.hflip and _coin(g, 0.5),
            u=_uniform(g, 0.0, 1.0),
            v=_uniform(g, 0.0, 1.0),
        )

    def _transform_object(
        self, image: Tensor, mask: Tensor, box: tuple[int, int, int, int], scale: float, params: CopyPasteParams
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Crop (with margin), flip, resize by ``scale``, rotate; returns image, alpha, valid."""
        _, Hs, Ws = image.shape
        y0, y1, x0, x1 = box
        ring = (3 * self.feather if self.blend == "feather" else 0.0) + 2.0
        m = math.ceil(ring / scale) + 1
        y0, y1, x0, x1 = max(0, y0 - m), min(Hs, y1 + m), max(0, x0 - m), min(Ws, x1 + m)
        img = tv_tensors.Image(image[:, y0:y1, x0:x1].float())
        # Alpha and "valid" (pixels that come from the source) ride along as soft
        # one-channel images, resampled bilinearly and thresholded at the end.
        alpha = tv_tensors.Image(mask[None, y0:y1, x0:x1].float())
        valid = tv_tensors.Image(torch.ones_like(alpha))
        if params.hflip:
            img, alpha = TF.horizontal_flip(img), TF.horizontal_flip(alpha)
        h, w = y1 - y0, x1 - x0
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        if (nh, nw) != (h, w):
            img = TF.resize(img, [nh, nw], interpolation=_BILINEAR, antialias=True)
            alpha = TF.resize(alpha, [nh, nw], interpolation=_BILINEAR, antialias=True)
            valid = TF.resize(valid, [nh, nw], interpolation=_BILINEAR, antialias=True)
        if params.angle != 0.0:
            img = TF.rotate(img, params.angle, interpolation=_BILINEAR, expand=True)
            alpha = TF.rotate(alpha, params.angle, interpolation=_BILINEAR, expand=True)
            valid = TF.rotate(valid, params.angle, interpolation=_BILINEAR, expand=True)
        hard = _binarize(alpha.as_subclass(Tensor))
        return img.as_subclass(Tensor), hard, valid.as_subclass(Tensor)[0] >= 0.99

    def apply(
        self, image: Tensor, mask: Tensor, background: Tensor, params: CopyPasteParams
    ) -> tuple[Tensor, Tensor]:
        """Paste the object of ``(image, mask)`` onto ``background`` as ``params`` say.

        Returns the new image (size of ``background``) and the pasted object's mask.
        """
        image = _check_image(image, "object image")
        background = _check_image(background, "background")
        mask = _check_mask(mask, image)
        box = mask_bbox(mask)
        if box is None:
            raise DataError("copy-paste: the object mask is empty; nothing to paste")
        _, Hb, Wb = background.shape
        _, Hs, Ws = image.shape
        scale = params.scale * math.sqrt((Hb * Wb) / (Hs * Ws))
        # Shrink until the object's extent fits the background (a few rounds absorb rounding).
        for _ in range(8):
            patch, alpha, valid = self._transform_object(image, mask, box, scale, params)
            ob = mask_bbox(alpha)
            assert ob is not None
            oh, ow = ob[1] - ob[0], ob[3] - ob[2]
            if oh <= Hb and ow <= Wb:
                break
            scale *= 0.98 * min(Hb / oh, Wb / ow)
        else:  # still too large after 8 rounds: crop the patch to the object and resize it to fit
            oy0, oy1, ox0, ox1 = ob
            f = min(Hb / oh, Wb / ow)
            nh, nw = max(1, min(Hb, math.floor(oh * f))), max(1, min(Wb, math.floor(ow * f)))
            patch = TF.resize(patch[:, oy0:oy1, ox0:ox1], [nh, nw], antialias=True)
            alpha = _binarize(TF.resize(alpha[None, oy0:oy1, ox0:ox1].float(), [nh, nw], antialias=True))
            valid = torch.ones_like(alpha)
            ob = mask_bbox(alpha)
            assert ob is not None
            oh, ow = ob[1] - ob[0], ob[3] - ob[2]
        # Object extent at (ty, tx) in the background, fully inside.
        ty = min(Hb - oh, max(0, round(params.u * (Hb - oh))))
        tx = min(Wb - ow, max(0, round(params.v * (Wb - ow))))
        py, px = ty - ob[0], tx - ob[2]  # patch top-left in background coordinates
        ph, pw = alpha.shape
        # Intersection of the patch with the frame.
        by0, by1 = max(0, py), min(Hb, py + ph)
        bx0, bx1 = max(0, px), min(Wb, px + pw)
        sy0, sx0 = by0 - py, bx0 - px
        sy1, sx1 = sy0 + (by1 - by0), sx0 + (bx1 - bx0)

        dev = background.device
        out = background.float().clone()
        new_mask = torch.zeros(Hb, Wb, dtype=torch.bool, device=dev)
        a = alpha[sy0:sy1, sx0:sx1].to(dev)
        new_mask[by0:by1, bx0:bx1] = a
        src = patch[:, sy0:sy1, sx0:sx1].to(dev)
        val = valid[sy0:sy1, sx0:sx1].to(dev)
        region = out[:, by0:by1, bx0:bx1]
        if self.blend == "hard":
            region[:] = torch.where(a[None], src, region)
        elif self.blend == "feather":
            soft = a.float()[None]
            if self.feather > 0:
                full_alpha = alpha.float()[None]
                k = 2 * math.ceil(3 * self.feather) + 1
                k = min(k, 2 * min(full_alpha.shape[-2:]) - 1)
                if k >= 3:
                    full_alpha = TF.gaussian_blur(full_alpha, [k, k], [self.feather, self.feather])
                soft = full_alpha[:, sy0:sy1, sx0:sx1].to(dev)
            soft = soft * val[None].float()
            region[:] = soft * src + (1 - soft) * region
        else:  # poisson
            bg_np = out.cpu().double().numpy()
            src_full = np.zeros_like(bg_np)
            src_full[:, by0:by1, bx0:bx1] = src.cpu().double().numpy()
            valid_full = np.zeros((Hb, Wb), bool)
            valid_full[by0:by1, bx0:bx1] = val.cpu().numpy()
            omega = ndimage.binary_dilation(new_mask.cpu().numpy(), iterations=1) & valid_full
            blended = _poisson_blend(bg_np, src_full, valid_full, omega)
            out = torch.from_numpy(blended).to(dev, torch.float32)
        return out.clamp_(0.0, 1.0).to(background.dtype).contiguous(), new_mask

    def __call__(
        self, image: Tensor, mask: Tensor | None, *, generator: torch.Generator,
        background: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Paste the object of one positive onto ``background`` (a negative image), on the fly."""
        if background is None:
            raise ConfigError(
                "copy-paste needs a background to paste onto: pass background=<a negative "
                "image> (a (3, H, W) tensor)"
            )
        image = _check_image(image)
        mask = self._object_mask(image, mask, "this image")
        if not bool(mask.any()):
            raise DataError(
                "copy-paste: no object found in this image (automatic mask is empty); "
                "give its mask or leave it out"
            )
        return self.apply(image, mask, background, self.draw(generator=generator))

    def synthesize(
        self,
        positives: Sequence[tuple[Tensor, Tensor | None]],
        negatives: Sequence[Tensor],
        n: int,
        *,
        generator: torch.Generator,
    ) -> list[tuple[Tensor, Tensor]]:
        """``n`` new ``(image, mask)`` positives: objects of ``positives`` on ``negatives``.

        Objects and backgrounds are each used equally often, in random pairs.
        Positives without a usable object (empty automatic mask) are skipped.
        """
        g = _check_generator(generator)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return []
        if not positives:
            raise DataError("copy-paste needs at least one positive image (the objects); got none")
        if not negatives:
            raise DataError(
                "copy-paste needs at least one negative image to paste objects onto; got none"
            )
        objects: list[tuple[Tensor, Tensor]] = []
        for i, (image, mask) in enumerate(positives):
            image = _check_image(image, f"positive #{i}")
            m = self._object_mask(image, mask, f"positive #{i}")
            if bool(m.any()):
                objects.append((image, m))
        if not objects:
            raise DataError(
                f"copy-paste found no object in any of the {len(positives)} positives "
                "(all masks empty); give masks for the positives"
            )
        obj_order = _cycle(g, len(objects), n)
        bg_order = _cycle(g, len(negatives), n)
        out = []
        for oi, bi in zip(obj_order, bg_order):
            params = self.draw(generator=g)
            image, m = objects[oi]
            bg = _check_image(negatives[bi], f"negative #{bi}")
            out.append(self.apply(image, m, bg, params))
        return out


def _build_copy_paste(ctx: StrategyContext, **params: Any) -> CopyPaste:
    return CopyPaste(**params)


# corrects_prior is False, as for augment-oversample (see there): the counts after synthesis are measured.
register_strategy(StrategyRecord(
    name="copy-paste",
    family="synthesis",
    description="cut the object by its mask and paste it onto negative backgrounds (new positives with masks)",
    reference="Dwibedi et al. 2017, Cut, Paste and Learn (ICCV); Ghiasi et al. 2021, Simple Copy-Paste (CVPR)",
    params=COPY_PASTE_PARAMS,
    build=_build_copy_paste,
    needs_background=CopyPaste.needs_background,
    constraint=scale_order,
))
