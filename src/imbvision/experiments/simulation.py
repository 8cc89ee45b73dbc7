"""Simulated comparisons with a known truth, to check the compare statistics.

:func:`simulate_comparisons` draws many synthetic "compare" runs without
training anything: a data set of items with a latent difficulty, one score
per strategy built from that difficulty plus noise, K random train/test splits
per run. Each strategy's score holds three kinds of noise, as a fitted model's
does:

* per item, fixed for the whole run (how this strategy happens to treat this
  image on this data set) — shared by every split whose test set holds the
  item, which is what makes overlapping splits correlated;
* per split, a random change of the signal strength (the training set's
  effect on the fitted model), which a bootstrap of test images misses: an
  independent part (``split_sd``: initialisation, optimisation) and, when
  ``train_sd > 0``, a part carried by the training items themselves (each item
  pulls the fitted model its own way), so splits whose training sets overlap
  get correlated models, as real ones do;
* per split and item (everything else).

Strategies differ only by an optional shift of their positives' scores
(``effects``); with a zero shift a strategy is the baseline's exchangeable
twin and its true ΔAP is exactly 0. The true ΔAP of a shifted strategy is the
expectation of per-split ΔAP over data sets and splits, estimated by
:func:`true_delta_ap` with many draws.

The per-split ΔAPs go through :func:`~imbvision.experiments.stats.compare_to_baseline`
— the very function ``imbvision compare`` decides with — and the result says
how often a strategy was called beyond noise and how often each interval
covered the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..evaluation.metrics import _ap_rows
from .stats import compare_to_baseline

__all__ = ["SimSettings", "simulate_comparisons", "true_delta_ap"]


@dataclass(frozen=True)
class SimSettings:
    """One simulated data set: ``n`` items at ``prevalence``, tested on ``n_test`` of them per split."""

    n: int = 300
    prevalence: float = 0.15
    n_test: int = 60
    separation: float = 1.5  # mean latent score of positives (negatives at 0, unit SD)
    item_sd: float = 0.5  # strategy × item noise, fixed within a data set
    split_sd: float = 0.25  # per-split relative change of the signal strength (training-set effect)
    cell_sd: float = 0.5  # strategy × split × item noise
    train_sd: float = 0.0  # per-split signal change carried by the training items (correlated by overlap)


def _draw_dataset(rng: np.random.Generator, st: SimSettings, n_strat: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = (rng.random(st.n) < st.prevalence).astype(np.int64)
    y[: max(2, int(round(st.prevalence * st.n * 0.5)))] = 1  # never a data set without positives
    z = st.separation * y + rng.standard_normal(st.n)
    # rows 0..n_strat-1: strategy × item noise; rows n_strat..: each item's pull on a model trained on it
    u = st.item_sd * rng.standard_normal((n_strat, st.n))
    if st.train_sd > 0:
        u = np.vstack([u, rng.standard_normal((n_strat, st.n))])
    return y, z, u


def _split_scores(rng: np.random.Generator, st: SimSettings, y: np.ndarray, z: np.ndarray, u: np.ndarray,
                  shifts: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(n_test,)`` and scores ``(n_strat, n_test)`` of one split's test items (the rest trains)."""
    m = len(shifts)
    g = 1.0 + st.split_sd * rng.standard_normal((m, 1))
    if st.train_sd > 0:
        train = np.ones(st.n, dtype=bool)
        train[idx] = False
        g = g + st.train_sd * u[m:, train].sum(axis=1, keepdims=True) / np.sqrt(train.sum())
    e = st.cell_sd * rng.standard_normal((m, len(idx)))
    yt = y[idx]
    return yt, g * z[idx][None, :] + u[:m, idx] + e + shifts[:, None] * yt[None, :]


def _kfold_tests(rng: np.random.Generator, st: SimSettings, y: np.ndarray, folds: int) -> list[np.ndarray]:
    """The test parts of one stratified ``folds``-fold partition (every item tested once)."""
    parts: list[list[int]] = [[] for _ in range(folds)]
    for cls in (0, 1):
        items = rng.permutation(np.flatnonzero(y == cls))
        start = int(rng.integers(folds))  # which fold gets the remainder rotates
        for j, i in enumerate(items):
            parts[(start + j) % folds].append(int(i))
    return [np.asarray(p) for p in parts]


