"""Honest statistics for comparing remedies: the split is the unit of evidence.

A comparison fits every strategy on the same K splits (seeds, or seeds × folds)
and scores each on that split's test images. The evidence that a remedy helps
is the K paired differences ``ΔAP_k = AP(strategy, split k) − AP(baseline,
split k)``: they carry the variance of the test images *and* of the training
set, which a bootstrap of test images alone (models held fixed) leaves out.

The K differences are not independent: repeated random splits and the folds
of k-fold share training images, so the naive ``sd / √K`` is too small and a
plain paired t-test rejects far too often. Nadeau & Bengio (2003, *Machine
Learning* 52:239–281) inflate the variance of the mean by replacing ``1/K``
with ``1/K + n_test/n_train`` (the *corrected resampled t-test*; Bouckaert &
Frank (2004) showed the same factor works for repeated k-fold, where
``n_test/n_train = 1/(k−1)``). That test, its interval, and Holm's step-down
correction over strategies (Holm 1979) are what ``imbvision compare`` decides
on. No p-value comes from resampling, so none sits on a resampling floor.

scipy gives the t distribution; the corrected variance, Holm's step-down and
the Holm-consistent interval levels are a few lines each and have no ready
function in scipy or scikit-learn (statsmodels is not a dependency).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as sps

from ..errors import ConfigError

__all__ = [
    "mean_ci",
    "corrected_ttest",
    "compare_to_baseline",
    "holm",
    "holm_levels",
    "min_exact_p",
    "seeds_to_decide",
    "few_splits_note",
]

#: Family-wise error rate of the "beyond noise" decisions.
ALPHA = 0.05

#: Below this many paired splits no distribution-free (sign-flip) test can reach p < 0.05.
MIN_SPLITS_FOR_EXACT = 6


def _correction(k: int, n_train: float | None, n_test: float | None) -> float:
    """Variance factor of the mean of ``k`` split statistics: ``1/k + n_test/n_train`` (Nadeau & Bengio 2003)."""
    if n_train is None or n_test is None:
        return 1.0 / k
    if not (n_train > 0 and n_test > 0):
        raise ConfigError(f"n_train and n_test must be positive image counts; got {n_train!r} and {n_test!r}")
    return 1.0 / k + float(n_test) / float(n_train)


def mean_ci(values: Sequence[float], level: float = 0.95, *, n_train: float | None = None,
            n_test: float | None = None) -> tuple[float, float, float | None, float | None]:
    """Mean, standard deviation and a Student-t interval of a statistic over K splits.

    Parameters
    ----------
    values
        One value per split, shape ``(K,)``.
    level
        Coverage of the interval (0.95 gives a 95% interval).
    n_train, n_test
        Training and test images per split. When given, the variance of the mean
        uses the Nadeau & Bengio (2003) factor ``1/K + n_test/n_train`` instead of
        ``1/K`` because overlapping splits are correlated; without them the splits
        are taken as independent (e.g. separate data sets).

    Returns
    -------
    (mean, sd, lo, hi)
        ``lo`` and ``hi`` are ``None`` with a single split or identical values (no spread
        to measure: never a zero-width interval).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ConfigError(f"mean_ci needs a 1-D, non-empty list of per-split values; got shape {v.shape}")
    m = float(v.mean())
    if len(v) < 2:
        return m, 0.0, None, None
    sd = float(v.std(ddof=1))
    if np.ptp(v) == 0.0:
        return m, 0.0, None, None
    se = sd * math.sqrt(_correction(len(v), n_train, n_test))
    h = float(sps.t.ppf(0.5 + level / 2, len(v) - 1) * se)
    return m, sd, m - h, m + h


