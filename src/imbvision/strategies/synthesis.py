"""Synthesis: new minority images *with masks*, made in pixel space.

Two strategies, both registered in the family ``"synthesis"``:

``augment-oversample`` (:class:`AugmentOversample`)
    Modified copies of positives (seed: "create new, modified copies of your
    minority class images"): flips, rotation, zoom and crop, brightness,
    contrast, blur and noise, applied jointly to image and mask with
    ``torchvision.transforms.v2`` kernels. The crop always contains the
    object's (rotated) bounding box, so the object never leaves the frame.
``copy-paste`` (:class:`CopyPaste`)
    The object is cut from a positive by its mask and pasted onto a negative
    (seed: "crop it and paste it onto various backgrounds"), at a random
    position, scale and rotation, with ``hard``, ``feather`` or ``poisson``
    blending. The pasted object always lies wholly inside the frame.

Both follow the torchvision ``transforms.v2`` split of a random *draw* from
its *application*: ``params = op.draw(..., generator=g)`` then
``op.apply(..., params)``; the draw takes an explicit :class:`torch.Generator`
and nothing reads the global RNG. ``synthesize`` makes ``n`` new
``(image, mask)`` pairs for an offline dataset; ``__call__`` transforms one
sample on the fly during fine-tuning.

When a positive has no mask, :func:`propose_mask` segments the object
automatically; :func:`save_mask_contact_sheet` renders proposals for a person
to check before trusting them.

Why one file: the two synthesisers share the random-draw helpers, the image
and mask checks, the automatic mask proposal and the ``_Synthesizer`` base
(parameter resolution, ``n_to_generate``, ``synthesize``); most of the length
is their documented geometry (rotation extents, reflection padding, Poisson
blending). A new synthesiser may live in its own module that registers a
record declaring ``needs_background``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..errors import ConfigError, DataError
from .registry import Param, StrategyContext, StrategyRecord, register_strategy, resolve_params

__all__ = [
    "AugmentOversample",
    "AugmentParams",
    "CopyPaste",
    "CopyPasteParams",
    "propose_mask",
    "save_mask_contact_sheet",
    "mask_bbox",
    "AUGMENT_PARAMS",
    "COPY_PASTE_PARAMS",
]

_BILINEAR = InterpolationMode.BILINEAR


# --------------------------------------------------------------------------- random draws
# Every draw goes through the caller's generator. Scalars are drawn on the
# generator's own device so that a CUDA generator works too.


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    u = float(torch.rand((), generator=g, device=g.device))
    return lo + (hi - lo) * u


def _coin(g: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=g, device=g.device)) < p


def _seed(g: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (), generator=g, device=g.device))


def _cycle(g: torch.Generator, n_items: int, n: int) -> list[int]:
    """``n`` indices that visit every item equally often, in random order."""
    out: list[int] = []
    while len(out) < n:
        out.extend(torch.randperm(n_items, generator=g, device=g.device).tolist())
    return out[:n]


def _check_generator(g: Any) -> torch.Generator:
    if not isinstance(g, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator, got {type(g).__name__}; "
            "pass e.g. torch.Generator().manual_seed(0)"
        )
    return g


# --------------------------------------------------------------------------- validation


def scale_order(params: Mapping[str, Any]) -> str | None:
    """The synthesisers' rule between parameters (their records' ``constraint``): ``scale_min <= scale_max``."""
    if params["scale_min"] > params["scale_max"]:
        return (f"scale_min={params['scale_min']:g} is larger than scale_max={params['scale_max']:g}; "
                "valid: 0 < scale_min <= scale_max")
    return None


def _validate(strategy: str, spec: Mapping[str, Param], values: Mapping[str, Any]) -> dict[str, Any]:
    """Coerce every parameter through its :class:`Param` and check the record's rule between them."""
    out = {k: spec[k].coerce(strategy, k, v) for k, v in values.items()}
    why = scale_order(out)
    if why:
        raise ConfigError(f"strategy {strategy!r}: {why}")
    return out


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


# --------------------------------------------------------------------------- common base


