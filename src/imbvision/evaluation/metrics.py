"""Binary metrics for a rare positive class, with bootstrap confidence intervals.

Conventions: label ``1`` is the rare positive class, ``score`` is the predicted
probability (or any score where higher means "more positive"), and a sample is
flagged positive when ``score >= threshold``. Undefined ratios (precision with
nothing flagged) are reported as 0, as scikit-learn's ``zero_division=0`` does.

All functions return plain Python floats and ints so the results can be
written to JSON directly.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    matthews_corrcoef,
    roc_auc_score,
)

from ..errors import ConfigError, DataError
from .._text import plural
from ._checks import _check_threshold, check_binary_scores

__all__ = [
    "average_precision",
    "roc_auc",
    "threshold_metrics",
    "ranking_metrics",
    "recall_at_precision",
    "precision_at_recall",
    "bootstrap_ci",
    "interval_or_reason",
    "MIN_POSITIVES_FOR_CI",
    "evaluate_scores",
    "check_binary_scores",
]



# --------------------------------------------------------------------------- basic metrics
def average_precision(y: Any, score: Any) -> float:
    """Average precision (area under the step PR curve), as scikit-learn computes it."""
    y_i, s = check_binary_scores(y, score)
    return float(average_precision_score(y_i, s))


def roc_auc(y: Any, score: Any) -> float:
    """Area under the ROC curve."""
    y_i, s = check_binary_scores(y, score)
    return float(roc_auc_score(y_i, s))


def threshold_metrics(y: Any, score: Any, threshold: float) -> dict[str, Any]:
    """Metrics of the decision ``score >= threshold``.

    Returns
    -------
    dict
        ``threshold, n, n_pos, tp, fp, tn, fn, flagged_rate, precision, recall, f1,
        specificity, mcc, balanced_accuracy, g_mean, accuracy,
        always_negative_accuracy``. ``always_negative_accuracy`` is the accuracy of
        a model that never flags anything — compare ``accuracy`` with it.
    """
    y_i, s = check_binary_scores(y, score)
    threshold = _check_threshold(threshold)
    pred = (s >= threshold).astype(np.int8)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y_i, pred, labels=[0, 1]).ravel())
    n = len(y_i)
    precision = tp / (tp + fp) if (tp + fp) else 0.0
    recall = tp / (tp + fn) if (tp + fn) else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    specificity = tn / (tn + fp) if (tn + fp) else 0.0
    return {
        "threshold": threshold,
        "n": n,
        "n_pos": tp + fn,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "flagged_rate": (tp + fp) / n,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "specificity": float(specificity),
        "mcc": float(matthews_corrcoef(y_i, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_i, pred)),
        "g_mean": float(math.sqrt(recall * specificity)),
        "accuracy": (tp + tn) / n,
        "always_negative_accuracy": (tn + fp) / n,
    }


def _pr_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, precision, recall) at every distinct score."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tp = np.cumsum(y_sorted)[ends].astype(np.float64)
    flagged = (ends + 1).astype(np.float64)
    return s_sorted[ends], tp / flagged, tp / max(float(y.sum()), 1.0)


def recall_at_precision(y: Any, score: Any, min_precision: float = 0.9) -> float:
    """Highest recall of any threshold whose precision is at least ``min_precision``.

    Returns 0.0 when no threshold reaches that precision.
    """
    _check_fraction(min_precision, "min_precision")
    y_i, s = check_binary_scores(y, score)
    _, prec, rec = _pr_points(y_i, s)
    ok = prec >= min_precision - 1e-12
    return float(rec[ok].max()) if ok.any() else 0.0


def precision_at_recall(y: Any, score: Any, min_recall: float = 0.95) -> float:
    """Highest precision of any threshold whose recall is at least ``min_recall``."""
    _check_fraction(min_recall, "min_recall")
    y_i, s = check_binary_scores(y, score)
    _, prec, rec = _pr_points(y_i, s)
    ok = rec >= min_recall - 1e-12
    return float(prec[ok].max()) if ok.any() else 0.0


def _check_fraction(v: Any, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in (0, 1]; got {v!r}") from None
    if not (0.0 < f <= 1.0):
        raise ConfigError(f"{name} must be in (0, 1]; got {v!r}")
    return f


def ranking_metrics(
    y: Any, score: Any, *, min_precision: float = 0.9, min_recall: float = 0.95
) -> dict[str, Any]:
    """Threshold-free metrics.

    Returns
    -------
    dict
        ``n, n_pos, positive_rate, ap, roc_auc, recall_at_precision`` (at precision
        ≥ ``min_precision``, stored as ``at_precision``) and ``precision_at_recall``
        (at recall ≥ ``min_recall``, stored as ``at_recall``). ``positive_rate`` is
        the AP of a random ranking — the baseline to beat.
    """
    y_i, s = check_binary_scores(y, score)
    return {
        "n": len(y_i),
        "n_pos": int(y_i.sum()),
        "positive_rate": float(y_i.mean()),
        "ap": float(average_precision_score(y_i, s)),
        "roc_auc": float(roc_auc_score(y_i, s)),
        "recall_at_precision": recall_at_precision(y_i, s, min_precision),
        "at_precision": float(min_precision),
        "precision_at_recall": precision_at_recall(y_i, s, min_recall),
        "at_recall": float(min_recall),
    }


# --------------------------------------------------------------------------- bootstrap
def _ap_rows(Y: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Average precision of every row (ties handled exactly as scikit-learn does)."""
    n = S.shape[1]
    order = np.argsort(-S, axis=1, kind="stable")
    s_sorted = np.take_along_axis(S, order, axis=1)
    y_sorted = np.take_along_axis(Y, order, axis=1).astype(np.float64)
    tp = np.cumsum(y_sorted, axis=1)
    precision = tp / np.arange(1, n + 1)
    # each positive gets the precision at the end of its group of tied scores
    is_end = np.ones_like(s_sorted, dtype=bool)
    is_end[:, :-1] = s_sorted[:, 1:] != s_sorted[:, :-1]
    idx = np.where(is_end, np.arange(n), n)
    end_idx = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]
    prec_at = np.take_along_axis(precision, end_idx, axis=1)
    n_pos = y_sorted.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (prec_at * y_sorted).sum(axis=1) / n_pos


