"""Head mode: every strategy on cached embeddings; seconds on a CPU.

Order of operations on the training rows only: pixel-space synthesis/mixing
(embedded beforehand, passed in as extra rows) → feature-space resamplers →
loss and sampler built from the resulting class counts → head fit. Validation
scores then choose the prior correction, calibration and threshold; test
scores are only ever scored.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..evaluation import Calibrator, ThresholdChoice, fit_calibrator, prior_shift_correct, tune_threshold
from ..strategies.registry import Recipe, StrategyContext, make_spec

__all__ = ["HeadFit", "fit_head", "effective_prior", "Postprocess", "fit_postprocess"]


@dataclass
class HeadFit:
    """A fitted head and what it was trained on."""

    head: Any
    head_name: str
    head_params: dict[str, Any]
    loss_name: str
    train_rows: int
    train_positive_share: float
    effective_prior: float | None
    fit_seconds: float
    resampled_counts: tuple[int, int]
    notes: list[str] = field(default_factory=list)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.head.predict_proba(X), dtype=np.float64)


def _pos_weight_share(pi: float, w1: float, w0: float = 1.0) -> float:
    return w1 * pi / (w1 * pi + w0 * (1 - pi))


def effective_prior(recipe: Recipe, counts: tuple[int, int], soft_pos_share: float | None = None) -> float | None:
    """The positive rate the head effectively trains at, or ``None`` when no analytic form exists.

    ``counts`` are the (negative, positive) rows after synthesis and resampling.
    Sampler and loss weights act on top of those rows; logit adjustment with
    τ trains the head at prior odds (π/(1-π))^(1-τ). Focal loss's γ term has no
    analytic prior (its α part is treated as a weight); calibration on
    validation is the remedy there.
    """
    n0, n1 = counts
    pi = soft_pos_share if soft_pos_share is not None else n1 / max(1, n0 + n1)
    if recipe.sampler is not None:
        p = recipe.sampler.params
        if p.get("pos_fraction") is not None:
            pi = float(p["pos_fraction"])
        elif p.get("mode", "inverse") == "sqrt":
            pi = math.sqrt(n1) / (math.sqrt(n1) + math.sqrt(n0))
        else:
            pi = 0.5
    loss = recipe.loss
    p = loss.params
    if loss.name == "weighted-ce":
        w = p.get("weights", "balanced")
        if w == "balanced":
            pi = 0.5 if recipe.sampler is None else pi
        elif w == "sqrt":
            pi = _pos_weight_share(pi, 1 / math.sqrt(max(n1, 1)), 1 / math.sqrt(max(n0, 1)))
        else:
            pi = _pos_weight_share(pi, float(w))
    elif loss.name == "class-balanced":
        beta = float(p.get("beta", 0.999))
        w1 = (1 - beta) / (1 - beta ** max(n1, 1))
        w0 = (1 - beta) / (1 - beta ** max(n0, 1))
        pi = _pos_weight_share(pi, w1, w0)
    elif loss.name == "focal":
        a = p.get("alpha")
        if isinstance(a, (int, float)) and a is not None and 0 < a < 1:
            pi = _pos_weight_share(pi, float(a), 1 - float(a))
        if float(p.get("gamma", 0)) > 0:
            return None
    elif loss.name == "logit-adjusted":
        tau = float(p.get("tau", 1.0))
        odds = (pi / (1 - pi)) ** (1 - tau)
        pi = odds / (1 + odds)
    return float(min(max(pi, 1e-6), 1 - 1e-6))


def _choose_head(recipe: Recipe) -> Any:
    from ..strategies.registry import get_strategy

    head_spec = recipe.head
    explicit = any(s.record.family == "head" for s in recipe.specs)
    if head_spec.name == "logreg" and recipe.loss.name not in ("ce", "weighted-ce", "class-balanced"):
        if explicit:
            raise ConfigError(
                f"head logreg cannot minimise loss {recipe.loss.name!r}; use head 'linear' or 'mlp' "
                f"(e.g. --strategy {recipe.loss.name}+linear)"
            )
        head_spec = make_spec("linear")
    if recipe.sampler is not None and head_spec.name == "logreg":
        if explicit:
            raise ConfigError("head logreg fits on all rows at once and cannot use a sampler; use 'linear' or 'mlp'")
        head_spec = make_spec("linear")
    return head_spec


def fit_head(X: np.ndarray, y: np.ndarray, recipe: Recipe, *, seed: int = 0,
             extra_X: np.ndarray | None = None, extra_y: np.ndarray | None = None) -> HeadFit:
    """Fit the recipe's head on training rows.

    Parameters
    ----------
    X, y
        Training embeddings and hard labels (training split only).
    extra_X, extra_y
        Embeddings of synthesised or mixed images and their (soft) labels.
    """
    t0 = time.perf_counter()
    notes: list[str] = []
    y = np.asarray(y, dtype=np.float64)
    if extra_X is not None and len(extra_X):
        X = np.concatenate([X, extra_X.astype(X.dtype)])
        y = np.concatenate([y, np.asarray(extra_y, dtype=np.float64)])
    hard = np.isin(y, (0.0, 1.0))
    ctx0 = StrategyContext(class_counts=(int((y < 0.5).sum()), int((y >= 0.5).sum())), seed=seed)
    if recipe.resamplers:
        # Resamplers work on hard rows; soft (mixed) rows are kept as they are.
        Xh, yh = X[hard], y[hard].astype(np.int64)
        for spec in recipe.resamplers:
            res = spec.build(ctx0).fit_resample(Xh, yh, seed=seed)
            Xh, yh = res.X, res.y
        X = np.concatenate([Xh, X[~hard]])
        y = np.concatenate([yh.astype(np.float64), y[~hard]])
    n1 = int((y >= 0.5).sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        raise ConfigError("after resampling the training rows hold one class only; choose a milder resampler")
    ctx = StrategyContext(class_counts=(n0, n1), seed=seed)
    loss = recipe.loss.build(ctx)
    sampler = recipe.sampler.build(ctx) if recipe.sampler is not None else None
    head_spec = _choose_head(recipe)
    head = head_spec.build(ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        head.fit(X.astype(np.float32), y, loss=loss, sampler=sampler, loss_name=recipe.loss.name, seed=seed)
    soft_share = float(y.mean())
    return HeadFit(head, head_spec.name, dict(head_spec.params), recipe.loss.name, len(y), soft_share,
                   effective_prior(recipe, (n0, n1), soft_share), time.perf_counter() - t0, (n0, n1), notes)


def _correct_prior(p: np.ndarray, train_prior: float | None, true_prior: float, on: bool) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if on and train_prior is not None and abs(train_prior - true_prior) > 1e-9:
        p = prior_shift_correct(p, train_prior, true_prior)
    return p


@dataclass
class Postprocess:
    """Validation-fitted corrections applied to every score, in this order."""

    train_prior: float | None
    true_prior: float
    prior_correction: bool
    calibrator: Calibrator
    threshold: ThresholdChoice

    def uncalibrated(self, p: np.ndarray) -> np.ndarray:
        """Scores after the prior correction, before calibration."""
        return _correct_prior(p, self.train_prior, self.true_prior, self.prior_correction)

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Final probabilities: prior correction, then calibration."""
        return self.calibrator.transform(self.uncalibrated(p))

    def to_dict(self) -> dict[str, Any]:
        return {"train_prior": self.train_prior, "true_prior": self.true_prior,
                "prior_correction": self.prior_correction and self.train_prior is not None,
                "calibration": self.calibrator.to_dict(), "threshold": self.threshold.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Postprocess":
        return cls(d["train_prior"], d["true_prior"], bool(d["prior_correction"]),
                   Calibrator.from_dict(d["calibration"]), ThresholdChoice.from_dict(d["threshold"]))


def fit_postprocess(p_val: np.ndarray, y_val: np.ndarray, *, train_prior: float | None, true_prior: float,
                    prior_correction: bool = True, calibration: str = "none", threshold: str = "max-f1") -> Postprocess:
    """Prior correction (analytic), calibration and threshold, all from validation only."""
    p = _correct_prior(p_val, train_prior, true_prior, prior_correction)
    cal = fit_calibrator(calibration, y_val, p)
    choice = tune_threshold(y_val, cal.transform(p), threshold)
    return Postprocess(train_prior, true_prior, prior_correction, cal, choice)
