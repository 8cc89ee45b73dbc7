"""Imbalance-aware losses: ``ce``, ``weighted-ce``, ``focal``, ``class-balanced``, ``logit-adjusted``.

Each loss is a pure function plus a thin :class:`torch.nn.Module` that calls
it (as :mod:`torchvision.ops` does); class weights, focal alphas and log-priors
live in ``register_buffer`` so they follow ``.to(device)``.

Conventions shared by every loss
--------------------------------
* **Binary** (the main case): the model emits one logit per sample, shape
  ``(N,)`` or ``(N, 1)``; targets have shape ``(N,)`` and are hard ``{0, 1}``
  (any int, bool or float dtype) or soft probabilities in ``[0, 1]`` (mixup).
* **Multi-class**: logits ``(N, C)`` with ``C >= 2``; targets are class
  indices ``(N,)`` or soft distributions ``(N, C)``.
* Every loss is written per class term, ``-sum_c w_c * y_c * m_c * log p_c``
  (``w`` class weight, ``m`` focal modulation, ``m = 1`` for CE), so it is
  *linear in the target*: the loss of a mixup target ``lam*y1 + (1-lam)*y2``
  equals ``lam*L(y1) + (1-lam)*L(y2)``. Hard targets give the textbook losses.
* ``reduction="mean"`` is the plain mean over the ``N`` samples. PyTorch's
  weighted ``cross_entropy`` instead divides by the sum of the batch's target
  weights, which silently undoes class weighting inside a batch of one class;
  we keep the weighted *risk* (weights are normalised so their mean over the
  training samples is 1 where that matters, see :func:`class_weight_vector`).
* Log-probabilities come from ``logsigmoid``/``log_softmax`` only, so values
  and gradients stay finite for logits of +-100 (and far beyond).
* Target ranges are checked on CPU tensors; on an accelerator the check is
  skipped, as a host sync every step would cost more than it protects.

Why one file: the five losses share one set of conventions (above) implemented
once below (input normalisation, linear-in-target soft labels, stable
log-probabilities, the shared :class:`~imbvision.strategies.params.Param`
ranges); each loss is a short pure function plus a thin module, with its
record and declared prior shift beside it. A new loss may live in its own
module that registers a record (imported by ``imbvision.strategies``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from numbers import Real
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .registry import Param, StrategyContext, StrategyRecord, TrainingPrior, register_strategy, weight_shift

__all__ = [
    "REDUCTIONS",
    "WEIGHT_MODES",
    "ALPHA_MODES",
    "class_weight_vector",
    "class_balanced_weights",
    "balanced_alpha",
    "ce_loss",
    "weighted_ce_loss",
    "focal_loss",
    "focal_loss_multiclass",
    "logit_adjusted_loss",
    "CrossEntropy",
    "WeightedCrossEntropy",
    "FocalLoss",
    "ClassBalancedLoss",
    "LogitAdjustedLoss",
]

REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")
WEIGHT_MODES: tuple[str, ...] = ("balanced", "sqrt")
ALPHA_MODES: tuple[str, ...] = ("scalar", "balanced")
_LN2 = math.log(2.0)

WeightLike = Tensor | Sequence[float] | np.ndarray


# --------------------------------------------------------------------------- #
# validation helpers
# --------------------------------------------------------------------------- #
def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction={reduction!r} is invalid; valid: {', '.join(REDUCTIONS)}")
    return reduction


def _check_number(
    owner: str, name: str, value: Any, low: float, high: float = math.inf, high_open: bool = False
) -> float:
    """Return ``value`` as float or raise ConfigError quoting it and the valid range (via :class:`Param`)."""
    return Param(None, low=low, high=None if math.isinf(high) else high, high_open=high_open).check(owner, name, value)


#: The records' parameters, shared with the public constructors, so both check the same range (one table).
GAMMA = Param(2.0, kind="float", low=0.0, doc="focusing parameter; 0 = no focusing")
BETA = Param(0.999, kind="float", low=0.0, high=1.0, high_open=True,
             doc="in [0, 1): 0 = uniform, -> 1 = inverse frequency")
TAU = Param(1.0, kind="float", low=0.0, doc="temperature; 0 = plain CE")
FOCAL_ALPHA = Param(0.25, kind="float|none", low=0.0, high=1.0,
                    doc="binary: weight of positives (negatives get 1-alpha); none disables; ignored when "
                        "alpha_mode=balanced")
ALPHA_MODE = Param("scalar", kind="str", choices=ALPHA_MODES,
                   doc="scalar: use alpha (binary only); balanced: per-class alpha ∝ 1/n_c summing to 1")
CB_BASE = Param("ce", kind="str", choices=("ce", "focal"), doc="loss the weights apply to")


def _counts_array(class_counts: Sequence[int] | np.ndarray) -> np.ndarray:
    counts = np.asarray(class_counts, dtype=float).reshape(-1)
    if counts.size < 2 or not np.all(np.isfinite(counts)) or np.any(counts < 0) or counts.sum() <= 0:
        raise ConfigError(
            f"class_counts={list(np.asarray(class_counts).reshape(-1))!r} is invalid; "
            "valid: at least two non-negative counts with a positive total"
        )
    # A class absent from training gets the weight of a class seen once: its
    # weight never multiplies a training term, it only must stay finite.
    return np.maximum(counts, 1.0)


def _weight_tensor(owner: str, name: str, weight: WeightLike | None) -> Tensor | None:
    """Validate a per-class weight vector (non-negative, finite, 1-D)."""
    if weight is None:
        return None
    w = torch.as_tensor(
        weight.detach().cpu().numpy() if isinstance(weight, Tensor) else np.asarray(weight, dtype=float)
    ).to(torch.float32)
    if w.ndim != 1 or w.numel() < 2 or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        shown = w.tolist() if w.numel() <= 16 else f"tensor of shape {tuple(w.shape)}"
        raise ConfigError(
            f"{owner}: {name}={shown!r} is invalid; valid: a 1-D vector of >= 2 finite non-negative "
            "per-class weights"
        )
    return w


# --------------------------------------------------------------------------- #
# class-weight helpers (shared with heads)
# --------------------------------------------------------------------------- #
def class_weight_vector(
    name_or_value: str | float | Sequence[float] | None, class_counts: Sequence[int] | np.ndarray
) -> np.ndarray:
    """Per-class weights ``w[c]`` from a mode name or explicit values.

    Parameters
    ----------
    name_or_value
        ``"balanced"``: ``w_c = n / (k * n_c)`` (sklearn's ``class_weight="balanced"``);
        ``"sqrt"``: ``w_c ∝ 1/sqrt(n_c)`` scaled so the mean weight over the
        training samples is 1; a positive number: binary ``pos_weight``
        (``w = [1, value]``); a sequence of ``k`` positive numbers: used as is;
        ``None`` or ``"none"``: all ones.
    class_counts
        Training samples per class (binary: ``[neg, pos]``).

    Returns
    -------
    np.ndarray
        Float64 vector of length ``k``.
    """
    counts = _counts_array(class_counts)
    k, n = counts.size, counts.sum()
    valid = f"one of {', '.join(WEIGHT_MODES)}, a positive number (binary pos_weight) or {k} positive numbers"
    if name_or_value is None or (isinstance(name_or_value, str) and name_or_value.lower() == "none"):
        return np.ones(k)
    if isinstance(name_or_value, str):
        if name_or_value == "balanced":
            return n / (k * counts)
        if name_or_value == "sqrt":
            raw = 1.0 / np.sqrt(counts)
            # mean over samples of w[y_i] is sum_c n_c w_c / n; make it 1.
            return raw * n / float(np.sum(counts * raw))
        try:
            name_or_value = float(name_or_value)
        except ValueError:
            raise ConfigError(f"weights={name_or_value!r} is invalid; valid: {valid}") from None
    if isinstance(name_or_value, Real) or (isinstance(name_or_value, np.ndarray) and name_or_value.ndim == 0):
        v = float(name_or_value)
        if not (math.isfinite(v) and v > 0):
            raise ConfigError(f"weights={name_or_value!r} is invalid; valid: {valid}")
        if k != 2:
            raise ConfigError(
                f"weights={v:g} is a binary pos_weight but there are {k} classes; valid: "
                f"one of {', '.join(WEIGHT_MODES)} or {k} positive numbers"
            )
        return np.array([1.0, v])
    arr = np.asarray(name_or_value, dtype=float).reshape(-1)
    if arr.size != k or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ConfigError(f"weights={list(arr)!r} is invalid; valid: {valid}")
    return arr


def class_balanced_weights(class_counts: Sequence[int] | np.ndarray, beta: float = 0.999) -> np.ndarray:
    """Cui et al. (2019) weights from the effective number of samples.

    ``w_c = (1 - beta) / (1 - beta**n_c)``, normalised so ``sum_c w_c = k``.
    ``beta = 0`` gives uniform weights; ``beta -> 1`` tends to ``∝ 1/n_c``.

    Parameters
    ----------
    class_counts
        Training samples per class.
    beta
        Float in ``[0, 1)``.
    """
    beta = BETA.check("class-balanced", "beta", beta)
    counts = _counts_array(class_counts)
    if beta == 0.0:
        eff = np.ones_like(counts)
    else:
        # 1 - beta**n computed as -expm1(n log beta): exact for beta close to 1.
        eff = -np.expm1(counts * math.log(beta)) / (1.0 - beta)
    w = 1.0 / eff
    return w * counts.size / w.sum()


def balanced_alpha(class_counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Per-class focal alpha ``α_c ∝ 1/n_c`` normalised to sum 1.

    Binary: ``α_pos = n_neg / n``, i.e. the RetinaNet ``alpha`` that balances
    the two classes.
    """
    counts = _counts_array(class_counts)
    inv = 1.0 / counts
    return inv / inv.sum()


# --------------------------------------------------------------------------- #
# input normalisation
# --------------------------------------------------------------------------- #
def _is_binary(logits: Tensor) -> bool:
    return logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1)


