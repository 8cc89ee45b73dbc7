"""What is fitted on validation scores and applied to every later score.

The order is fixed: the analytic prior correction (Saerens et al. 2002) from
the prior the model effectively trained at to the true prior, then the
calibration, then the decision threshold. All three are fitted on the
validation split only; the test split is only ever scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .calibration import Calibrator, fit_calibrator, prior_shift_correct
from .threshold import ThresholdChoice, tune_threshold

__all__ = ["Postprocess", "fit_postprocess", "correct_prior", "check_validation_labels"]


def check_validation_labels(y_val: np.ndarray, threshold: str, calibration: str, where: str = "the validation split"
                            ) -> None:
    """Refuse, before any fit, a threshold rule or calibration that needs validation positives where there is none.

    Raises
    ------
    ConfigError
        Naming the fix: ``--threshold fpr<=0.01`` (negatives alone) or ``--calibration none``/``intercept``.
    """
    from ..errors import ConfigError
    from .threshold import no_positive_rule_error, parse_threshold_rule

    if np.asarray(y_val).any():
        return
    rule = parse_threshold_rule(threshold)
    if rule.needs_positives:
        raise no_positive_rule_error(rule, where)
    if calibration in ("platt", "isotonic"):
        raise ConfigError(f"{where} holds no positive, so --calibration {calibration} cannot be fitted; "
                          "use --calibration intercept (the default: left as is without positives) or none")


def correct_prior(p: np.ndarray, train_prior: float | None, true_prior: float, on: bool = True) -> np.ndarray:
    """Move probabilities from ``train_prior`` to ``true_prior`` (identity when off, unknown or equal).

    Parameters
    ----------
    p
        Positive-class probabilities, shape ``(N,)``.
    train_prior
        The positive rate the model effectively trained at (``None``: no analytic form, no correction).
    true_prior
        The positive rate of the data the scores are for (the validation share).
    on
        The run's ``prior_correction`` switch.
    """
    p = np.asarray(p, dtype=np.float64)
    if not 0.0 < true_prior < 1.0:  # validation without a positive (or negative): no prior to move to
        return p
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
        return correct_prior(p, self.train_prior, self.true_prior, self.prior_correction)

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
    """Prior correction (analytic), calibration and threshold, all from validation only.

    Parameters
    ----------
    p_val, y_val
        Raw validation probabilities ``(N,)`` and their 0/1 labels.
    train_prior, true_prior
        See :func:`correct_prior`.
    calibration
        ``none``, ``intercept``, ``platt`` or ``isotonic`` (:func:`~imbvision.evaluation.fit_calibrator`).
    threshold
        A threshold rule (:func:`~imbvision.evaluation.parse_threshold_rule`).

    With no validation positive the prior correction and the ``intercept`` calibration are the
    identity (there is no prevalence to move to), and only ``fpr<=`` or ``fixed:`` thresholds can
    be tuned; other rules, ``platt`` and ``isotonic`` raise a ConfigError naming the fix.
    """
    p = correct_prior(p_val, train_prior, true_prior, prior_correction)
    cal = fit_calibrator(calibration, y_val, p)
    choice = tune_threshold(y_val, cal.transform(p), threshold)
    return Postprocess(train_prior, true_prior, prior_correction, cal, choice)
