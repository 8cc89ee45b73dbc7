"""Decision-threshold rules, tuned on validation scores.

A threshold is part of the model: choose it on the **validation** split only,
then apply it unchanged to test. :func:`tune_threshold` sees nothing but the
arrays it is given — passing test scores to it would make every test number
optimistic. If the scores are calibrated, calibrate first and tune the
threshold on the calibrated validation scores.

Rules (text form, as on the command line)::

    max-f1            maximise F1
    fbeta:2           maximise F-beta (beta > 1 favours recall)
    recall>=0.95      highest precision among thresholds with recall >= 0.95
    precision>=0.9    highest recall among thresholds with precision >= 0.9
    fixed:0.5         use 0.5 as is
    fpr<=0.01         false-alarm rate at most 0.01, from the validation negatives alone
                      (works when validation holds no positive; see :func:`fpr_threshold`)

A sample is flagged positive when ``score >= threshold``; candidate thresholds
are the distinct validation scores, so the chosen one is the lowest flagged
validation score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from .metrics import check_binary_scores, threshold_metrics
from .threshold_rule import VALID_RULES, RuleKind, ThresholdRule, parse_threshold_rule  # noqa: F401 - re-exported

__all__ = [
    "ThresholdRule",
    "ThresholdChoice",
    "parse_threshold_rule",
    "tune_threshold",
    "threshold_table",
    "fpr_threshold",
    "no_positive_rule_error",
    "VALID_RULES",
    "DEFAULT_THRESHOLD_GRID",
]

#: Thresholds of :func:`threshold_table` when none are given (probabilities; a
#: rare class often needs the low end).
DEFAULT_THRESHOLD_GRID: tuple[float, ...] = (
    0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99,
)


@dataclass(frozen=True)
class ThresholdChoice:
    """A tuned threshold and what it achieved on validation.

    Attributes
    ----------
    threshold
        Flag positive when ``score >= threshold``.
    rule
        The rule that chose it.
    achieved
        :func:`~imbvision.evaluation.threshold_metrics` on the validation arrays.
    feasible
        False when the rule's constraint could not be met (the best achievable
        threshold was taken instead; ``note`` says so).
    note
        Human-readable remark ("" when nothing to say).
    """

    threshold: float
    rule: ThresholdRule
    achieved: dict[str, Any] = field(default_factory=dict)
    feasible: bool = True
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the rule as its text)."""
        return {
            "threshold": float(self.threshold),
            "rule": str(self.rule),
            "achieved": dict(self.achieved),
            "feasible": bool(self.feasible),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ThresholdChoice":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or "threshold" not in d:
            raise ConfigError(f"threshold record must be a dict with a 'threshold' key; got {d!r}")
        rule = d.get("rule", "fixed:{}".format(d["threshold"]))
        return cls(
            threshold=float(d["threshold"]),
            rule=rule if isinstance(rule, ThresholdRule) else parse_threshold_rule(str(rule)),
            achieved=dict(d.get("achieved") or {}),
            feasible=bool(d.get("feasible", True)),
            note=str(d.get("note", "")),
        )


def _all_thresholds(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(candidate thresholds descending, tp, fp) for flagging ``score >= t``."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order].astype(np.int64)
    ends = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tp = np.cumsum(y_sorted)[ends]
    fp = (ends + 1) - tp
    return s_sorted[ends], tp, fp


def _best(primary: np.ndarray, secondary: np.ndarray, mask: np.ndarray | None = None) -> int:
    """Index maximising ``primary`` then ``secondary``; later (lower threshold) loses ties."""
    p = primary.astype(np.float64).copy()
    q = secondary.astype(np.float64)
    if mask is not None:
        p[~mask] = -np.inf
    top = p.max()
    cand = np.flatnonzero(np.isclose(p, top, rtol=0, atol=1e-12) & np.isfinite(p))
    return int(cand[np.argmax(q[cand])])  # argmax takes the first = highest threshold on ties


def fpr_threshold(s_neg: Any, rate: float) -> tuple[float, dict[str, Any], str]:
    """The threshold that flags at most a share ``rate`` of new negatives, from negatives' scores alone.

    The split-conformal quantile (Vovk et al. 2005; Angelopoulos & Bates 2021, §1): with the ``n``
    validation negatives sorted from the top, ``k = floor(rate * (n + 1))`` and the threshold just
    above the ``k``-th highest score, a new negative from the same distribution is flagged with
    probability ``k / (n + 1) <= rate`` on average over validation draws. That probability (the
    true false-alarm rate of this threshold) follows ``Beta(k, n + 1 - k)`` for continuous scores, so
    the number of false alarms among ``m`` test negatives follows ``BetaBinomial(m, k, n + 1 - k)``:
    :func:`~imbvision.evaluation.metrics.false_alarm_summary` turns it into the interval the realised
    test rate should fall in.

    Parameters
    ----------
    s_neg
        Scores of the validation negatives, shape ``(n,)`` (positives are not looked at).
    rate
        Target false-alarm rate in (0, 0.5).

    Returns
    -------
    (threshold, info, note)
        Flag when ``score >= threshold``; ``info`` holds ``target``, ``n_negatives``, ``k`` and
        ``beta`` (the two Beta parameters); ``note`` is "" or says why the target cannot be met
        (fewer than ``1 / rate - 1`` negatives: the threshold sits above every validation score).
    """
    s = np.sort(np.asarray(s_neg, dtype=np.float64))[::-1]
    n = len(s)
    if n == 0:
        raise ConfigError("a false-alarm-rate threshold (fpr<=) needs validation negatives; the validation "
                          "split holds none: use a larger --val")
    k = int(math.floor(rate * (n + 1) + 1e-9))
    note = ""
    if k < 1:  # not enough negatives to resolve the rate: flag nothing seen in validation
        note = (f"only {n} validation negatives: a false-alarm rate of {rate:g} needs at least "
                f"{math.ceil(1 / rate) - 1}; the threshold sits just above the highest validation score, "
                f"whose expected false-alarm rate is {1 / (n + 1):.3g}")
        k = 1
    t = float(np.nextafter(s[k - 1], np.inf))
    return t, {"target": float(rate), "n_negatives": n, "k": k, "beta": [k, n + 1 - k]}, note


def no_positive_rule_error(rule: ThresholdRule | str, where: str = "the validation split") -> ConfigError:
    """The one error for a threshold rule that needs positives where there is none (names the fix)."""
    return ConfigError(f"{where} holds no positive, so the threshold rule {str(rule)!r} cannot be tuned; "
                       "use --threshold fpr<=0.01 (a false-alarm rate from the validation negatives alone) "
                       "or fixed:T")


def tune_threshold(y_val: Any, s_val: Any, rule: str | ThresholdRule) -> ThresholdChoice:
    """Choose a threshold on **validation** labels and scores (never test).

    Parameters
    ----------
    y_val, s_val
        Validation labels (0/1) and scores; nothing else is looked at.
    rule
        A :class:`ThresholdRule` or its text (see :func:`parse_threshold_rule`).

    Returns
    -------
    ThresholdChoice
        ``feasible=False`` with a note when the constraint cannot be met: for
        ``precision>=P`` the threshold of highest achievable precision is used.
        Ties go to the higher threshold (fewer flags).
    """
    rule = parse_threshold_rule(rule)
    y, s = check_binary_scores(y_val, s_val, what="validation scores", require_both=False)
    n_pos = int(y.sum())
    if n_pos == len(y):
        raise ConfigError(f"the validation split holds no negative ({len(y)} positives); "
                          "a threshold needs both classes, or negatives for fpr<=: use a larger --val")
    if n_pos == 0 and rule.needs_positives:
        raise no_positive_rule_error(rule)
    notes: list[str] = []
    feasible = True
    if rule.kind == "fpr":
        from .false_alarms import alarm_metrics

        t, info, note = fpr_threshold(s[y == 0], float(rule.value))  # type: ignore[arg-type]
        if note:
            notes.append(note)
            feasible = False
        achieved = {**alarm_metrics(y, s, t), "fpr_rule": info}
        return ThresholdChoice(t, rule, achieved, feasible, "; ".join(notes))
    if rule.kind == "fixed" and n_pos == 0:
        from .false_alarms import alarm_metrics

        t = float(rule.value)  # type: ignore[arg-type]
        return ThresholdChoice(t, rule, alarm_metrics(y, s, t), True, "")
    if rule.kind == "fixed":
        t = float(rule.value)  # type: ignore[arg-type]
    else:
        thr, tp, fp = _all_thresholds(y, s)
        fn = n_pos - tp
        prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        rec = tp / n_pos
        if rule.kind in ("max-f1", "fbeta"):
            b2 = 1.0 if rule.kind == "max-f1" else float(rule.value) ** 2  # type: ignore[arg-type]
            fb = (1 + b2) * tp / np.maximum((1 + b2) * tp + b2 * fn + fp, 1)
            i = _best(fb, -np.arange(len(thr)))
        elif rule.kind == "recall":
            target = float(rule.value)  # type: ignore[arg-type]
            ok = rec >= target - 1e-12
            i = _best(prec, -np.arange(len(thr)), ok)  # always feasible: lowest t gives recall 1
        else:  # precision
            target = float(rule.value)  # type: ignore[arg-type]
            ok = prec >= target - 1e-12
            if ok.any():
                i = _best(rec, prec, ok)
            else:
                feasible = False
                i = _best(prec, rec)
                notes.append(
                    f"no threshold reaches precision >= {target:g} on validation; "
                    f"used the highest achievable precision {prec[i]:.3f} "
                    f"(recall {rec[i]:.3f})"
                )
        t = float(thr[i])
    achieved = threshold_metrics(y, s, t)
    if rule.kind == "recall" and achieved["recall"] < float(rule.value) - 1e-12:  # type: ignore[arg-type]
        feasible = False
    if n_pos < 20:
        notes.append(
            f"only {n_pos} validation positives: recall moves in steps of {1 / n_pos:.2g}, "
            "so this threshold is noisy"
        )
    return ThresholdChoice(t, rule, achieved, feasible, "; ".join(notes))


def threshold_table(
    y: Any, s: Any, thresholds: Sequence[float] | None = None
) -> list[dict[str, Any]]:
    """Precision, recall, F1 and flagged rate at a grid of thresholds.

    Parameters
    ----------
    thresholds
        Defaults to :data:`DEFAULT_THRESHOLD_GRID`; duplicates are merged and
        the rows are sorted by threshold.

    Returns
    -------
    list of dict
        One row per threshold: ``threshold, precision, recall, f1, flagged_rate,
        flagged, tp, fp, fn``.
    """
    y_i, s_f = check_binary_scores(y, s)
    grid = DEFAULT_THRESHOLD_GRID if thresholds is None else thresholds
    try:
        ts = np.array(sorted({float(v) for v in grid}), dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"thresholds must be numbers; got {grid!r}") from None
    if not np.isfinite(ts).all():
        raise ConfigError(f"thresholds must be finite; got {list(grid)!r}")
    n, n_pos = len(y_i), int(y_i.sum())
    pos_sorted = np.sort(s_f[y_i == 1])
    neg_sorted = np.sort(s_f[y_i == 0])
    # flagged = score >= t: count of values at or above t
    tp = n_pos - np.searchsorted(pos_sorted, ts, side="left")
    fp = (n - n_pos) - np.searchsorted(neg_sorted, ts, side="left")
    rows = []
    for t, a, b in zip(ts.tolist(), tp.tolist(), fp.tolist()):
        fn = n_pos - a
        rows.append(
            {
                "threshold": t,
                "precision": a / (a + b) if (a + b) else 0.0,
                "recall": a / n_pos,
                "f1": 2 * a / (2 * a + b + fn) if a else 0.0,
                "flagged_rate": (a + b) / n,
                "flagged": a + b,
                "tp": a,
                "fp": b,
                "fn": fn,
            }
        )
    return rows
