"""False alarms: counts that need no positive, binomial intervals, and what is said without positives.

A false-alarm-rate threshold (``fpr<=A``, :func:`~imbvision.evaluation.threshold.fpr_threshold`) is
judged on the test negatives: the realised rate with its exact (Clopper–Pearson 1934) interval, and
the interval the rule predicts for that many negatives (Beta-binomial).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import DataError
from ._checks import _check_threshold, check_binary_scores

__all__ = ["alarm_metrics", "clopper_pearson", "false_alarm_summary", "score_histogram", "NEEDS_POSITIVES_NOTE"]

#: What evaluation says when the scored split holds no positive.
NEEDS_POSITIVES_NOTE = ("this split holds no positive: average precision, ROC-AUC, recall and precision need "
                        "positives, so only the false-alarm rate on its negatives and the score histogram are reported")


def alarm_metrics(y: Any, score: Any, threshold: float) -> dict[str, Any]:
    """Counts of the decision ``score >= threshold`` that need no positive.

    Returns
    -------
    dict
        ``threshold, n, n_pos, n_neg, fp, tn, false_alarm_rate (fp / n_neg), flagged, flagged_rate``;
        with positives also ``tp, fn, recall``.
    """
    y_i, s = check_binary_scores(y, score, require_both=False)
    t = _check_threshold(threshold)
    flag = s >= t
    neg = y_i == 0
    n_neg, n_pos = int(neg.sum()), int((~neg).sum())
    fp = int((flag & neg).sum())
    out: dict[str, Any] = {"threshold": t, "n": len(y_i), "n_pos": n_pos, "n_neg": n_neg, "fp": fp,
                           "tn": n_neg - fp, "false_alarm_rate": fp / n_neg if n_neg else 0.0,
                           "flagged": int(flag.sum()), "flagged_rate": float(flag.mean())}
    if n_pos:
        tp = int((flag & ~neg).sum())
        out.update({"tp": tp, "fn": n_pos - tp, "recall": tp / n_pos})
    return out


def clopper_pearson(k: int, n: int, level: float = 0.95) -> list[float]:
    """Exact (Clopper–Pearson 1934) interval of a binomial proportion ``k / n`` (scipy's ``binomtest``)."""
    from scipy.stats import binomtest

    if n <= 0:
        raise DataError("a binomial interval needs at least one trial; got n = 0")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return [float(ci.low), float(ci.high)]


def false_alarm_summary(y: Any, score: Any, threshold: float, rule_info: Mapping[str, Any] | None = None,
                        level: float = 0.95) -> dict[str, Any]:
    """The realised false-alarm rate on a split's negatives, with its intervals.

    Parameters
    ----------
    y, score
        Labels and final probabilities ``(n,)`` of the scored split (usually test).
    threshold
        Flag when ``score >= threshold``.
    rule_info
        The ``fpr_rule`` record of an ``fpr<=`` threshold
        (:func:`~imbvision.evaluation.threshold.fpr_threshold`): adds the target, the interval the
        realised rate should fall in (``BetaBinomial(m, k, n + 1 - k)`` quantiles over the ``m``
        negatives here: it covers both the validation draw and this split's draw) and whether it does.

    Returns
    -------
    dict
        ``false_alarm_rate``, ``false_alarms``, ``negatives``, ``false_alarm_ci`` (Clopper–Pearson at
        ``level``, of the rate on these negatives), ``false_alarm_ci_level``; with ``rule_info`` also
        ``false_alarm_target``, ``false_alarm_expected`` ``[lo, hi]`` and ``false_alarm_within_expected``.
    """
    y_i, s = check_binary_scores(y, score, require_both=False)
    neg = s[y_i == 0]
    m = len(neg)
    if m == 0:
        return {}
    fp = int((neg >= _check_threshold(threshold)).sum())
    out: dict[str, Any] = {"false_alarm_rate": fp / m, "false_alarms": fp, "negatives": m,
                           "false_alarm_ci": clopper_pearson(fp, m, level), "false_alarm_ci_level": level}
    if rule_info:
        from scipy.stats import betabinom

        a, b = (float(v) for v in rule_info["beta"])
        lo, hi = betabinom.ppf([(1 - level) / 2, (1 + level) / 2], m, a, b)
        out.update({"false_alarm_target": float(rule_info["target"]),
                    "false_alarm_expected": [float(lo) / m, float(hi) / m],
                    "false_alarm_within_expected": bool(lo <= fp <= hi)})
    return out


def score_histogram(score: Any, bins: int = 20) -> dict[str, list]:
    """Counts of the scores in ``bins`` equal-width bins between their minimum and maximum (numpy)."""
    counts, edges = np.histogram(np.asarray(score, dtype=np.float64), bins=bins)
    return {"counts": [int(c) for c in counts], "edges": [float(e) for e in edges]}