class _Synthesizer:
    """Shared parts: the ``ratio`` arithmetic, mask lookup and the synthesis loop."""

    name = ""
    #: Whether ``__call__``/``synthesize`` need negative backgrounds.
    needs_background = False
    ratio: float
    auto_mask: bool

    def _resolve(self, spec: Mapping[str, Param], params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in, unknown names refused, every value checked against ``spec`` (the registry's resolver)."""
        return _validate(self.name, spec, resolve_params(self.name, spec, params))

    def n_to_generate(self, n_pos: int, n_neg: int) -> int:
        """How many new positives reach ``ratio`` positives per negative.

        ``max(0, ceil(ratio * n_neg) - n_pos)``; the product is rounded to
        9 decimals first so that e.g. ``0.1 * 30`` gives 3, not 4.
        """
        if n_pos < 0 or n_neg < 0:
            raise ValueError(f"class counts must be >= 0, got n_pos={n_pos}, n_neg={n_neg}")
        return max(0, math.ceil(round(self.ratio * n_neg, 9)) - n_pos)

    def _object_mask(self, image: Tensor, mask: Tensor | None, where: str) -> Tensor:
        """The given mask, or a proposal when it is absent/empty and ``auto_mask`` is on."""
        if mask is not None:
            mask = _check_mask(mask, image, f"mask of {where}")
            if bool(mask.any()):
                return mask
        if not self.auto_mask:
            raise ConfigError(
                f"{self.name} needs an object mask for {where}, which has "
                f"{'an empty mask' if mask is not None else 'none'}; give masks for the "
                f"positives or set auto_mask=true to segment them automatically (propose_mask)"
            )
        return propose_mask(image)


# --------------------------------------------------------------------------- augment-oversample

AUGMENT_PARAMS: dict[str, Param] = {
    "ratio": Param(0.5, "float", low=0.0, low_open=True,
                   doc="target positives per negative after synthesis"),
    "hflip": Param(True, "bool", doc="random horizontal flip (p=0.5)"),
    "vflip": Param(False, "bool", doc="random vertical flip (p=0.5)"),
    "rotation": Param(15.0, "float", low=0.0, high=180.0, doc="max rotation in degrees"),
    "scale_min": Param(0.9, "float", low=0.0, low_open=True, high=10.0,
                       doc="min zoom (<1 zooms out, borders reflected)"),
    "scale_max": Param(1.3, "float", low=0.0, low_open=True, high=10.0, doc="max zoom"),
    "brightness": Param(0.2, "float", low=0.0, high=1.0, doc="brightness factor in [1-b, 1+b]"),
    "contrast": Param(0.2, "float", low=0.0, high=1.0, doc="contrast factor in [1-c, 1+c]"),
    "blur": Param(1.0, "float", low=0.0, high=10.0,
                  doc="max Gaussian blur sigma in px (blur applied with p=0.5)"),
    "noise": Param(0.02, "float", low=0.0, high=0.5, doc="max Gaussian noise std"),
    "auto_mask": Param(True, "bool", doc="segment positives without a mask (propose_mask)"),
}


@dataclass(frozen=True)
class AugmentParams:
    """One draw of :class:`AugmentOversample`.

    ``crop`` is ``(top, left, height, width)`` in the coordinates of the
    flipped and rotated frame; it may extend past the frame (zoom out or an
    object near the border), where the image is mirrored.
    """

    hflip: bool
    vflip: bool
    angle: float
    crop: tuple[int, int, int, int]
    brightness: float
    contrast: float
    blur_sigma: float
    noise_std: float
    noise_seed: int


def _rotated_extent(
    box: tuple[float, float, float, float], angle: float, cy: float, cx: float
) -> tuple[float, float, float, float]:
    """Axis-aligned extent of ``box`` (y0, y1, x0, x1) rotated by ``angle`` degrees about (cy, cx).

    Same convention as torchvision: positive angles turn counter-clockwise on
    screen (y axis pointing down).
    """
    y0, y1, x0, x1 = box
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    xs, ys = [], []
    for y, x in ((y0, x0), (y0, x1), (y1, x0), (y1, x1)):
        dx, dy = x - cx, y - cy
        xs.append(cx + dx * c + dy * s)
        ys.append(cy - dx * s + dy * c)
    return min(ys), max(ys), min(xs), max(xs)


def _binarize(soft: Tensor) -> Tensor:
    """A resampled ``(1, H, W)`` coverage map as a bool mask: coverage >= 0.5.

    Bilinear resampling and a 0.5 threshold give smooth outlines aligned with
    the bilinearly resampled image, where nearest-neighbour (what v2 applies
    to ``tv_tensors.Mask``) gives staircase outlines after rotation or zoom.
    If nothing reaches 0.5 (an object shrunk below a pixel), the pixels of
    highest coverage are kept so that the object does not vanish.
    """
    s = soft[0]
    hard = s >= 0.5
    if not bool(hard.any()):
        top = float(s.max()) if s.numel() else 0.0
        if top > 0:
            hard = s >= top
    return hard


def _reflect_pad(t: Tensor, pad: int) -> Tensor:
    """Mirror-pad the last two dims by ``pad``, in steps (one reflection must be < the size)."""
    while pad > 0:
        step = min(pad, t.shape[-1] - 1, t.shape[-2] - 1)
        if step <= 0:  # a 1-pixel image cannot be mirrored: repeat its edge
            return TF.pad(t, [pad] * 4, padding_mode="edge")
        t = TF.pad(t, [step] * 4, padding_mode="reflect")
        pad -= step
    return t


class AugmentOversample(_Synthesizer):
    """Oversample positives with modified copies that keep the object in frame.

    Geometry (the same v2 kernels and parameters for image and mask, so the
    mask moves with the image): optional flips; rotation about the
    image centre by up to ``rotation`` degrees (halved until an object near
    the border stays in the frame); a crop of ``1/zoom`` of the
    frame, zoom drawn in ``[scale_min, scale_max]``, resized back to the
    input size. The crop is drawn among positions that contain the object's
    rotated bounding box (and prefers positions inside the frame); when the
    box does not fit at the drawn zoom, the zoom is lowered until it does.
    Pixels from outside the frame (rotation corners, zoom out) are mirrored,
    for the image and the mask alike, as albumentations does by default, so
    no black wedges appear. The mask is carried as a one-channel float image
    and thresholded at 0.5 at the end rather than as ``tv_tensors.Mask``:
    v2 resamples a ``Mask`` with nearest neighbour, whose staircase outlines
    after rotation and zoom sit visibly off the bilinearly resampled object.

    Photometry (image only): brightness and contrast factors, Gaussian blur
    (with probability 0.5) and Gaussian noise, clipped to [0, 1].

    Randomness: :meth:`draw` takes every parameter from the caller's
    generator and :meth:`apply` runs the v2 *functional* kernels with them.
    ``v2`` transform objects draw from the global RNG; wrapping them in
    ``torch.random.fork_rng()`` + ``torch.manual_seed(<int from the
    generator>)`` would work but is slow (it forks every CUDA device's state
    too), is not thread-safe and still touches global state. Drawing the
    parameters ourselves also gives the ``draw``/``apply`` split and lets the
    crop depend on the mask.
    """

    name = "augment-oversample"
    needs_background = False

    def __init__(self, **params: Any) -> None:
        v = self._resolve(AUGMENT_PARAMS, params)
        self.params = v
        self.ratio: float = v["ratio"]
        self.hflip: bool = v["hflip"]
        self.vflip: bool = v["vflip"]
        self.rotation: float = v["rotation"]
        self.scale_min: float = v["scale_min"]
        self.scale_max: float = v["scale_max"]
        self.brightness: float = v["brightness"]
        self.contrast: float = v["contrast"]
        self.blur: float = v["blur"]
        self.noise: float = v["noise"]
        self.auto_mask: bool = v["auto_mask"]

    def __repr__(self) -> str:
        return f"AugmentOversample({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"

    # -- draw -------------------------------------------------------------------------
    def draw(self, size: tuple[int, int], mask: Tensor | None, *, generator: torch.Generator) -> AugmentParams:
        """Draw one set of parameters for an image of ``size = (H, W)`` whose object is ``mask``.

        An empty or absent mask puts no constraint on the crop.
        """
        g = _check_generator(generator)
        H, W = int(size[0]), int(size[1])
        hflip = self.hflip and _coin(g, 0.5)
        vflip = self.vflip and _coin(g, 0.5)
        angle = _uniform(g, -self.rotation, self.rotation) if self.rotation > 0 else 0.0
        zoom = _uniform(g, self.scale_min, self.scale_max)
        u_top, u_left = _uniform(g, 0.0, 1.0), _uniform(g, 0.0, 1.0)
        brightness = _uniform(g, 1 - self.brightness, 1 + self.brightness)
        contrast = _uniform(g, 1 - self.contrast, 1 + self.contrast)
        blur_sigma = _uniform(g, 0.1, self.blur) if self.blur > 0.1 and _coin(g, 0.5) else 0.0
        noise_std = _uniform(g, 0.0, self.noise)
        noise_seed = _seed(g)

        box = mask_bbox(mask) if mask is not None else None
        if box is None:  # no object: an inverted extent leaves the crop anywhere in frame
            oy0, oy1, ox0, ox1 = float(H), 0.0, float(W), 0.0
        else:
            y0, y1, x0, x1 = box
            if hflip:
                x0, x1 = W - x1, W - x0
            if vflip:
                y0, y1 = H - y1, H - y0
            # An object near the border may turn out of the frame: halve the angle
            # until it stays in (angle 0 always does), so the crop need not show
            # mirrored padding, which would also mirror the object.
            for k in range(5):  # angle, /2, /4, /8, then 0 (always inside)
                oy0, oy1, ox0, ox1 = _rotated_extent((y0, y1, x0, x1), angle, H / 2, W / 2)
                if angle == 0.0 or (oy0 >= -0.5 and ox0 >= -0.5 and oy1 <= H + 0.5 and ox1 <= W + 0.5):
                    break
                angle = angle / 2 if k < 3 else 0.0
            oy0, ox0, oy1, ox1 = oy0 - 1, ox0 - 1, oy1 + 1, ox1 + 1  # 1 px for interpolation

        # Zoom: lower it until the crop holds the object's extent.
        zoom = min(zoom, H / max(oy1 - oy0, 1e-9), W / max(ox1 - ox0, 1e-9))
        ch, cw = max(1, round(H / zoom)), max(1, round(W / zoom))

        def place(lo_obj: float, hi_obj: float, size_c: int, size_f: int, u: float) -> int:
            lo, hi = math.ceil(hi_obj - size_c), math.floor(lo_obj)  # crop contains object
            if lo > hi:  # rounding left no room: centre the crop on the object
                return round((lo_obj + hi_obj - size_c) / 2)
            f_lo, f_hi = min(0, size_f - size_c), max(0, size_f - size_c)  # stay in/over frame
            a, b = max(lo, f_lo), min(hi, f_hi)
            if a > b:
                a, b = lo, hi
            return a + min(int(u * (b - a + 1)), b - a)

        top = place(oy0, oy1, ch, H, u_top)
        left = place(ox0, ox1, cw, W, u_left)
        return AugmentParams(
            hflip=hflip, vflip=vflip, angle=angle, crop=(top, left, ch, cw),
            brightness=brightness, contrast=contrast, blur_sigma=blur_sigma,
            noise_std=noise_std, noise_seed=noise_seed,
        )

    # -- apply ------------------------------------------------------------------------
    def apply(self, image: Tensor, mask: Tensor | None, params: AugmentParams) -> tuple[Tensor, Tensor]:
        """Apply ``params`` to ``image`` and ``mask``; deterministic. Returns ``(image, mask)``."""
        image = _check_image(image)
        _, H, W = image.shape
        if mask is None:
            mask = torch.zeros(H, W, dtype=torch.bool, device=image.device)
        mask = _check_mask(mask, image)
        img: Tensor = tv_tensors.Image(image.float())
        # The mask rides along as a one-channel soft image (see the class docstring).
        msk: Tensor = tv_tensors.Image(mask.float()[None])
        if params.hflip:
            img, msk = TF.horizontal_flip(img), TF.horizontal_flip(msk)
        if params.vflip:
            img, msk = TF.vertical_flip(img), TF.vertical_flip(msk)
        top, left, ch, cw = params.crop
        # Mirror-pad enough that every crop pixel, rotated back, lands on the canvas.
        corners = [(top, left), (top, left + cw), (top + ch, left), (top + ch, left + cw)]
        if params.angle != 0.0:
            r = max(math.hypot(y - H / 2, x - W / 2) for y, x in corners)
            pad = max(0, math.ceil(r - min(H, W) / 2) + 2)
        else:
            pad = max(0, -top, -left, top + ch - H, left + cw - W)
        if pad:
            img = tv_tensors.wrap(_reflect_pad(img.as_subclass(Tensor), pad), like=img)
            msk = tv_tensors.wrap(_reflect_pad(msk.as_subclass(Tensor), pad), like=msk)
        if params.angle != 0.0:
            img = TF.rotate(img, params.angle, interpolation=_BILINEAR)
            msk = TF.rotate(msk, params.angle, interpolation=_BILINEAR)
        img = TF.resized_crop(img, top + pad, left + pad, ch, cw, [H, W], interpolation=_BILINEAR, antialias=True)
        msk = TF.resized_crop(msk, top + pad, left + pad, ch, cw, [H, W], interpolation=_BILINEAR, antialias=True)
        img = TF.adjust_brightness(img, params.brightness)
        img = TF.adjust_contrast(img, params.contrast)
        if params.blur_sigma > 0:
            k = 2 * math.ceil(3 * params.blur_sigma) + 1
            k = min(k, 2 * min(H, W) - 1)
            if k >= 3:
                img = TF.gaussian_blur(img, [k, k], [params.blur_sigma, params.blur_sigma])
        out = img.as_subclass(Tensor)
        if params.noise_std > 0:
            ng = torch.Generator(device=out.device).manual_seed(params.noise_seed)
            noise = torch.randn(out.shape, generator=ng, device=out.device, dtype=out.dtype)
            out = out + params.noise_std * noise
        out = out.clamp_(0.0, 1.0).to(image.dtype).contiguous()
        return out, _binarize(msk.as_subclass(Tensor))

    # -- convenience ------------------------------------------------------------------
    def __call__(
        self, image: Tensor, mask: Tensor | None, *, generator: torch.Generator,
        background: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Transform one positive on the fly; ``background`` is ignored (API parity).

        Without a mask (and ``auto_mask``), the mask is proposed by
        :func:`propose_mask` and returned transformed.
        """
        image = _check_image(image)
        mask = self._object_mask(image, mask, "this image")
        params = self.draw(tuple(image.shape[1:]), mask, generator=generator)
        return self.apply(image, mask, params)

    def synthesize(
        self,
        positives: Sequence[tuple[Tensor, Tensor | None]],
        negatives: Sequence[Tensor],
        n: int,
        *,
        generator: torch.Generator,
    ) -> list[tuple[Tensor, Tensor]]:
        """``n`` new ``(image, mask)`` positives, each positive used equally often.

        ``negatives`` is unused (API parity with :class:`CopyPaste`).
        """
        g = _check_generator(generator)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return []
        if not positives:
            raise DataError(f"{self.name} needs at least one positive image to synthesize from; got none")
        masks: dict[int, Tensor] = {}
        out = []
        for i in _cycle(g, len(positives), n):
            image, mask = positives[i]
            image = _check_image(image, f"positive #{i}")
            if i not in masks:
                masks[i] = self._object_mask(image, mask, f"positive #{i}")
            params = self.draw(tuple(image.shape[1:]), masks[i], generator=g)
            out.append(self.apply(image, masks[i], params))
        return out


# --------------------------------------------------------------------------- copy-paste

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


# --------------------------------------------------------------------------- registration


def _build_augment(ctx: StrategyContext, **params: Any) -> AugmentOversample:
    return AugmentOversample(**params)


def _build_copy_paste(ctx: StrategyContext, **params: Any) -> CopyPaste:
    return CopyPaste(**params)


# corrects_prior is False: synthesis changes the training data itself (the
# positives become ``ratio`` per negative), and every other remedy (sampler
# weights, class weights, focal alpha) is computed from the class counts
# *after* synthesis, so nothing is corrected twice. It adds information
# (new object appearances and contexts) rather than re-weighting.
register_strategy(StrategyRecord(
    name="augment-oversample",
    family="synthesis",
    description="oversample positives with flipped/rotated/zoomed/recoloured copies that keep the object in frame",
    reference="Oversampling by augmentation: Shorten & Khoshgoftaar 2019, A survey on Image Data Augmentation (J. Big Data)",
    params=AUGMENT_PARAMS,
    build=_build_augment,
    needs_background=AugmentOversample.needs_background,
    constraint=scale_order,
))

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