def corrected_ttest(diffs: Sequence[float], n_train: float | None, n_test: float | None, *,
                    level: float = 0.95) -> dict:
    """Corrected resampled t-test of per-split paired differences (Nadeau & Bengio 2003).

    Parameters
    ----------
    diffs
        Per-split differences ``(K,)``, e.g. ΔAP of a strategy against the baseline
        fitted and tested on the same split.
    n_train, n_test
        Training and test images per split (means when they vary). ``None`` for
        both: independent splits (factor ``1/K``).
    level
        Coverage of the returned interval.

    Returns
    -------
    dict
        ``k, mean, sd, se, df, t, p`` (two-sided) and ``ci`` (``[lo, hi]`` at
        ``level``), ``factor`` (the variance factor used). With fewer than 2 splits,
        or K identical non-zero differences (no spread to judge them by), ``p``,
        ``t`` and ``ci`` are ``None`` and ``note`` says why. All differences zero:
        ``p = 1``, ``ci = None`` (never a zero-width interval) and a ``note``.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0 or not np.isfinite(d).all():
        raise ConfigError(f"corrected_ttest needs a 1-D, non-empty list of finite differences; got {diffs!r}")
    k = len(d)
    mean = float(d.mean())
    out = {"k": k, "mean": mean, "sd": None, "se": None, "df": k - 1, "t": None, "p": None, "ci": None,
           "level": float(level), "factor": None, "note": None}
    if k < 2:
        out["note"] = "one split: no spread to test against; run more seeds"
        return out
    factor = _correction(k, n_train, n_test)
    sd = float(d.std(ddof=1))
    se = sd * math.sqrt(factor)
    out.update(sd=sd, se=se, factor=factor)
    if np.ptp(d) <= 1e-12 * max(1.0, abs(mean)):  # all differences equal (up to rounding): no spread
        if abs(mean) <= 1e-12:
            out.update(t=0.0, p=1.0, note="identical AP on every split: no difference, and no spread for an interval")
        else:
            out["note"] = "the same difference on every split: no spread to judge it by"
        return out
    t = mean / se
    q = float(sps.t.ppf(0.5 + level / 2, k - 1))
    out.update(t=float(t), p=float(2 * sps.t.sf(abs(t), k - 1)), ci=[mean - q * se, mean + q * se])
    return out


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (family-wise error), ``None`` entries kept as ``None``."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    ps = np.array([pvalues[i] for i in idx], dtype=float)
    order = np.argsort(ps, kind="stable")
    m = len(ps)
    adj = np.empty(m)
    running = 0.0
    for rank, j in enumerate(order):
        running = max(running, (m - rank) * ps[j])
        adj[j] = min(1.0, running)
    out: list[float | None] = [None] * len(pvalues)
    for k, i in enumerate(idx):
        out[i] = float(adj[k])
    return out


def holm_levels(pvalues: Sequence[float | None], alpha: float = 0.05) -> list[float | None]:
    """Per-hypothesis test level of Holm's procedure, for intervals that agree with its decisions.

    Holm compares the j-th smallest p with ``alpha / (m − j + 1)`` and stops at the
    first that fails. Hypothesis j gets that level; those from the first failure on
    get the failing step's level. A two-sided interval at ``1 − level`` then
    excludes 0 exactly when the Holm-adjusted p is below ``alpha`` (for tests whose
    p and interval come from the same distribution, as the t-test's do), and each
    interval covers its true value at least 95% of the time.
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    ps = np.array([pvalues[i] for i in idx], dtype=float)
    order = np.argsort(ps, kind="stable")
    m = len(ps)
    out: list[float | None] = [None] * len(pvalues)
    stopped: float | None = None
    for rank, j in enumerate(order):
        step = alpha / (m - rank)
        if stopped is None and not ps[j] < step:
            stopped = step
        out[idx[j]] = stopped if stopped is not None else step
    return out


def compare_to_baseline(deltas: Mapping[str, Sequence[float]], *, n_train: float | None, n_test: float | None,
                        alpha: float = 0.05, primary: str | None = None) -> dict[str, dict]:
    """Test every strategy's per-split ΔAP against zero, with family-wise error control over strategies.

    Parameters
    ----------
    deltas
        ``{strategy: per-split ΔAP (K,)}``, the same K splits for all.
    n_train, n_test
        Images per training and test split, for the corrected variance.
    alpha
        Family-wise error rate of the "beyond noise" decisions.
    primary
        A strategy declared *before* the comparison as the primary question, or ``None``.
        ``None``: Holm's step-down over all strategies (Holm 1979). A name: the
        fixed-sequence procedure (Maurer, Hothorn & Lehmacher 1995; Westfall & Krishen 2001) —
        the primary comparison is tested at the full ``alpha``, and only if it is beyond
        noise are the others tested, by Holm at ``alpha``. Both control the family-wise error
        at ``alpha`` (the second is a closed test); the second does not charge the primary
        question for the other strategies, and gives the others nothing when it fails.

    Returns
    -------
    dict
        Per strategy: everything :func:`corrected_ttest` returns (``p`` unadjusted,
        ``ci`` at 95%), plus ``p_holm`` (the adjusted p of the procedure used), ``beyond_noise``
        (``p_holm < alpha``), ``decision_level`` and ``decision_ci`` — the interval at the
        procedure's level for that strategy, which excludes 0 exactly when ``beyond_noise`` is
        true — and ``gate``: ``None`` (Holm), ``"primary"``, or ``"after primary"``.
        ``decision_ci`` is ``None`` where ``ci`` is (no test possible, or identical AP on every
        split) and for the others when the primary comparison was not beyond noise (they were not tested).

    Raises
    ------
    ConfigError
        ``primary`` is not one of the strategies in ``deltas``.
    """
    names = list(deltas)
    if primary is not None and primary not in deltas:
        raise ConfigError(f"primary strategy {primary!r} is not among the compared strategies "
                          f"({', '.join(names) or 'none'})")
    tests = {n: corrected_ttest(deltas[n], n_train, n_test) for n in names}
    rest = [n for n in names if n != primary]
    ps = [tests[n]["p"] for n in rest]
    adj, levels = holm(ps), holm_levels(ps, alpha)
    gate_open = True
    if primary is not None:
        t = tests[primary]
        gate_open = t["p"] is not None and t["p"] < alpha
        _decide(t, t["p"], None if t["p"] is None else alpha, alpha)
        t["gate"] = "primary"
    for n, a, lev in zip(rest, adj, levels):
        t = tests[n]
        if primary is None:
            _decide(t, a, lev, alpha)
            t["gate"] = None
            continue
        p1 = tests[primary]["p"]
        a = None if a is None else (a if p1 is None else max(a, p1))
        _decide(t, a, lev if gate_open else None, alpha)
        t["gate"] = "after primary"
        if not gate_open and t["note"] is None:
            t["note"] = f"not tested: the primary comparison ({primary}) is not beyond noise"
    return tests


def _decide(t: dict, p_adj: float | None, level: float | None, alpha: float) -> None:
    """Fill ``p_holm``, ``beyond_noise`` and the decision interval of one test dict in place."""
    t["p_holm"] = p_adj
    t["beyond_noise"] = p_adj is not None and p_adj < alpha and level is not None
    t["decision_level"] = None if level is None else 1.0 - level
    t["decision_ci"] = None
    if level is not None and t["ci"] is not None:
        q = float(sps.t.ppf(1 - level / 2, t["df"]))
        t["decision_ci"] = [t["mean"] - q * t["se"], t["mean"] + q * t["se"]]


def seeds_to_decide(diffs: Sequence[float], n_train: float | None, n_test: float | None, *,
                    level: float, max_splits: int = 50) -> int | None:
    """Paired splits at which today's mean and spread of ``diffs`` would be beyond noise at ``level``.

    A planning figure, not a test: it assumes the mean and standard deviation stay as observed.
    With the corrected variance ``sd² (1/K + n_test/n_train)`` more splits stop helping once
    ``1/K`` is small beside ``n_test/n_train`` (overlapping splits share images), so the answer is
    ``None`` when even ``max_splits`` would not do — then only more data decides.

    Returns
    -------
    int or None
        The smallest K (> len(diffs)) that would decide, or ``None``.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) < 2 or not d.std(ddof=1) > 0:
        return None
    mean, sd = abs(float(d.mean())), float(d.std(ddof=1))
    for k in range(len(d) + 1, max_splits + 1):
        se = sd * math.sqrt(_correction(k, n_train, n_test))
        if mean / se > float(sps.t.ppf(1 - level / 2, k - 1)):
            return k
    return None


def min_exact_p(k: int) -> float:
    """Smallest two-sided p any exact distribution-free paired test (sign-flip, Wilcoxon) can give with ``k`` splits.

    ``2 / 2**k``: with 3 splits 0.25, with 5 splits 0.0625, with 10 splits 0.002.
    """
    return min(1.0, 2.0 / 2.0 ** int(k))


def few_splits_note(k: int, alpha: float = 0.05) -> str | None:
    """A plain sentence when ``k`` paired splits are too few for a distribution-free test to reach ``alpha``."""
    if k >= MIN_SPLITS_FOR_EXACT or min_exact_p(k) < alpha:
        return None
    if k < 2:
        return (f"Only {k} split: no test of a difference is possible; run at least {MIN_SPLITS_FOR_EXACT} "
                "seeds (10 recommended).")
    return (f"Only {k} paired splits: with {k} splits no exact distribution-free test can give p below "
            f"{min_exact_p(k):.2g}, so any smaller p here rests on the t-test's assumption that per-split ΔAP is "
            f"roughly normal; run at least {MIN_SPLITS_FOR_EXACT} seeds (10 recommended).")
