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
  effect on the fitted model), which a bootstrap of test images misses;
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


def _draw_dataset(rng: np.random.Generator, st: SimSettings, n_strat: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = (rng.random(st.n) < st.prevalence).astype(np.int64)
    y[: max(2, int(round(st.prevalence * st.n * 0.5)))] = 1  # never a data set without positives
    z = st.separation * y + rng.standard_normal(st.n)
    u = st.item_sd * rng.standard_normal((n_strat, st.n))
    return y, z, u


def _split_scores(rng: np.random.Generator, st: SimSettings, y: np.ndarray, z: np.ndarray, u: np.ndarray,
                  shifts: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(n_test,)`` and scores ``(n_strat, n_test)`` of one split's test items."""
    g = 1.0 + st.split_sd * rng.standard_normal((len(shifts), 1))
    e = st.cell_sd * rng.standard_normal((len(shifts), len(idx)))
    yt = y[idx]
    return yt, g * z[idx][None, :] + u[:, idx] + e + shifts[:, None] * yt[None, :]


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
                         seed: int = 0) -> list[dict[str, dict]]:
    """Run ``reps`` simulated comparisons of ``effects`` (``{strategy: shift}``) against a baseline.

    Parameters
    ----------
    effects
        Shift of each strategy's positive scores; 0 makes it the baseline's twin.
    splits
        K random splits per simulated comparison.
    corrected
        Use the Nadeau & Bengio variance factor (as compare does); ``False`` gives
        the naive paired t-test over splits (factor 1/K), for contrast.

    Returns
    -------
    list of dict
        One :func:`compare_to_baseline` result per replicate.
    """
    rng = np.random.default_rng(seed)
    names = list(effects)
    shifts = np.array([0.0] + [float(effects[n]) for n in names])
    n_train = settings.n - settings.n_test
    out = []
    for _ in range(reps):
        y, z, u = _draw_dataset(rng, settings, len(shifts))
        ap = np.empty((len(shifts), splits))
        for k in range(splits):
            yt, s = _split_scores(rng, settings, y, z, u, shifts, _test_split(rng, settings, y))
            ap[:, k] = _ap_rows(np.broadcast_to(yt, s.shape), s)
        deltas = {n: ap[j + 1] - ap[0] for j, n in enumerate(names)}
        out.append(compare_to_baseline(deltas, n_train=n_train if corrected else None,
                                       n_test=settings.n_test if corrected else None))
    return out
