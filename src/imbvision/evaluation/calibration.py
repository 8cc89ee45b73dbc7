"""Probability calibration: prior-shift correction, Platt / isotonic, reliability.

Rebalancing the training data (oversampling, undersampling, a balanced
sampler, class weights) teaches the model a positive rate that is not the
real one, so its probabilities are too high for the rare class. When only the
prior changed, Bayes' rule undoes it exactly on the odds (Saerens, Latinne &
Decaestecker, 2002)::

    odds' = odds * [pi_true / (1 - pi_true)] / [pi_train / (1 - pi_train)]

:func:`effective_train_prior` says what ``pi_train`` the model effectively saw.
A head fitted under re-weighting is not calibrated even after that correction
(on ``demo:800:0.08:3`` the mean test probability was 0.64× the prevalence for
``weighted-ce``), so the default calibration, ``intercept``, refits the one
intercept on validation ("calibration in the large", Cox 1958; Steyerberg,
*Clinical Prediction Models*, 2019, §15.2): a shift of every logit that makes the
mean validation probability equal the validation prevalence, which cannot move
AP or ROC-AUC. Beyond that, :func:`fit_calibrator` fits a Platt or isotonic map on
**validation** predictions; the fitted map is stored as plain numbers
(:meth:`Calibrator.to_dict`), never pickled.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import numpy as np
from scipy.special import expit
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

from .._choices import CALIBRATIONS
from ..errors import ConfigError, DataError
from .metrics import check_binary_scores

__all__ = [
    "prior_shift_correct",
    "effective_train_prior",
    "Calibrator",
    "fit_calibrator",
    "CALIBRATION_METHODS",
    "brier",
    "reliability_curve",
    "expected_calibration_error",
    "calibration_in_the_large",
]

CALIBRATION_METHODS = CALIBRATIONS  # declared once (imbvision._choices)
_EPS = 1e-7


def _check_probs(p: Any, what: str = "probabilities") -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{what} must be a 1-D array; got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{what} must be finite and in [0, 1]; {int(bad.sum())} are not "
            f"(first at index {i}: {arr[i]!r}). Pass probabilities, not logits"
        )
    return arr


def _check_prior(v: Any, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in (0, 1); got {v!r}") from None
    if not (0.0 < f < 1.0):
        raise ConfigError(f"{name} must be a positive rate strictly between 0 and 1; got {v!r}")
    return f


def prior_shift_correct(p: Any, train_prior: float, true_prior: float) -> np.ndarray:
    """Move probabilities learnt under ``train_prior`` to the ``true_prior``.

    Parameters
    ----------
    p
        Predicted positive probabilities of a model trained at ``train_prior``.
    train_prior
        Positive rate the model effectively saw (see :func:`effective_train_prior`).
    true_prior
        Positive rate where the model is used (e.g. the natural training rate).

    Returns
    -------
    numpy.ndarray
        ``p * r / (p * r + 1 - p)`` with ``r`` the ratio of prior odds; 0 and 1 stay put.
    """
    arr = _check_probs(p)
    a = _check_prior(train_prior, "train_prior")
    b = _check_prior(true_prior, "true_prior")
    r = (b / (1 - b)) / (a / (1 - a))
    num = arr * r
    return num / (num + (1.0 - arr))


def effective_train_prior(
    positive_rate: float,
    *,
    balanced_sampler: bool = False,
    sampling_ratio: float | None = None,
    class_weight: Mapping[int, float] | Literal["balanced"] | None = None,
) -> float:
    """Positive rate a model effectively trained at, for :func:`prior_shift_correct`.

    Parameters
    ----------
    positive_rate
        Fraction of positives in the training data as collected.
    balanced_sampler
        Batches drawn half positive, half negative: the prior becomes 0.5.
    sampling_ratio
        Resampling to ``n_pos / n_neg = sampling_ratio`` (imblearn's float
        ``sampling_strategy``): the prior becomes ``ratio / (1 + ratio)``.
    class_weight
        Loss weights ``{0: w0, 1: w1}`` applied after any resampling: the prior
        becomes ``w1 pi / (w1 pi + w0 (1 - pi))``; ``"balanced"`` (weights
        inversely proportional to class counts) gives 0.5.

    Examples
    --------
    >>> effective_train_prior(0.02, balanced_sampler=True)
    0.5
    >>> round(effective_train_prior(0.1, class_weight={0: 1.0, 1: 9.0}), 3)
    0.5
    """
    pi = _check_prior(positive_rate, "positive_rate")
    if balanced_sampler and sampling_ratio is not None:
        raise ConfigError("give balanced_sampler or sampling_ratio, not both")
    if balanced_sampler:
        pi = 0.5
    elif sampling_ratio is not None:
        r = float(sampling_ratio)
        if not (r > 0 and math.isfinite(r)):
            raise ConfigError(f"sampling_ratio (n_pos / n_neg) must be > 0; got {sampling_ratio!r}")
        pi = r / (1.0 + r)
    if class_weight is None:
        return pi
    if class_weight == "balanced":
        return 0.5
    if not isinstance(class_weight, Mapping) or set(class_weight) != {0, 1}:
        raise ConfigError(
            f"class_weight must be 'balanced' or a dict {{0: w0, 1: w1}}; got {class_weight!r}"
        )
    w0, w1 = float(class_weight[0]), float(class_weight[1])
    if not (w0 > 0 and w1 > 0):
        raise ConfigError(f"class weights must be > 0; got {class_weight!r}")
    return w1 * pi / (w1 * pi + w0 * (1.0 - pi))


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.log(q) - np.log1p(-q)


@dataclass(frozen=True)
class Calibrator:
    """A fitted probability map; JSON-serialisable, no pickle.

    ``method`` is ``"none"`` (identity), ``"intercept"`` (``params = {"b"}``,
    ``p' = sigmoid(logit(p) + b)``), ``"platt"`` (``params = {"a", "b"}``,
    ``p' = sigmoid(a * logit(p) + b)``) or ``"isotonic"`` (``params =
    {"x", "y"}``: the knots of scikit-learn's ``IsotonicRegression``, applied
    with linear interpolation and clipped at the ends).
    """

    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ConfigError(
                f"unknown calibration method {self.method!r}; valid: {', '.join(CALIBRATION_METHODS)}"
            )
        if self.method in ("platt", "intercept"):
            for k in ("a", "b") if self.method == "platt" else ("b",):
                v = self.params.get(k)
                if not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ConfigError(f"platt calibrator needs a finite number '{k}'; got {v!r}")
        if self.method == "isotonic":
            x, y = self.params.get("x"), self.params.get("y")
            try:
                xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
            except (TypeError, ValueError):
                raise ConfigError("isotonic calibrator 'x' and 'y' must be number lists") from None
            if xa.ndim != 1 or xa.shape != ya.shape or len(xa) < 1:
                raise ConfigError(
                    "isotonic calibrator needs equal-length, non-empty 'x' and 'y' lists; "
                    f"got {np.shape(x)} and {np.shape(y)}"
                )
            if not (np.isfinite(xa).all() and np.isfinite(ya).all()) or np.any(np.diff(xa) < 0):
                raise ConfigError("isotonic calibrator 'x' must be finite and non-decreasing")

    def transform(self, p: Any) -> np.ndarray:
        """Apply the map to probabilities ``p``."""
        arr = _check_probs(p)
        if self.method == "none":
            return arr.copy()
        if self.method == "platt":
            z = float(self.params["a"]) * _logit(arr) + float(self.params["b"])
            return expit(z)
        if self.method == "intercept":
            return expit(_logit(arr) + float(self.params["b"]))
        x = np.asarray(self.params["x"], dtype=np.float64)
        y = np.asarray(self.params["y"], dtype=np.float64)
        return np.interp(arr, x, y)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"method": ..., "params": {...}}`` of plain floats."""
        params: dict[str, Any] = {}
        for k, v in self.params.items():
            params[k] = [float(t) for t in v] if isinstance(v, (list, tuple, np.ndarray)) else float(v)
        return {"method": self.method, "params": params}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Calibrator":
        """Rebuild from :meth:`to_dict` output (validated)."""
        if not isinstance(d, Mapping) or "method" not in d:
            raise ConfigError(f"calibrator record must be a dict with 'method'; got {d!r}")
        params = d.get("params") or {}
        if not isinstance(params, Mapping):
            raise ConfigError(f"calibrator 'params' must be a dict; got {params!r}")
        return cls(str(d["method"]), dict(params))