def _test_split(rng: np.random.Generator, st: SimSettings, y: np.ndarray) -> np.ndarray:
    """Random test indices holding at least 2 positives and 2 negatives (a stratified split's guarantee)."""
    while True:
        idx = rng.choice(st.n, st.n_test, replace=False)
        k = int(y[idx].sum())
        if 2 <= k <= st.n_test - 2:
            return idx


def true_delta_ap(effect: float, st: SimSettings = SimSettings(), *, draws: int = 20000, seed: int = 12345) -> float:
    """Expected per-split ΔAP of a strategy shifting its positives by ``effect`` (Monte Carlo, ``draws`` splits)."""
    rng = np.random.default_rng(seed)
    shifts = np.array([0.0, effect])
    Y, S0, S1 = [], [], []
    for _ in range(draws):
        y, z, u = _draw_dataset(rng, st, 2)
        yt, s = _split_scores(rng, st, y, z, u, shifts, _test_split(rng, st, y))
        Y.append(yt)
        S0.append(s[0])
        S1.append(s[1])
    Y = np.asarray(Y)
    return float(np.mean(_ap_rows(Y, np.asarray(S1)) - _ap_rows(Y, np.asarray(S0))))


def simulate_comparisons(effects: Mapping[str, float], *, splits: int = 10, reps: int = 500,
                         settings: SimSettings = SimSettings(), corrected: bool = True,
                         seed: int = 0, design: str = "random", folds: int = 5,
                         primary: str | None = None) -> list[dict[str, dict]]:
    """Run ``reps`` simulated comparisons of ``effects`` (``{strategy: shift}``) against a baseline.

    Parameters
    ----------
    effects
        Shift of each strategy's positive scores; 0 makes it the baseline's twin.
    splits
        Paired splits per simulated comparison: K random splits (``design="random"``, each
        testing ``settings.n_test`` items), or K folds in all of ``K / folds`` repeats of a
        stratified ``folds``-fold partition (``design="kfold"``, as ``compare --folds``: every item
        tested once per repeat; Bouckaert & Frank 2004 use the same corrected factor with
        ``n_test/n_train = 1/(folds − 1)``).
    corrected
        Use the Nadeau & Bengio variance factor (as compare does); ``False`` gives
        the naive paired t-test over splits (factor 1/K), for contrast.
    primary
        Passed to :func:`~imbvision.experiments.stats.compare_to_baseline`: a strategy declared
        primary (fixed-sequence, then Holm), or ``None`` (Holm over all).

    Returns
    -------
    list of dict
        One :func:`compare_to_baseline` result per replicate.

    Raises
    ------
    ValueError
        ``design`` unknown, or ``splits`` not a multiple of ``folds`` for ``"kfold"``.
    """
    if design not in ("random", "kfold"):
        raise ValueError(f"design {design!r} unknown; valid: random, kfold")
    if design == "kfold" and (folds < 2 or splits % folds):
        raise ValueError(f"design kfold needs splits ({splits}) to be a multiple of folds ({folds}) >= 2")
    rng = np.random.default_rng(seed)
    names = list(effects)
    shifts = np.array([0.0] + [float(effects[n]) for n in names])
    n_test = settings.n_test if design == "random" else settings.n / folds
    n_train = settings.n - n_test
    out = []
    for _ in range(reps):
        y, z, u = _draw_dataset(rng, settings, len(shifts))
        if design == "random":
            tests = [_test_split(rng, settings, y) for _ in range(splits)]
        else:
            tests = [t for _ in range(splits // folds) for t in _kfold_tests(rng, settings, y, folds)]
        ap = np.empty((len(shifts), splits))
        for k, idx in enumerate(tests):
            yt, s = _split_scores(rng, settings, y, z, u, shifts, idx)
            ap[:, k] = _ap_rows(np.broadcast_to(yt, s.shape), s)
        deltas = {n: ap[j + 1] - ap[0] for j, n in enumerate(names)}
        out.append(compare_to_baseline(deltas, n_train=n_train if corrected else None,
                                       n_test=n_test if corrected else None, primary=primary))
    return out
