"""Synthesis: new minority images *with masks*, made in pixel space; the shared base and ``augment-oversample``.

Owns what every synthesiser shares — the random-draw helpers, the parameter check with the
records' rule between parameters (:func:`scale_order`), the ``_Synthesizer`` base (``ratio``
arithmetic, object-mask lookup with the automatic proposal) — and the first synthesiser:

``augment-oversample`` (:class:`AugmentOversample`)
    Modified copies of positives (seed: "create new, modified copies of your
    minority class images"): flips, rotation, zoom and crop, brightness,
    contrast, blur and noise, applied jointly to image and mask with
    ``torchvision.transforms.v2`` kernels. The crop always contains the
    object's (rotated) bounding box, so the object never leaves the frame.

``copy-paste`` lives in :mod:`~imbvision.strategies.copy_paste`; the mask proposal
(:func:`propose_mask`, :func:`save_mask_contact_sheet`) in
:mod:`~imbvision.strategies.object_masks`.

Every synthesiser follows the torchvision ``transforms.v2`` split of a random *draw* from
its *application*: ``params = op.draw(..., generator=g)`` then
``op.apply(..., params)``; the draw takes an explicit :class:`torch.Generator`
and nothing reads the global RNG. ``synthesize`` makes ``n`` new
``(image, mask)`` pairs for an offline dataset; ``__call__`` transforms one
sample on the fly during fine-tuning. A new synthesiser is a module like
:mod:`~imbvision.strategies.copy_paste` that registers a record declaring ``needs_background``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..errors import ConfigError, DataError
from .object_masks import _check_image, _check_mask, mask_bbox, propose_mask
from .registry import Param, StrategyContext, StrategyRecord, register_strategy, resolve_params

__all__ = [
    "AugmentOversample",
    "AugmentParams",
    "AUGMENT_PARAMS",
    "scale_order",
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


# --------------------------------------------------------------------------- registration


def _build_augment(ctx: StrategyContext, **params: Any) -> AugmentOversample:
    return AugmentOversample(**params)


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