def fit_calibrator(method: str, y_val: Any, p_val: Any) -> Calibrator:
    """Fit a calibration map on **validation** labels and probabilities.

    Parameters
    ----------
    method
        ``"none"``, ``"intercept"`` (one shift of the logit so the mean validation probability
        equals the validation prevalence: the maximum-likelihood intercept with ``logit(p)`` as
        offset; monotone, so rankings are unchanged; identity when validation holds no positive),
        ``"platt"`` (logistic regression on the logit, 2 parameters — the safe choice with few
        positives) or ``"isotonic"`` (non-parametric, needs hundreds of positives; it creates ties
        in the scores).

    Raises
    ------
    ConfigError
        ``platt`` or ``isotonic`` on validation labels without a positive (names the fix).
    """
    if method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"unknown calibration method {method!r}; valid: {', '.join(CALIBRATION_METHODS)}"
        )
    y, _ = check_binary_scores(y_val, p_val, what="validation probabilities", require_both=False)
    p = _check_probs(p_val, "validation probabilities")
    if method == "none":
        return Calibrator("none")
    if not 0 < int(y.sum()) < len(y):
        if method == "intercept":  # nothing to match: the probabilities stay as they are
            return Calibrator("none")
        raise ConfigError(f"--calibration {method} needs positives and negatives in the validation split; it holds "
                          f"{int(y.sum())} positives of {len(y)}: use --calibration none (or intercept)")
    if method == "intercept":
        return Calibrator("intercept", {"b": _intercept_shift(_logit(p), float(y.sum()))})
    if method == "platt":
        lr = LogisticRegression(C=np.inf, max_iter=1000)
        lr.fit(_logit(p)[:, None], y)
        a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        if a <= 0:
            warnings.warn(
                f"Platt calibration fitted a non-positive slope (a={a:.3g}): validation scores "
                "do not rank positives above negatives; the calibrated scores are unreliable",
                stacklevel=2,
            )
        return Calibrator("platt", {"a": a, "b": b})
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)
    iso.fit(p, y)
    return Calibrator(
        "isotonic",
        {"x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]},
    )


def _intercept_shift(z: np.ndarray, n_pos: float) -> float:
    """The ``b`` with ``sum(sigmoid(z + b)) = n_pos``: the score equation of a logistic intercept with offset ``z``.

    Written here because scikit-learn's logistic regression takes no offset; the sum is increasing in
    ``b``, so scipy's ``brentq`` finds the one root.
    """
    from scipy.optimize import brentq

    def gap(b: float) -> float:
        return float(expit(z + b).sum() - n_pos)

    lo, hi = -50.0, 50.0
    while gap(lo) > 0:
        lo *= 2
    while gap(hi) < 0:
        hi *= 2
    return float(brentq(gap, lo, hi, xtol=1e-12))


def calibration_in_the_large(y: Any, p: Any) -> dict[str, float | None]:
    """Mean predicted probability against the observed positive rate (Steyerberg 2019, §15.2).

    Returns
    -------
    dict
        ``mean_probability``, ``prevalence`` and ``ratio`` (their quotient; 1 is calibrated in the
        large, below 1 the probabilities are too low; ``None`` without a positive).
    """
    y_i, _ = check_binary_scores(y, p, require_both=False, what="probabilities")
    arr = _check_probs(p)
    prev = float(y_i.mean())
    mean = float(arr.mean())
    return {"mean_probability": mean, "prevalence": prev, "ratio": mean / prev if prev > 0 else None}


def brier(y: Any, p: Any) -> float:
    """Brier score: mean squared error of the probabilities (lower is better)."""
    y_i, _ = check_binary_scores(y, p, require_both=False, what="probabilities")
    return float(brier_score_loss(y_i, _check_probs(p), pos_label=1))


def _bin_ids(p: np.ndarray, n_bins: int, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    # the same binning as sklearn.calibration.calibration_curve
    if strategy == "quantile":
        edges = np.percentile(p, np.linspace(0, 100, n_bins + 1))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise ConfigError(f"strategy must be 'uniform' or 'quantile'; got {strategy!r}")
    return np.searchsorted(edges[1:-1], p), edges


def reliability_curve(
    y: Any, p: Any, n_bins: int = 10, *, strategy: str = "uniform"
) -> dict[str, list[float]]:
    """Observed positive rate against mean predicted probability per bin.

    Returns
    -------
    dict
        ``prob_true``, ``prob_pred`` (from ``sklearn.calibration_curve``) and
        ``count`` (samples per bin), empty bins omitted; ``bin_edges``.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ConfigError(f"n_bins must be a positive integer; got {n_bins!r}")
    y_i, _ = check_binary_scores(y, p, require_both=False, what="probabilities")
    arr = _check_probs(p)
    ids, edges = _bin_ids(arr, int(n_bins), strategy)
    counts = np.bincount(ids, minlength=int(n_bins))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on a single class; the curve is still defined
        prob_true, prob_pred = calibration_curve(
            y_i, arr, n_bins=int(n_bins), strategy=strategy, pos_label=1
        )
    return {
        "prob_true": [float(v) for v in prob_true],
        "prob_pred": [float(v) for v in prob_pred],
        "count": [int(c) for c in counts[counts > 0]],
        "bin_edges": [float(v) for v in edges],
    }


def expected_calibration_error(
    y: Any, p: Any, n_bins: int = 10, *, strategy: str = "uniform"
) -> float:
    """Count-weighted mean gap between observed rate and mean prediction per bin."""
    rc = reliability_curve(y, p, n_bins, strategy=strategy)
    c = np.asarray(rc["count"], dtype=np.float64)
    gap = np.abs(np.asarray(rc["prob_true"]) - np.asarray(rc["prob_pred"]))
    return float((c * gap).sum() / c.sum())