def _auc_rows(Y: np.ndarray, S: np.ndarray) -> np.ndarray:
    """ROC-AUC of every row via the Mann–Whitney statistic with mid-ranks."""
    ranks = rankdata(S, axis=1)
    Yf = Y.astype(np.float64)
    n_pos = Yf.sum(axis=1)
    n_neg = S.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * Yf).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


_METRICS: Mapping[str, tuple[Callable[..., float], Callable[..., np.ndarray]]] = {
    "ap": (average_precision, _ap_rows),
    "average_precision": (average_precision, _ap_rows),
    "roc_auc": (roc_auc, _auc_rows),
}


def bootstrap_ci(
    y: Any,
    score: Any,
    metric: Callable[[np.ndarray, np.ndarray], float] | str = average_precision,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval of ``metric(y, score)``.

    Parameters
    ----------
    metric
        ``average_precision``, ``roc_auc`` (or their names ``"ap"``, ``"roc_auc"``),
        which run vectorised over all replicates, or any ``f(y, score) -> float``.
    n_boot
        Number of bootstrap replicates.
    alpha
        The interval covers ``1 - alpha`` (0.05 gives a 95 % interval).
    stratified
        Resample positives and negatives separately, keeping their counts, so every
        replicate holds both classes. Without it, single-class replicates are
        dropped (and a replicate count below ``n_boot`` results).

    Returns
    -------
    (point, lo, hi)
        The metric on the full data and the ``alpha/2`` and ``1 - alpha/2``
        percentiles of the replicates.
    """
    y_i, s = check_binary_scores(y, score)
    if isinstance(metric, str):
        if metric not in _METRICS:
            raise ConfigError(f"unknown metric {metric!r}; valid: {sorted(_METRICS)} or a callable")
        scalar, rows = _METRICS[metric]
    else:
        scalar, rows = metric, None
        for f, r in _METRICS.values():
            if metric is f:
                rows = r
    if not callable(scalar):
        raise ConfigError(f"metric must be callable or a name; got {metric!r}")
    if int(n_boot) != n_boot or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer; got {n_boot!r}")
    if not (0.0 < float(alpha) < 1.0):
        raise ConfigError(f"alpha must be in (0, 1); got {alpha!r}")
    n_boot = int(n_boot)
    point = float(scalar(y_i, s))
    rng = np.random.default_rng(seed)
    n = len(y_i)
    pos = np.flatnonzero(y_i == 1)
    neg = np.flatnonzero(y_i == 0)
    chunk = max(1, min(n_boot, 4_000_000 // max(n, 1)))
    values: list[np.ndarray] = []
    done = 0
    while done < n_boot:
        m = min(chunk, n_boot - done)
        if stratified:
            idx = np.concatenate(
                [
                    pos[rng.integers(0, len(pos), size=(m, len(pos)))],
                    neg[rng.integers(0, len(neg), size=(m, len(neg)))],
                ],
                axis=1,
            )
        else:
            idx = rng.integers(0, n, size=(m, n))
        Y, S = y_i[idx], s[idx]
        if rows is not None:
            v = rows(Y, S)
        else:
            v = np.array(
                [
                    scalar(Y[k], S[k]) if 0 < Y[k].sum() < n else np.nan
                    for k in range(m)
                ],
                dtype=np.float64,
            )
        values.append(v)
        done += m
    vals = np.concatenate(values)
    vals = vals[np.isfinite(vals)]
    if len(vals) == 0:
        raise DataError(
            "every bootstrap replicate held a single class; use stratified=True or more data"
        )
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return point, float(lo), float(hi)


#: Fewest test positives for a bootstrap interval of AP or ROC-AUC. A stratified bootstrap keeps the
#: positives' count and can only reshuffle the few there are; below this count its percentile interval
#: covers the true AP far less often than it claims (see ``benchmarks/ci_min_positives.py``).
MIN_POSITIVES_FOR_CI = 10


def interval_or_reason(
    y: Any,
    score: Any,
    metric: str = "ap",
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    min_positives: int = MIN_POSITIVES_FOR_CI,
) -> tuple[list[float] | None, str | None]:
    """A bootstrap interval of ``metric``, or no interval and the reason why.

    Never returns a zero-width interval: with fewer than ``min_positives``
    positives (the count a stratified bootstrap cannot change), or when every
    replicate gives the same value (e.g. perfectly separated scores, AP 1 in
    every resample), the bootstrap does not measure the uncertainty and
    ``(None, reason)`` is returned.

    Returns
    -------
    (interval, reason)
        ``([lo, hi], None)`` or ``(None, "a sentence")``.
    """
    y_i, s = check_binary_scores(y, score)
    n_pos = int(y_i.sum())
    if n_pos < min_positives:
        return None, (f"no interval: only {plural(n_pos, 'positive')} in this split, fewer than the "
                      f"{min_positives} a bootstrap interval needs")
    _, lo, hi = bootstrap_ci(y_i, s, metric, n_boot=n_boot, alpha=alpha, seed=seed)
    if not hi > lo:
        return None, (f"no interval: every bootstrap resample gives {metric} {lo:.3f} "
                      "(the scores separate the classes perfectly), so resampling cannot measure its uncertainty")
    return [lo, hi], None


def evaluate_scores(
    y: Any,
    score: Any,
    threshold: float,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_precision: float = 0.9,
    min_recall: float = 0.95,
    rank_score: Any = None,
    rule_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """All metrics: ranking metrics with bootstrap CIs plus metrics at ``threshold``.

    Parameters
    ----------
    score
        Final probabilities, shape ``(n,)``: the threshold applies to these.
    rank_score
        Optional ``(n,)`` score the ranking metrics (AP, ROC-AUC, recall at
        precision, their intervals) are computed on, e.g. the prior-corrected
        probability before calibration. Calibration is a monotone map fitted on
        validation; isotonic calibration merges scores into ties and would move AP
        and ROC-AUC, so rank on a score calibration cannot change. Default: ``score``.

    Returns
    -------
    dict
        Flat, JSON-ready: every key of :func:`ranking_metrics` and
        :func:`threshold_metrics`, plus ``ap_ci`` and ``roc_auc_ci`` (``[lo, hi]``),
        ``ci_level`` (e.g. 0.95) and ``n_boot``. With ``n_boot=0`` the CIs are omitted.
        Where no honest interval exists (see :func:`interval_or_reason`) ``ap_ci`` /
        ``roc_auc_ci`` are absent and ``ap_ci_note`` / ``roc_auc_ci_note`` say why.
    """
    from .false_alarms import NEEDS_POSITIVES_NOTE, alarm_metrics, false_alarm_summary, score_histogram  # noqa: I001

    y_i, s = check_binary_scores(y, score, require_both=False)
    if y_i.all():
        check_binary_scores(y_i, s)  # all positive: the usual one-class error
    if not y_i.any():
        return {**alarm_metrics(y_i, s, threshold), "positive_rate": 0.0, "needs_positives": NEEDS_POSITIVES_NOTE,
                "score_histogram": score_histogram(s),
                **false_alarm_summary(y_i, s, threshold, rule_info, level=1.0 - alpha)}
    r = s if rank_score is None else check_binary_scores(y_i, rank_score, what="ranking scores")[1]
    out: dict[str, Any] = ranking_metrics(
        y_i, r, min_precision=min_precision, min_recall=min_recall
    )
    if n_boot:
        for key in ("ap", "roc_auc"):
            ci, why = interval_or_reason(y_i, r, key, n_boot=n_boot, alpha=alpha, seed=seed)
            if ci is None:
                out[f"{key}_ci_note"] = why
            else:
                out[f"{key}_ci"] = ci
        out["ci_level"] = 1.0 - alpha
        out["n_boot"] = int(n_boot)
    out.update(threshold_metrics(y_i, s, threshold))
    out.update(false_alarm_summary(y_i, s, threshold, rule_info, level=1.0 - alpha))
    return out
