"""Simulated null comparisons: the compare decisions keep their promises (issue 12 §1).

Synthetic score draws, no training: see :mod:`imbvision.experiments.simulation`.
The figures these tests check are written, with more settings, by
``benchmarks/null_simulation.py`` to ``benchmarks/results/null_simulation.json``.
"""

from __future__ import annotations

import numpy as np
import pytest

from imbvision.experiments.simulation import simulate_comparisons, true_delta_ap

NULL4 = {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}


def _family_wise(results) -> float:
    return float(np.mean([any(r[n]["beyond_noise"] for n in r) for r in results]))


@pytest.mark.parametrize("splits", [3, 10])
def test_null_family_wise_false_beyond_noise_rate(splits):
    res = simulate_comparisons(NULL4, splits=splits, reps=300, seed=splits)
    assert _family_wise(res) <= 0.05
    # ... and every interval covers the true ΔAP (0: the strategies are the baseline's twins).
    cover = np.mean([r[n]["decision_ci"][0] <= 0 <= r[n]["decision_ci"][1] for r in res for n in r])
    assert cover >= 0.95


def test_naive_split_test_would_fail_the_same_simulation():
    # Without the Nadeau & Bengio correction the overlapping splits look independent and noise wins:
    # this is the kind of fault the corrected test exists for.
    naive = simulate_comparisons(NULL4, splits=10, reps=300, seed=10, corrected=False)
    assert _family_wise(naive) > 0.08


def test_interval_covers_a_real_effect():
    effect = true_delta_ap(0.6, draws=4000)
    assert 0.08 < effect < 0.25  # a real, moderate ΔAP
    res = simulate_comparisons({"twin": 0.0, "better": 0.6}, splits=10, reps=300, seed=7)
    cover95 = np.mean([r["better"]["ci"][0] <= effect <= r["better"]["ci"][1] for r in res])
    cover_dec = np.mean([r["better"]["decision_ci"][0] <= effect <= r["better"]["decision_ci"][1] for r in res])
    assert cover95 >= 0.93 and cover_dec >= 0.93
    # Not vacuous: the real effect is often found, the twin (almost) never.
    assert np.mean([r["better"]["beyond_noise"] for r in res]) > 0.2
    assert np.mean([r["twin"]["beyond_noise"] for r in res]) <= 0.05
