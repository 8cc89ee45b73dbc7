"""Mixing: batch callables that blend pairs of images and their labels.

Every mixer is a callable ``mixer(x, y, *, generator=None, masks=None) ->
(x_mixed, soft_y)`` on a batch ``x`` of shape ``(N, 3, H, W)``:

- binary (``num_classes=None``): ``y`` is ``(N,)`` hard {0, 1} or soft
  probabilities of the positive class; ``soft_y`` is ``(N,)`` float;
- ``C`` classes (``num_classes=C``): ``y`` is ``(N,)`` class ids or ``(N, C)``
  soft labels; ``soft_y`` is ``(N, C)`` float with rows summing to 1.

As in torchvision ``transforms.v2``, the random draw is separate from its
application: ``params = mixer.draw(N, H, W, generator, ...)`` then
``mixer.apply(x, y, params, masks=masks)``; the draw reads only the given
:class:`torch.Generator` (a mixer built with ``seed`` owns one, used when
``generator`` is None). Nothing touches the global RNG.

Why hand-written rather than ``torchvision.transforms.v2.MixUp/CutMix``:
those draw from the global RNG, need ``num_classes`` and integer labels (no
soft binary probabilities) and mix a batch with its roll rather than a
random permutation; the minority-aware and object-aware variants need the
pieces anyway.

Beta draws: :class:`torch.distributions.Beta` cannot take a generator, so
lambda is drawn by inverse-transform sampling, ``scipy.special.betaincinv(a,
a, u)`` of a uniform ``u`` from the generator: exact, and reproducible from
the generator alone.

Why one file: the four mixers share the batch and mask checks, the split of
random draws from their application and the soft-label conventions; each
mixer is about a hundred lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from scipy.special import betaincinv
from torch import Tensor

from ..errors import ConfigError
from .registry import Param, StrategyContext, StrategyRecord, register_strategy, resolve_params

__all__ = [
    "MixParams",
    "ObjectCutMixParams",
    "MixUp",
    "CutMix",
    "MinorityMixUp",
    "ObjectCutMix",
    "sample_beta",
    "MIXUP_PARAMS",
    "CUTMIX_PARAMS",
    "MINORITY_MIXUP_PARAMS",
    "OBJECT_CUTMIX_PARAMS",
]


# --------------------------------------------------------------------------- helpers


def sample_beta(alpha: float, size: int, generator: torch.Generator) -> Tensor:
    """``size`` draws of Beta(alpha, alpha) from ``generator`` (inverse CDF), float64 CPU."""
    u = torch.rand(size, generator=generator, device=generator.device, dtype=torch.float64).cpu()
    return torch.from_numpy(np.asarray(betaincinv(alpha, alpha, u.numpy()), dtype=np.float64))


def _check_generator(g: Any) -> torch.Generator:
    if not isinstance(g, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator, got {type(g).__name__}; "
            "pass e.g. torch.Generator().manual_seed(0)"
        )
    return g


def _rand(g: torch.Generator, n: int) -> Tensor:
    return torch.rand(n, generator=g, device=g.device, dtype=torch.float64).cpu()


def _randperm(g: torch.Generator, n: int) -> Tensor:
    return torch.randperm(n, generator=g, device=g.device).cpu()


def _validate(strategy: str, spec: Mapping[str, Param], params: Mapping[str, Any]) -> dict[str, Any]:
    return resolve_params(strategy, spec, params)  # the registry's one resolver


def _check_batch(x: Any) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a float batch of shape (N, C, H, W), got {shape}")
    return x


def _check_masks(masks: Any, x: Tensor, strategy: str) -> Tensor:
    n, _, h, w = x.shape
    if not isinstance(masks, Tensor) or tuple(masks.shape) != (n, h, w):
        shape = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"{strategy}: masks must be a bool tensor of shape {(n, h, w)}, got {shape}")
    return masks.bool()


# --------------------------------------------------------------------------- params


@dataclass(frozen=True)
class MixParams:
    """One draw of a pairwise mixer.

    Attributes
    ----------
    lam
        ``(N,)`` share of sample ``i`` itself in the mixed image (mixup).
    perm
        ``(N,)`` partner index of each sample.
    label_lam
        ``(N,)`` share of sample ``i``'s label in the soft label; None means
        ``lam`` (mixup) or the unpasted area (cutmix, computed from ``boxes``).
    boxes
        ``(N, 4)`` ``(y0, x0, y1, x1)`` region (end exclusive) of each image
        replaced by its partner's pixels (cutmix); None for blending.
    """

    lam: Tensor
    perm: Tensor
    label_lam: Tensor | None = None
    boxes: Tensor | None = None


@dataclass(frozen=True)
class ObjectCutMixParams:
    """One draw of :class:`ObjectCutMix`.

    ``active[i]``: sample ``i`` receives a pasted object, taken from sample
    ``src[i]``'s box ``src_box[i] = (y0, x0, y1, x1)`` and pasted with its
    top-left corner at ``dst[i] = (top, left)``.
    """

    active: Tensor
    src: Tensor
    src_box: Tensor
    dst: Tensor


class _Mixer:
    """Label handling shared by every mixer."""

    name = ""

    def __init__(self, num_classes: int | None, seed: int) -> None:
        if num_classes is not None and (not isinstance(num_classes, (int, np.integer)) or num_classes < 2):
            raise ConfigError(f"num_classes={num_classes!r} is invalid; valid: None (binary) or an integer >= 2")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def soft_labels(self, y: Tensor, n: int) -> Tensor:
        """``y`` as float soft labels: ``(N,)`` binary probabilities or ``(N, C)`` rows."""
        if not isinstance(y, Tensor):
            y = torch.as_tensor(y)
        if y.shape[0] != n:
            raise ValueError(f"{self.name}: got {y.shape[0]} labels for a batch of {n} images")
        if y.ndim == 2:
            if self.num_classes is not None and y.shape[1] != self.num_classes:
                raise ValueError(f"{self.name}: soft labels have {y.shape[1]} columns, expected {self.num_classes}")
            return y.float()
        if y.ndim != 1:
            raise ValueError(f"{self.name}: labels must be (N,) or (N, C), got shape {tuple(y.shape)}")
        if self.num_classes is None:
            yf = y.float()
            if n and (float(yf.min()) < 0 or float(yf.max()) > 1):
                raise ValueError(
                    f"{self.name}: binary labels must be in [0, 1], got values in "
                    f"[{float(yf.min()):g}, {float(yf.max()):g}]; for C classes build with num_classes=C"
                )
            return yf
        if y.is_floating_point():
            if not bool(torch.all(y == y.round())):
                raise ValueError(f"{self.name}: with num_classes={self.num_classes}, labels must be class ids")
            y = y.long()
        if n and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(
                f"{self.name}: class ids must be in [0, {self.num_classes - 1}], "
                f"got [{int(y.min())}, {int(y.max())}]"
            )
        return torch.nn.functional.one_hot(y.long(), self.num_classes).float()

    def hard_classes(self, y: Tensor) -> Tensor:
        """Class id per sample: ``y >= 0.5`` (binary), argmax (soft rows) or ``y`` itself."""
        if y.ndim == 2:
            return y.argmax(dim=1).long()
        if self.num_classes is None:
            return (y.float() >= 0.5).long()
        return y.long()

    @staticmethod
    def _combine(soft: Tensor, perm: Tensor, share: Tensor) -> Tensor:
        s = share.to(soft.device, soft.dtype)
        if soft.ndim == 2:
            s = s[:, None]
        return s * soft + (1 - s) * soft[perm.to(soft.device)]

    def __call__(
        self, x: Tensor, y: Tensor, *, generator: torch.Generator | None = None, masks: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mix a batch: draw with ``generator`` (or the mixer's own) and apply."""
        x = _check_batch(x)
        g = self.generator if generator is None else _check_generator(generator)
        n, _, h, w = x.shape
        params = self.draw(n, h, w, g, **self._draw_kwargs(x, y, masks))
        return self.apply(x, y, params, masks=masks)

    # subclasses
    def draw(self, batch_size: int, height: int, width: int, generator: torch.Generator, **kw: Any) -> Any:
        raise NotImplementedError

    def apply(self, x: Tensor, y: Tensor, params: Any, masks: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _draw_kwargs(self, x: Tensor, y: Tensor, masks: Tensor | None) -> dict[str, Any]:
        return {}


# --------------------------------------------------------------------------- mixup

MIXUP_PARAMS: dict[str, Param] = {
    "alpha": Param(0.4, "float", low=0.0, low_open=True, doc="Beta(alpha, alpha) of the mixing weight"),
}


class MixUp(_Mixer):
    """MixUp (Zhang et al., ICLR 2018): ``lam * x_i + (1 - lam) * x_perm(i)``, labels alike.

    One ``lam ~ Beta(alpha, alpha)`` per batch and a random permutation as
    partners, as in the paper.
    """

    name = "mixup"

    def __init__(self, alpha: float = 0.4, *, num_classes: int | None = None, seed: int = 0) -> None:
        super().__init__(num_classes, seed)
        self.alpha: float = _validate(self.name, MIXUP_PARAMS, {"alpha": alpha})["alpha"]

    def __repr__(self) -> str:
        return f"MixUp(alpha={self.alpha:g}, num_classes={self.num_classes})"

    def draw(self, batch_size: int, height: int, width: int, generator: torch.Generator, **kw: Any) -> MixParams:
        """One ``lam`` for the batch and a permutation of partners."""
        g = _check_generator(generator)
        lam = float(sample_beta(self.alpha, 1, g)[0])
        return MixParams(lam=torch.full((batch_size,), lam, dtype=torch.float64), perm=_randperm(g, batch_size))

    def apply(self, x: Tensor, y: Tensor, params: MixParams, masks: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Blend images with ``lam`` and labels with ``label_lam`` (default ``lam``)."""
        x = _check_batch(x)
        soft = self.soft_labels(y, x.shape[0])
        perm = params.perm.to(x.device)
        lam = params.lam.to(x.device, x.dtype).view(-1, 1, 1, 1)
        x_mixed = lam * x + (1 - lam) * x[perm]
        share = params.lam if params.label_lam is None else params.label_lam
        return x_mixed, self._combine(soft, params.perm, share)


# --------------------------------------------------------------------------- cutmix

CUTMIX_PARAMS: dict[str, Param] = {
    "alpha": Param(1.0, "float", low=0.0, low_open=True, doc="Beta(alpha, alpha) of the kept area"),
}


def _box_masks(boxes: Tensor, h: int, w: int, device: torch.device) -> Tensor:
    """``(N, H, W)`` bool masks of ``(y0, x0, y1, x1)`` boxes."""
    b = boxes.to(device)
    ys = torch.arange(h, device=device)[None, :, None]
    xs = torch.arange(w, device=device)[None, None, :]
    return (
        (ys >= b[:, 0, None, None]) & (ys < b[:, 2, None, None])
        & (xs >= b[:, 1, None, None]) & (xs < b[:, 3, None, None])
    )


class CutMix(_Mixer):
    """CutMix (Yun et al., ICCV 2019): a partner's box replaces a region of each image.

    ``lam ~ Beta(alpha, alpha)`` sets the box to ``sqrt(1 - lam)`` of each
    side, centred uniformly and clipped to the frame (one box per batch, as
    in the paper). The label share of the partner is the *actual* pasted
    area fraction after clipping.
    """

    name = "cutmix"

    def __init__(self, alpha: float = 1.0, *, num_classes: int | None = None, seed: int = 0) -> None:
        super().__init__(num_classes, seed)
        self.alpha: float = _validate(self.name, CUTMIX_PARAMS, {"alpha": alpha})["alpha"]

    def __repr__(self) -> str:
        return f"CutMix(alpha={self.alpha:g}, num_classes={self.num_classes})"

    def draw(self, batch_size: int, height: int, width: int, generator: torch.Generator, **kw: Any) -> MixParams:
        """One box for the batch and a permutation of partners."""
        g = _check_generator(generator)
        lam = float(sample_beta(self.alpha, 1, g)[0])
        r = float(np.sqrt(1.0 - lam))
        ch, cw = int(height * r), int(width * r)
        c = _rand(g, 2)
        cy, cx = min(int(c[0] * height), height - 1), min(int(c[1] * width), width - 1)
        y0, x0 = cy - ch // 2, cx - cw // 2
        y1, x1 = y0 + ch, x0 + cw
        box = torch.tensor(
            [max(0, y0), max(0, x0), min(height, y1), min(width, x1)], dtype=torch.long
        )
        area = float((box[2] - box[0]) * (box[3] - box[1])) / (height * width)
        return MixParams(
            lam=torch.full((batch_size,), 1.0 - area, dtype=torch.float64),
            perm=_randperm(g, batch_size),
            boxes=box.expand(batch_size, 4).clone(),
        )

    def apply(self, x: Tensor, y: Tensor, params: MixParams, masks: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Paste the partners' boxes; label share of each image = its unpasted area fraction."""
        x = _check_batch(x)
        n, _, h, w = x.shape
        soft = self.soft_labels(y, n)
        if params.boxes is None:
            raise ValueError("cutmix params carry no boxes; draw them with CutMix.draw")
        inside = _box_masks(params.boxes, h, w, x.device)
        perm = params.perm.to(x.device)
        x_mixed = torch.where(inside[:, None], x[perm], x)
        kept = 1.0 - inside.flatten(1).double().mean(dim=1)
        share = kept if params.label_lam is None else params.label_lam
        return x_mixed, self._combine(soft, params.perm, share)


# --------------------------------------------------------------------------- minority mixup (Remix)

MINORITY_MIXUP_PARAMS: dict[str, Param] = {
    "alpha": Param(1.0, "float", low=0.0, low_open=True, doc="Beta(alpha, alpha) of the mixing weight"),
    "kappa": Param(3.0, "float", low=1.0, doc="count ratio from which the label goes to the minority"),
    "tau": Param(0.5, "float", low=0.0, high=1.0, doc="partner share below which the label goes to the minority"),
}


class MinorityMixUp(MixUp):
    """Minority-aware mixup with the Remix label rule (Chou et al., ECCV-W 2020).

    Only minority samples are mixed; every other sample is returned unchanged.
    For a sample ``i`` of class ``c_i`` (hard class; binary: ``y >= 0.5``):

    1. its partner ``j`` is drawn uniformly among the batch samples of a
       *more frequent* class (``n_{c_j} > n_{c_i}``, counts from
       ``class_counts``, else from the batch); if there is none, ``i`` is
       unchanged. Binary: each positive is mixed with a random negative.
    2. ``lam_i ~ Beta(alpha, alpha)`` per sample; image
       ``lam_i * x_i + (1 - lam_i) * x_j``.
    3. Remix label rule: if ``n_{c_j} / n_{c_i} >= kappa`` and the partner's
       share ``1 - lam_i < tau``, the label is entirely ``y_i`` (the
       minority); otherwise it is the mixup label ``lam_i y_i + (1 - lam_i)
       y_j``.

    Step 3 is Remix's rule seen from the minority sample (Remix: label
    ``y_minority`` when ``n_major / n_minor >= kappa`` and the majority's
    share ``< tau``), with its defaults ``kappa = 3``, ``tau = 0.5``. The
    mixed images are therefore mostly-minority images carrying a full
    minority label, which pushes the boundary toward the majority.
    """

    name = "minority-mixup"

    def __init__(
        self,
        alpha: float = 1.0,
        kappa: float = 3.0,
        tau: float = 0.5,
        *,
        class_counts: Sequence[int] | None = None,
        num_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        _Mixer.__init__(self, num_classes, seed)
        v = _validate(self.name, MINORITY_MIXUP_PARAMS, {"alpha": alpha, "kappa": kappa, "tau": tau})
        self.alpha, self.kappa, self.tau = v["alpha"], v["kappa"], v["tau"]
        if class_counts is not None:
            cc = [int(c) for c in class_counts]
            if any(c < 0 for c in cc):
                raise ConfigError(f"class_counts={tuple(class_counts)} is invalid; valid: counts >= 0")
            self.class_counts: tuple[int, ...] | None = tuple(cc)
        else:
            self.class_counts = None

    def __repr__(self) -> str:
        return (
            f"MinorityMixUp(alpha={self.alpha:g}, kappa={self.kappa:g}, tau={self.tau:g}, "
            f"class_counts={self.class_counts}, num_classes={self.num_classes})"
        )

    def _draw_kwargs(self, x: Tensor, y: Tensor, masks: Tensor | None) -> dict[str, Any]:
        if not isinstance(y, Tensor):
            y = torch.as_tensor(y)
        return {"labels": self.hard_classes(y)}

    def draw(
        self, batch_size: int, height: int, width: int, generator: torch.Generator, *,
        labels: Tensor | None = None, **kw: Any,
    ) -> MixParams:
        """Partners, ``lam`` and label shares for hard class ids ``labels`` ``(N,)``."""
        g = _check_generator(generator)
        if labels is None or labels.shape[0] != batch_size:
            raise ValueError("minority-mixup draw needs labels: the (N,) hard class ids of the batch")
        cls = labels.detach().cpu().long()
        n_cls = int(cls.max()) + 1 if batch_size else 0
        if self.class_counts is not None:
            counts = torch.zeros(max(n_cls, len(self.class_counts)), dtype=torch.float64)
            counts[: len(self.class_counts)] = torch.tensor(self.class_counts, dtype=torch.float64)
        else:
            counts = torch.bincount(cls, minlength=n_cls).double()
        lam = sample_beta(self.alpha, batch_size, g)
        u = _rand(g, batch_size)
        perm = torch.arange(batch_size)
        lam_x = torch.ones(batch_size, dtype=torch.float64)
        lam_y = torch.ones(batch_size, dtype=torch.float64)
        cnt = counts[cls] if batch_size else counts[:0]
        for i in range(batch_size):
            cand = torch.nonzero(cnt > cnt[i]).flatten()
            if cand.numel() == 0:
                continue
            j = int(cand[min(int(u[i] * cand.numel()), cand.numel() - 1)])
            perm[i] = j
            lam_x[i] = lam[i]
            ratio = float(cnt[j] / cnt[i]) if cnt[i] > 0 else float("inf")
            lam_y[i] = 1.0 if (ratio >= self.kappa and 1.0 - float(lam[i]) < self.tau) else float(lam[i])
        return MixParams(lam=lam_x, perm=perm, label_lam=lam_y)


# --------------------------------------------------------------------------- object cutmix

OBJECT_CUTMIX_PARAMS: dict[str, Param] = {
    "p": Param(0.5, "float", low=0.0, high=1.0, doc="probability that a sample receives a pasted object"),
    "margin": Param(0.1, "float", low=0.0, high=1.0, doc="box margin around the object, fraction of its size"),
    "max_area": Param(1.0, "float", low=0.0, low_open=True, high=1.0,
                      doc="largest box, fraction of the image (a larger object is partly pasted)"),
}


class ObjectCutMix(_Mixer):
    """CutMix whose box is a positive's object (mask bounding box plus margin).

    With probability ``p`` each sample ``i`` receives the box around the
    object of a random other sample ``j`` with a non-empty mask, pasted at a
    uniformly random position wholly inside the frame, so the object is never
    cut away (unless its box exceeds ``max_area`` of the image; then a random
    ``max_area`` window of it is pasted).

    Labels: ``f_j`` = fraction of ``j``'s mask pixels pasted (1.0 when the
    whole box fits), ``r_i`` = fraction of ``i``'s own mask left uncovered
    (``i`` without a mask: its uncovered area fraction).

    - binary (presence of the object): ``max(f_j * y_j, r_i * y_i)``;
    - ``C`` classes: ``(f_j y_j + r_i y_i) / (f_j + r_i)`` (rows sum to 1).

    Needs ``masks`` ``(N, H, W)``; a batch whose masks are all empty is
    returned unchanged.
    """

    name = "object-cutmix"

    def __init__(
        self, p: float = 0.5, margin: float = 0.1, max_area: float = 1.0, *,
        num_classes: int | None = None, seed: int = 0,
    ) -> None:
        super().__init__(num_classes, seed)
        v = _validate(self.name, OBJECT_CUTMIX_PARAMS, {"p": p, "margin": margin, "max_area": max_area})
        self.p, self.margin, self.max_area = v["p"], v["margin"], v["max_area"]

    def __repr__(self) -> str:
        return (
            f"ObjectCutMix(p={self.p:g}, margin={self.margin:g}, max_area={self.max_area:g}, "
            f"num_classes={self.num_classes})"
        )

    def _need_masks(self, masks: Tensor | None) -> None:
        if masks is None:
            raise ConfigError(
                "object-cutmix needs object masks: call it with masks=<(N, H, W) bool tensor>; "
                "without masks use 'cutmix'"
            )

    def _draw_kwargs(self, x: Tensor, y: Tensor, masks: Tensor | None) -> dict[str, Any]:
        self._need_masks(masks)
        return {"masks": _check_masks(masks, x, self.name)}

    def draw(
        self, batch_size: int, height: int, width: int, generator: torch.Generator, *,
        masks: Tensor | None = None, **kw: Any,
    ) -> ObjectCutMixParams:
        """Which samples receive an object, from whom, which box and where."""
        g = _check_generator(generator)
        self._need_masks(masks)
        assert masks is not None
        m = masks.detach().cpu().bool()
        n, H, W = batch_size, height, width
        has = m.flatten(1).any(dim=1) if n else torch.zeros(0, dtype=torch.bool)
        sources = torch.nonzero(has).flatten()
        coin, pick, a, b, c, d = (_rand(g, n) for _ in range(6))
        active = torch.zeros(n, dtype=torch.bool)
        src = torch.arange(n)
        src_box = torch.zeros(n, 4, dtype=torch.long)
        dst = torch.zeros(n, 2, dtype=torch.long)
        for i in range(n):
            cand = sources[sources != i] if sources.numel() > 1 else sources
            if cand.numel() == 0 or not bool(coin[i] < self.p):
                continue
            j = int(cand[min(int(pick[i] * cand.numel()), cand.numel() - 1)])
            rows = torch.nonzero(m[j].any(dim=1)).flatten()
            cols = torch.nonzero(m[j].any(dim=0)).flatten()
            y0, y1 = int(rows[0]), int(rows[-1]) + 1
            x0, x1 = int(cols[0]), int(cols[-1]) + 1
            my = max(1, round(self.margin * (y1 - y0)))
            mx = max(1, round(self.margin * (x1 - x0)))
            y0, y1 = max(0, y0 - my), min(H, y1 + my)
            x0, x1 = max(0, x0 - mx), min(W, x1 + mx)
            bh, bw = y1 - y0, x1 - x0
            if bh * bw > self.max_area * H * W:  # too big: a random window of it
                f = float(np.sqrt(self.max_area * H * W / (bh * bw)))
                nh, nw = max(1, int(bh * f)), max(1, int(bw * f))
                y0 += min(int(float(a[i]) * (bh - nh + 1)), bh - nh)
                x0 += min(int(float(b[i]) * (bw - nw + 1)), bw - nw)
                bh, bw = nh, nw
                y1, x1 = y0 + bh, x0 + bw
            active[i] = True
            src[i] = j
            src_box[i] = torch.tensor([y0, x0, y1, x1])
            dst[i, 0] = min(int(float(c[i]) * (H - bh + 1)), H - bh)
            dst[i, 1] = min(int(float(d[i]) * (W - bw + 1)), W - bw)
        return ObjectCutMixParams(active=active, src=src, src_box=src_box, dst=dst)

    def apply(
        self, x: Tensor, y: Tensor, params: ObjectCutMixParams, masks: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Paste the drawn boxes and compute the object-fraction labels."""
        x = _check_batch(x)
        self._need_masks(masks)
        n, _, H, W = x.shape
        m = _check_masks(masks, x, self.name)
        soft = self.soft_labels(y, n)
        out = x.clone()
        out_y = soft.clone()
        for i in torch.nonzero(params.active).flatten().tolist():
            j = int(params.src[i])
            y0, x0, y1, x1 = (int(v) for v in params.src_box[i])
            ty, tx = int(params.dst[i, 0]), int(params.dst[i, 1])
            bh, bw = y1 - y0, x1 - x0
            out[i, :, ty:ty + bh, tx:tx + bw] = x[j, :, y0:y1, x0:x1]
            mj = m[j]
            f_j = float(mj[y0:y1, x0:x1].sum()) / max(1.0, float(mj.sum()))
            mi = m[i]
            covered = torch.zeros(H, W, dtype=torch.bool, device=m.device)
            covered[ty:ty + bh, tx:tx + bw] = True
            if bool(mi.any()):
                r_i = float((mi & ~covered).sum()) / float(mi.sum())
            else:
                r_i = 1.0 - (bh * bw) / (H * W)
            if soft.ndim == 1:
                out_y[i] = max(f_j * float(soft[j]), r_i * float(soft[i]))
            else:
                tot = f_j + r_i
                out_y[i] = soft[i] if tot == 0 else (f_j * soft[j] + r_i * soft[i]) / tot
        return out, out_y


# --------------------------------------------------------------------------- registration


def _ncls(ctx: StrategyContext) -> int | None:
    return None if ctx.num_classes <= 2 else ctx.num_classes


def _build_mixup(ctx: StrategyContext, **params: Any) -> MixUp:
    return MixUp(**params, num_classes=_ncls(ctx), seed=ctx.seed)


def _build_cutmix(ctx: StrategyContext, **params: Any) -> CutMix:
    return CutMix(**params, num_classes=_ncls(ctx), seed=ctx.seed)


def _build_minority(ctx: StrategyContext, **params: Any) -> MinorityMixUp:
    return MinorityMixUp(**params, class_counts=ctx.class_counts, num_classes=_ncls(ctx), seed=ctx.seed)


def _build_object(ctx: StrategyContext, **params: Any) -> ObjectCutMix:
    return ObjectCutMix(**params, num_classes=_ncls(ctx), seed=ctx.seed)


register_strategy(StrategyRecord(
    name="mixup",
    family="mixing",
    description="blend random pairs of images and their labels with lam ~ Beta(alpha, alpha)",
    reference="Zhang et al., mixup, ICLR 2018; seed 'Mixup' (option 4)",
    params=MIXUP_PARAMS,
    build=_build_mixup,
))

register_strategy(StrategyRecord(
    name="cutmix",
    family="mixing",
    description="paste a random box from a partner image; label mixed by the pasted area",
    reference="Yun et al., CutMix, ICCV 2019; seed 'CutMix' (option 4)",
    params=CUTMIX_PARAMS,
    build=_build_cutmix,
))

# corrects_prior True: the Remix rule gives mostly-minority mixes a full
# minority label on purpose, shifting the decision boundary toward the
# majority, i.e. it re-weights toward the minority like class weights do.
register_strategy(StrategyRecord(
    name="minority-mixup",
    family="mixing",
    description="mix each minority image with a majority partner; Remix rule gives the label to the minority",
    reference="Chou et al., Remix: Rebalanced Mixup, ECCV Workshops 2020",
    params=MINORITY_MIXUP_PARAMS,
    build=_build_minority,
    corrects_prior=lambda p: True,
))

register_strategy(StrategyRecord(
    name="object-cutmix",
    family="mixing",
    description="paste a positive's object box (from its mask) into other images; label = object fraction pasted",
    reference="Yun et al., CutMix, ICCV 2019, with mask boxes as in Ghiasi et al., Copy-Paste, CVPR 2021",
    params=OBJECT_CUTMIX_PARAMS,
    build=_build_object,
))