def _check_soft(t: Tensor, what: str) -> None:
    # Checked on CPU only: on an accelerator the check would force a host
    # sync every step (torch's own losses skip it there as well).
    if t.device.type == "cpu" and t.numel() and bool(((t < 0) | (t > 1) | torch.isnan(t)).any()):
        lo, hi = float(t.min()), float(t.max())
        raise ValueError(f"{what} must lie in [0, 1]; got values in [{lo:g}, {hi:g}]")


def _binary_inputs(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    x = logits.reshape(-1) if logits.ndim == 2 else logits
    t = torch.as_tensor(target, device=x.device)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t.reshape(-1)
    if t.shape != x.shape:
        raise ValueError(
            f"binary loss: target shape {tuple(t.shape)} does not match logits shape {tuple(logits.shape)}; "
            "valid: target (N,) of 0/1 labels or probabilities"
        )
    t = t.to(x.dtype)
    _check_soft(t, "binary targets")
    return x, t


def _multiclass_inputs(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N,), (N, 1) or (N, C); got {tuple(logits.shape)}")
    n, c = logits.shape
    t = torch.as_tensor(target, device=logits.device)
    if t.ndim == 2 and t.shape == (n, c):
        t = t.to(logits.dtype)
        _check_soft(t, "soft multi-class targets")
        return logits, t
    if t.ndim == 1 and t.shape[0] == n:
        on_cpu = t.device.type == "cpu"
        if t.is_floating_point() and on_cpu:
            if bool((t != t.round()).any()):
                raise ValueError("multi-class soft targets must have shape (N, C); got non-integer (N,) targets")
        idx = t.long()
        if on_cpu and idx.numel() and bool(((idx < 0) | (idx >= c)).any()):
            raise ValueError(
                f"class index out of range: targets span [{int(idx.min())}, {int(idx.max())}], "
                f"valid: [0, {c - 1}] for {c} classes"
            )
        return logits, F.one_hot(idx, c).to(logits.dtype)
    raise ValueError(
        f"target shape {tuple(t.shape)} does not fit logits {tuple(logits.shape)}; "
        "valid: (N,) class indices or (N, C) probabilities"
    )


def _class_vector(w: Tensor | None, k: int, ref: Tensor, name: str) -> Tensor | None:
    if w is None:
        return None
    w = torch.as_tensor(w)
    if w.ndim != 1 or w.numel() != k:
        raise ConfigError(f"{name} has {w.numel()} entries but the logits describe {k} classes; valid: {k} entries")
    return w.to(device=ref.device, dtype=ref.dtype)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ConfigError(f"reduction={reduction!r} is invalid; valid: {', '.join(REDUCTIONS)}")


def _log1mexp(a: Tensor) -> Tensor:
    """``log(1 - exp(a))`` for ``a <= 0``, accurate at both ends (Mächler 2012).

    Both branches get a safe input so the unused one cannot poison the
    gradient with ``0 * inf``. ``a`` is capped just below 0: where a softmax
    probability rounds to exactly 1 the focal factor is ~0 anyway.
    """
    a = a.clamp(max=-torch.finfo(a.dtype).tiny)
    near = a > -_LN2
    a_near = torch.where(near, a, torch.full_like(a, -_LN2))
    a_far = torch.where(near, torch.full_like(a, -_LN2), a)
    return torch.where(near, torch.log(-torch.expm1(a_near)), torch.log1p(-torch.exp(a_far)))


# --------------------------------------------------------------------------- #
# the per-class-term kernels
# --------------------------------------------------------------------------- #
def _binary_terms(x: Tensor, t: Tensor, w: Tensor | None, gamma: float) -> Tensor:
    log_p = F.logsigmoid(x)  # log P(y=1)
    log_q = F.logsigmoid(-x)  # log P(y=0)
    pos = t * log_p
    neg = (1.0 - t) * log_q
    if gamma != 0.0:
        # (1-p)^γ = exp(γ log(1-p)): finite gradient even where p hits 0 or 1,
        # unlike pow(1 - sigmoid(x), γ) for γ < 1.
        pos = pos * torch.exp(gamma * log_q)
        neg = neg * torch.exp(gamma * log_p)
    if w is not None:
        pos = pos * w[1]
        neg = neg * w[0]
    return -(pos + neg)


def _multiclass_terms(x: Tensor, t: Tensor, w: Tensor | None, gamma: float) -> Tensor:
    logp = F.log_softmax(x, dim=1)
    # where(): a -inf logit with zero target must contribute 0, not 0 * -inf.
    term = torch.where(t > 0, t * logp, torch.zeros_like(logp))
    if gamma != 0.0:
        term = term * torch.exp(gamma * _log1mexp(logp))
    if w is not None:
        term = term * w
    return -term.sum(dim=1)


# --------------------------------------------------------------------------- #
# pure functions
# --------------------------------------------------------------------------- #
def ce_loss(logits: Tensor, target: Tensor, weight: WeightLike | None = None, reduction: str = "mean") -> Tensor:
    """Cross-entropy for one logit (sigmoid/BCE) or ``C`` logits (softmax).

    Parameters
    ----------
    logits
        ``(N,)``/``(N, 1)`` binary or ``(N, C)`` multi-class raw scores.
    target
        Hard labels ``(N,)`` or soft targets (``(N,)`` in [0, 1] for binary,
        ``(N, C)`` for multi-class).
    weight
        Optional per-class weights ``(C,)`` (``(2,)`` = ``[neg, pos]`` for binary).
    reduction
        ``"mean"`` (plain mean over samples), ``"sum"`` or ``"none"``.
    """
    if _is_binary(logits):
        x, t = _binary_inputs(logits, target)
        w = _class_vector(None if weight is None else torch.as_tensor(weight), 2, x, "weight")
        return _reduce(_binary_terms(x, t, w, 0.0), reduction)
    x, t = _multiclass_inputs(logits, target)
    w = _class_vector(None if weight is None else torch.as_tensor(weight), x.shape[1], x, "weight")
    return _reduce(_multiclass_terms(x, t, w, 0.0), reduction)


def weighted_ce_loss(
    logits: Tensor, target: Tensor, weight: WeightLike | float, reduction: str = "mean"
) -> Tensor:
    """Class-weighted cross-entropy.

    ``weight`` is a per-class vector, or a single positive number meaning the
    binary ``pos_weight`` (weights ``[1, pos_weight]``, as
    ``BCEWithLogitsLoss(pos_weight=...)``).
    """
    if isinstance(weight, Real):
        weight = [1.0, float(weight)]
    return ce_loss(logits, target, weight=weight, reduction=reduction)


def _check_gamma(gamma: Any) -> float:
    return GAMMA.check("focal", "gamma", gamma)


def focal_loss_multiclass(
    logits: Tensor,
    target: Tensor,
    alpha: WeightLike | None = None,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> Tensor:
    """Softmax focal loss with a per-class alpha vector.

    ``FL = -sum_c α_c y_c (1 - p_c)^γ log p_c``. Torch has no focal loss, and
    the usual snippet (``alpha * (1-pt)**gamma * CE`` with one scalar alpha)
    only rescales the whole loss in the multi-class case; the class balance
    needs one ``α_c`` per class.

    Parameters
    ----------
    logits
        ``(N, C)``.
    target
        ``(N,)`` class indices or ``(N, C)`` soft targets.
    alpha
        ``(C,)`` non-negative per-class weights, or None for no weighting.
        A scalar is refused: it would not change the class balance.
    gamma
        Focusing parameter ``>= 0``; 0 with ``alpha=None`` is cross-entropy.
    """
    gamma = _check_gamma(gamma)
    if alpha is not None and (isinstance(alpha, Real) or (isinstance(alpha, Tensor) and alpha.ndim == 0)):
        raise ConfigError(
            f"focal: a scalar alpha={float(alpha):g} only rescales a multi-class loss and does not "
            "weight the classes; valid: a per-class vector of length C (e.g. balanced_alpha(counts)) or None"
        )
    if _is_binary(logits) and logits.ndim == 2:
        raise ValueError("focal_loss_multiclass needs (N, C) logits with C >= 2; use focal_loss for one logit")
    x, t = _multiclass_inputs(logits, target)
    w = _class_vector(None if alpha is None else torch.as_tensor(alpha), x.shape[1], x, "alpha")
    if w is not None and bool((w < 0).any()):
        raise ConfigError(f"focal: alpha={w.tolist()!r} is invalid; valid: non-negative per-class weights")
    return _reduce(_multiclass_terms(x, t, w, gamma), reduction)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    alpha: float | WeightLike | None = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> Tensor:
    """Focal loss (Lin et al. 2017), sigmoid form for one logit, softmax form for ``C``.

    Binary: ``FL = -[α y (1-p)^γ log p + (1-α)(1-y) p^γ log(1-p)]``. For hard
    targets this is :func:`torchvision.ops.sigmoid_focal_loss`; for soft
    targets torchvision's form is not linear in the target, ours is, so a
    mixup target gets the mixed loss.

    Parameters
    ----------
    logits
        ``(N,)``/``(N, 1)`` (sigmoid) or ``(N, C)`` (softmax).
    target
        Hard or soft targets, see the module docstring.
    alpha
        Binary: a float in [0, 1] weighting positives (negatives get ``1-α``),
        or a ``(2,)`` vector ``[α_neg, α_pos]``. Multi-class: a ``(C,)``
        vector (a float is accepted only for ``C == 2``). None disables.
    gamma
        Focusing parameter ``>= 0``.
    """
    gamma = _check_gamma(gamma)
    scalar = alpha is not None and (
        isinstance(alpha, Real) or (isinstance(alpha, Tensor) and alpha.ndim == 0)
    )
    if scalar:
        a = FOCAL_ALPHA.check("focal", "alpha", float(alpha))  # type: ignore[arg-type]
        if not _is_binary(logits) and logits.ndim == 2 and logits.shape[1] > 2:
            return focal_loss_multiclass(logits, target, float(a), gamma, reduction)  # raises
        alpha = torch.tensor([1.0 - a, a])
    if _is_binary(logits):
        x, t = _binary_inputs(logits, target)
        w = _class_vector(None if alpha is None else torch.as_tensor(alpha), 2, x, "alpha")
        return _reduce(_binary_terms(x, t, w, gamma), reduction)
    return focal_loss_multiclass(logits, target, alpha, gamma, reduction)  # type: ignore[arg-type]


def logit_adjusted_loss(
    logits: Tensor,
    target: Tensor,
    prior: WeightLike,
    tau: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """Logit-adjusted cross-entropy (Menon et al. 2021).

    Trains on ``logits + τ log π``; predicting with the raw logits then
    approximates the class-balanced posterior. With one binary logit the
    shift is ``τ log(π_1 / π_0)``.

    Parameters
    ----------
    prior
        Class prior ``(C,)`` (``(2,)`` for binary), positive; normalised here.
    tau
        Temperature ``>= 0``; 0 gives plain cross-entropy.
    """
    tau = TAU.check("logit-adjusted", "tau", tau)
    pi = torch.as_tensor(prior, dtype=torch.float64).reshape(-1)
    if pi.numel() < 2 or not bool(torch.isfinite(pi).all()) or bool((pi <= 0).any()):
        raise ConfigError(f"logit-adjusted: prior={pi.tolist()!r} is invalid; valid: >= 2 positive numbers")
    return ce_loss(logits + _la_shift(torch.log(pi / pi.sum()), tau, logits), target, reduction=reduction)


def _la_shift(log_pi: Tensor, tau: float, logits: Tensor) -> Tensor:
    """``τ log π`` shaped for ``logits``; one binary logit gets ``τ log(π1/π0)``."""
    if _is_binary(logits):
        if log_pi.numel() != 2:
            raise ConfigError(f"prior has {log_pi.numel()} entries but a single logit means 2 classes; valid: 2")
        return (tau * (log_pi[1] - log_pi[0])).to(device=logits.device, dtype=logits.dtype)
    shift = _class_vector(tau * log_pi, logits.shape[-1], logits, "prior")
    assert shift is not None
    return shift


# --------------------------------------------------------------------------- #
# modules
# --------------------------------------------------------------------------- #
class _Loss(nn.Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)


class CrossEntropy(_Loss):
    """Cross-entropy (BCE-with-logits for one logit); see :func:`ce_loss`."""

    weight: Tensor | None

    def __init__(self, weight: WeightLike | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.register_buffer("weight", _weight_tensor("ce", "weight", weight))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return ce_loss(logits, target, self.weight, self.reduction)

    def extra_repr(self) -> str:
        w = None if self.weight is None else [round(v, 4) for v in self.weight.tolist()]
        return f"weight={w}, reduction={self.reduction!r}"


class WeightedCrossEntropy(CrossEntropy):
    """Class-weighted cross-entropy; see :func:`weighted_ce_loss`.

    ``weight`` is a per-class vector or a float meaning the binary ``pos_weight``.
    Use :meth:`from_counts` for ``"balanced"``/``"sqrt"`` weights.
    """

    def __init__(self, weight: WeightLike | float, reduction: str = "mean") -> None:
        if isinstance(weight, Real):
            pw = _check_number("weighted-ce", "pos_weight", weight, 0.0)
            if pw <= 0:
                raise ConfigError(f"weighted-ce: pos_weight={weight!r} is invalid; valid: a positive number")
            weight = [1.0, pw]
        if weight is None:
            raise ConfigError("weighted-ce: weight=None is invalid; valid: per-class weights or a pos_weight")
        super().__init__(weight, reduction)

    @classmethod
    def from_counts(
        cls, class_counts: Sequence[int], weights: str | float | Sequence[float] = "balanced", reduction: str = "mean"
    ) -> "WeightedCrossEntropy":
        """Weights from :func:`class_weight_vector` (``"balanced"``, ``"sqrt"``, number, vector)."""
        return cls(class_weight_vector(weights, class_counts), reduction)


class FocalLoss(_Loss):
    """Focal loss; see :func:`focal_loss`.

    Examples
    --------
    >>> FocalLoss(alpha=0.25, gamma=2.0)                       # binary, one logit
    >>> FocalLoss(alpha=torch.tensor([0.2, 0.3, 0.5]), gamma=2)  # 3 classes
    >>> FocalLoss.balanced([900, 100])                          # α ∝ 1/n_c
    """

    alpha: Tensor | None

    def __init__(
        self, alpha: float | WeightLike | None = 0.25, gamma: float = 2.0, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        self.gamma = _check_gamma(gamma)
        self.scalar_alpha: float | None = None
        if alpha is not None and (isinstance(alpha, Real) or (isinstance(alpha, Tensor) and alpha.ndim == 0)):
            # A binary α is the class vector [1-α, α]; the scalar is kept to
            # refuse it for C > 2 classes, where it would only rescale the loss.
            self.scalar_alpha = FOCAL_ALPHA.check("focal", "alpha", float(alpha))
            buf = torch.tensor([1.0 - self.scalar_alpha, self.scalar_alpha])
        else:
            buf = _weight_tensor("focal", "alpha", alpha)
        self.register_buffer("alpha", buf)

    @classmethod
    def balanced(cls, class_counts: Sequence[int], gamma: float = 2.0, reduction: str = "mean") -> "FocalLoss":
        """Per-class ``α_c ∝ 1/n_c`` (sum 1), see :func:`balanced_alpha`."""
        return cls(torch.as_tensor(balanced_alpha(class_counts), dtype=torch.float32), gamma, reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.scalar_alpha is not None and not _is_binary(logits) and logits.shape[-1] > 2:
            return focal_loss_multiclass(logits, target, self.scalar_alpha, self.gamma, self.reduction)  # raises
        return focal_loss(logits, target, self.alpha, self.gamma, self.reduction)

    def extra_repr(self) -> str:
        if self.scalar_alpha is not None:
            a: Any = round(self.scalar_alpha, 4)
        else:
            a = None if self.alpha is None else [round(v, 4) for v in self.alpha.tolist()]
        return f"alpha={a}, gamma={self.gamma:g}, reduction={self.reduction!r}"


class ClassBalancedLoss(_Loss):
    """Class-balanced loss (Cui et al. 2019): effective-number weights on CE or focal.

    Parameters
    ----------
    class_counts
        Training samples per class.
    beta
        In ``[0, 1)``; see :func:`class_balanced_weights`.
    base
        ``"ce"`` or ``"focal"`` (the weights then act as per-class focal α).
    gamma
        Focal ``γ`` when ``base="focal"``.
    """

    weight: Tensor

    def __init__(
        self,
        class_counts: Sequence[int],
        beta: float = 0.999,
        base: str = "ce",
        gamma: float = 2.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.base = CB_BASE.check("class-balanced", "base", base)
        self.beta = BETA.check("class-balanced", "beta", beta)
        gamma = _check_gamma(gamma)  # checked whatever the base, as the record checks it
        self.gamma = gamma if self.base == "focal" else 0.0
        w = class_balanced_weights(class_counts, self.beta)
        self.register_buffer("weight", torch.as_tensor(w, dtype=torch.float32))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.base == "focal":
            return focal_loss(logits, target, self.weight, self.gamma, self.reduction)
        return ce_loss(logits, target, self.weight, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta:g}, base={self.base!r}, gamma={self.gamma:g}, "
            f"weight={[round(v, 4) for v in self.weight.tolist()]}, reduction={self.reduction!r}"
        )


class LogitAdjustedLoss(_Loss):
    """Logit-adjusted loss (Menon et al. 2021); see :func:`logit_adjusted_loss`.

    Parameters
    ----------
    prior
        Class prior (or counts; normalised), length ``C`` (2 for binary).
    tau
        Temperature ``>= 0``.
    """

    log_prior: Tensor

    def __init__(self, prior: WeightLike, tau: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.tau = TAU.check("logit-adjusted", "tau", tau)
        pi = np.asarray(prior.detach().cpu().numpy() if isinstance(prior, Tensor) else prior, dtype=float).reshape(-1)
        if pi.size < 2 or not np.all(np.isfinite(pi)) or np.any(pi <= 0):
            raise ConfigError(f"logit-adjusted: prior={list(pi)!r} is invalid; valid: >= 2 positive numbers")
        # float32: float64 buffers are unsupported on some accelerators (MPS).
        self.register_buffer("log_prior", torch.as_tensor(np.log(pi / pi.sum()), dtype=torch.float32))

    @classmethod
    def from_counts(cls, class_counts: Sequence[int], tau: float = 1.0, reduction: str = "mean") -> "LogitAdjustedLoss":
        """Prior from training counts (an absent class counts as one sample)."""
        return cls(_counts_array(class_counts), tau, reduction)

    @property
    def prior(self) -> Tensor:
        return self.log_prior.exp()

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return ce_loss(logits + _la_shift(self.log_prior, self.tau, logits), target, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, prior={[round(v, 4) for v in self.prior.tolist()]}, reduction={self.reduction!r}"


# --------------------------------------------------------------------------- #
# registry
# --------------------------------------------------------------------------- #
def _build_ce(ctx: StrategyContext) -> CrossEntropy:
    return CrossEntropy()


def _build_weighted(ctx: StrategyContext, weights: str | float | Sequence[float] = "balanced") -> WeightedCrossEntropy:
    return WeightedCrossEntropy.from_counts(ctx.class_counts, weights)


def _build_focal(
    ctx: StrategyContext, gamma: float = 2.0, alpha: float | None = 0.25, alpha_mode: str = "scalar"
) -> FocalLoss:
    if alpha_mode == "balanced":  # values come from the record's table (ALPHA_MODE): scalar or balanced
        return FocalLoss.balanced(ctx.class_counts, gamma)
    if alpha is not None and ctx.num_classes > 2:
        raise ConfigError(
            f"focal: alpha={alpha:g} is a binary weight but there are {ctx.num_classes} classes "
            "(one scalar only rescales a multi-class loss); valid: alpha_mode=balanced or alpha=none"
        )
    return FocalLoss(alpha, gamma)


def _build_cb(ctx: StrategyContext, beta: float = 0.999, base: str = "ce", gamma: float = 2.0) -> ClassBalancedLoss:
    return ClassBalancedLoss(ctx.class_counts, beta, base, gamma)


def _build_la(ctx: StrategyContext, tau: float = 1.0) -> LogitAdjustedLoss:
    return LogitAdjustedLoss.from_counts(ctx.class_counts, tau)


# --------------------------------------------------------------------------- #
# declared prior shifts (Saerens et al. 2002): class weights w move the prior
# the model learns to w1 π / (w1 π + w0 (1 - π))
# --------------------------------------------------------------------------- #
def _weighted_shift(p: Mapping[str, Any], prior: TrainingPrior) -> float | None:
    w = class_weight_vector(p.get("weights", "balanced"), prior.counts)
    return weight_shift(prior.pi, float(w[1]), float(w[0]))


def _focal_shift(p: Mapping[str, Any], prior: TrainingPrior) -> float | None:
    if float(p.get("gamma", 2.0)) > 0:
        return None  # the (1 - p_t)^γ term has no analytic prior; calibration is the remedy
    if p.get("alpha_mode") == "balanced":
        a = balanced_alpha(prior.counts)  # the α actually used (the scalar alpha is ignored)
        return weight_shift(prior.pi, float(a[1]), float(a[0]))
    alpha = p.get("alpha")
    if alpha is None:
        return prior.pi
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        return None  # one class has weight 0: no finite prior to correct from
    return weight_shift(prior.pi, alpha, 1.0 - alpha)


def _cb_shift(p: Mapping[str, Any], prior: TrainingPrior) -> float | None:
    if p.get("base") == "focal" and float(p.get("gamma", 2.0)) > 0:
        return None
    w = class_balanced_weights(prior.counts, float(p.get("beta", 0.999)))
    return weight_shift(prior.pi, float(w[1]), float(w[0]))


def _la_prior_shift(p: Mapping[str, Any], prior: TrainingPrior) -> float | None:
    # The loss adds τ·log(π_c) of the training counts to the logits, so the raw logit
    # learns log-odds(π) - τ·log(n1/n0): the odds are divided by (n1/n0)^τ.
    n0, n1 = max(prior.counts[0], 1), max(prior.counts[1], 1)
    tau = float(p.get("tau", 1.0))
    odds = (prior.pi / (1 - prior.pi)) * (n1 / n0) ** (-tau)
    return odds / (1 + odds)


def _focal_corrects(p: Mapping[str, Any]) -> bool:
    if p.get("alpha_mode") == "balanced":
        return True
    a = p.get("alpha")
    # Any α != 0.5 re-weights one class against the other (α < 0.5 leans to the
    # majority, as RetinaNet's 0.25 does; γ then pulls back toward the rare class).
    return a is not None and float(a) != 0.5


def _weighted_corrects(p: Mapping[str, Any]) -> bool:
    w = p.get("weights")
    return not (isinstance(w, Real) and float(w) == 1.0)


register_strategy(
    StrategyRecord(
        name="ce",
        family="loss",
        description="Plain cross-entropy (BCE-with-logits for one logit): the baseline.",
        reference="Cross-entropy, the maximum-likelihood baseline (torch.nn.functional.cross_entropy)",
        params={},
        build=_build_ce,
        corrects_prior=lambda p: False,
        weight_only=lambda p: True,
    )
)

register_strategy(
    StrategyRecord(
        name="weighted-ce",
        family="loss",
        description="Cross-entropy with per-class weights (balanced n/(k n_c), sqrt, or a binary pos_weight).",
        reference="Inverse-frequency class weights: King & Zeng 2001, Logistic Regression in Rare Events Data",
        params={
            "weights": Param(
                "balanced",
                kind="str",
                choices=WEIGHT_MODES,
                numeric_ok=True,
                low=0.0,
                low_open=True,
                doc="balanced: n/(k n_c); sqrt: ∝ 1/sqrt(n_c), mean sample weight 1; a number: binary pos_weight",
            )
        },
        build=_build_weighted,
        corrects_prior=_weighted_corrects,
        prior_shift=_weighted_shift,
        weight_only=lambda p: True,
    )
)

register_strategy(
    StrategyRecord(
        name="focal",
        family="loss",
        description="Focal loss: down-weights easy examples by (1-p_t)^gamma, with alpha class weights.",
        reference="Lin et al. 2017, Focal Loss for Dense Object Detection (ICCV), with per-class alpha",
        params={
            "gamma": GAMMA,
            "alpha": FOCAL_ALPHA,
            "alpha_mode": ALPHA_MODE,
        },
        build=_build_focal,
        corrects_prior=_focal_corrects,
        prior_shift=_focal_shift,
    )
)

register_strategy(
    StrategyRecord(
        name="class-balanced",
        family="loss",
        description="Effective-number class weights (1-beta)/(1-beta^n_c), summing to k, on CE or focal.",
        reference="Cui et al. 2019, Class-Balanced Loss Based on Effective Number of Samples",
        params={
            "beta": BETA,
            "base": CB_BASE,
            "gamma": replace(GAMMA, doc="focal gamma when base=focal"),
        },
        build=_build_cb,
        corrects_prior=lambda p: float(p.get("beta", 0.999)) > 0.0,
        prior_shift=_cb_shift,
        weight_only=lambda p: p.get("base", "ce") == "ce",
    )
)

register_strategy(
    StrategyRecord(
        name="logit-adjusted",
        family="loss",
        description="Train on logits + tau*log(prior); raw logits then score the balanced posterior.",
        reference="Menon et al. 2021, Long-tail learning via logit adjustment",
        params={"tau": TAU},
        build=_build_la,
        corrects_prior=lambda p: float(p.get("tau", 1.0)) > 0.0,
        prior_shift=_la_prior_shift,
    )
)
