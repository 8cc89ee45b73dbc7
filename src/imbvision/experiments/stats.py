"""Honest statistics for comparing remedies over seeds and folds.

Hand-written where scipy/sklearn have no ready function: the paired,
cell-stratified bootstrap of a difference in AP, and Holm's step-down
correction (a few lines; statsmodels is not a dependency).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats as sps

__all__ = ["mean_ci", "paired_bootstrap_delta", "wilcoxon_p", "holm"]


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, standard deviation and a Student-t interval over independent cells (seeds × folds)."""
    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if len(v) < 2:
        return m, 0.0, m, m
    sd = float(v.std(ddof=1))
    h = float(sps.t.ppf(0.5 + level / 2, len(v) - 1) * sd / np.sqrt(len(v)))
    return m, sd, m - h, m + h


def _ap_rows(Y: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Average precision of each row (step-wise, as sklearn's ``average_precision_score``)."""
    order = np.argsort(-S, axis=1, kind="mergesort")
    Ys = np.take_along_axis(Y, order, axis=1)
    Ss = np.take_along_axis(S, order, axis=1)
    tp = np.cumsum(Ys, axis=1)
    k = np.arange(1, Y.shape[1] + 1)
    # Ties: only the last position of a run of equal scores counts, as in sklearn.
    last = np.ones_like(Ss, dtype=bool)
    last[:, :-1] = Ss[:, :-1] != Ss[:, 1:]
    prec = tp / k
    # Each positive earns the precision at the end of its tie group.
    pos_idx = np.where(last, np.arange(Y.shape[1])[None, :], Y.shape[1] - 1)
    end = np.minimum.accumulate(pos_idx[:, ::-1], axis=1)[:, ::-1]
    prec_end = np.take_along_axis(prec, end, axis=1)
    npos = np.maximum(Ys.sum(axis=1), 1)
    return (Ys * prec_end).sum(axis=1) / npos


def paired_bootstrap_delta(cells: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], *, n_boot: int = 2000,
                           seed: int = 0) -> dict[str, float]:
    """Mean ΔAP (strategy − baseline) over cells with a paired, stratified bootstrap.

    Each cell is ``(y, score_strategy, score_baseline)`` on the same test images.
    A replicate resamples every cell's test images (positives and negatives
    separately, the same indices for both models) and averages ΔAP over cells.

    Returns
    -------
    dict
        ``delta`` (observed mean ΔAP), ``lo``, ``hi`` (95% percentile interval),
        ``p`` (two-sided bootstrap p-value).
    """
    rng = np.random.default_rng(seed)
    deltas = np.zeros(n_boot)
    observed = []
    for y, sa, sb in cells:
        y = np.asarray(y)
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        idx = np.concatenate([rng.choice(pos, (n_boot, len(pos))), rng.choice(neg, (n_boot, len(neg)))], axis=1)
        Y = y[idx]
        d = _ap_rows(Y, np.asarray(sa)[idx]) - _ap_rows(Y, np.asarray(sb)[idx])
        deltas += d / len(cells)
        observed.append(_ap_rows(y[None], np.asarray(sa)[None])[0] - _ap_rows(y[None], np.asarray(sb)[None])[0])
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    p = 2 * min((deltas <= 0).mean(), (deltas >= 0).mean())
    return {"delta": float(np.mean(observed)), "lo": float(lo), "hi": float(hi), "p": float(min(1.0, max(p, 1 / n_boot)))}


def wilcoxon_p(diffs: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p over cells; ``None`` with fewer than 2 non-zero differences."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.abs(d) > 1e-12]
    if len(d) < 2:
        return None
    return float(sps.wilcoxon(d, alternative="two-sided").pvalue)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (family-wise error), ``None`` entries kept."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    ps = np.array([pvalues[i] for i in idx], dtype=float)
    order = np.argsort(ps)
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
