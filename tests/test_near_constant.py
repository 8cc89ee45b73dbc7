"""Issue 12 §3: no single feature may decide a score (near-constant features in head mode)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from imbvision.strategies import compose, get_strategy, list_strategies
from imbvision.strategies.heads import clip_to_training, head_from_arrays
from imbvision.strategies.registry import StrategyContext
from imbvision.training.head import fit_head


def _problem(seed=0, n=160, d=6):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.int64)
    y[:4] = 1
    X = rng.normal(0, 1, (n, d)) + y[:, None] * 1.2
    X[:, 2] = 0.37  # constant in training
    X[:, 4] = 0.5 + 1.3e-5 * rng.normal(size=n)  # near-constant (the SD of issue 12's example)
    return X.astype(np.float64), y


@pytest.mark.parametrize("name", [r.name for r in list_strategies("head") if r.representation == "global"])
def test_feature_constant_in_training_and_huge_at_test_leaves_scores_unchanged(name):
    X, y = _problem()
    rec = get_strategy(name)
    params = {**rec.defaults(), **({"epochs": 20} if "epochs" in rec.params else {})}
    head = rec.build(StrategyContext((int((y == 0).sum()), int(y.sum())), seed=0), **params).fit(X, y)
    test = _problem(seed=1)[0][:40]
    base = head.predict_proba(test)
    for value in (1e6, -3e4, 0.0):  # constant in training: any value leaves every score as it was
        wild = test.copy()
        wild[:, 2] = value
        np.testing.assert_array_equal(head.predict_proba(wild), base)
    # near-constant in training: a huge value counts no more than the largest training value did
    big, bigger = test.copy(), test.copy()
    big[:, 4], bigger[:, 4] = X[:, 4].max(), 1e9
    np.testing.assert_array_equal(head.predict_proba(bigger), head.predict_proba(big))
    # and after a save/load round trip
    again = head_from_arrays(head.to_arrays(), head.get_config())
    wild = test.copy()
    wild[:, 2] = 1e6
    np.testing.assert_array_equal(again.predict_proba(wild), base)


def test_the_issue_example_z_is_bounded_by_the_training_range():
    """A test value that once gave z = 23,547 on a feature with training SD 1.3e-5 now counts at most as
    much as the most extreme training value of that feature (about sqrt(n_train))."""
    X, y = _problem()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_head(X, y, compose("ce"), seed=0)
    h = fit.head
    t = X[:1].copy()
    t[0, 4] = h.mean_[4] + 23547 * h.scale_[4]
    z = clip_to_training((t - h.mean_) / h.scale_, h.low_, h.high_)
    assert abs(z[0, 4]) <= np.sqrt(len(y)) + 1e-9
    assert z[0, 2] == h.low_[2] == h.high_[2]  # the constant feature: its one training value, whatever comes


def test_training_rows_are_unchanged_by_the_clip():
    X, y = _problem()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = fit_head(X, y, compose("ce"), seed=0).head
    Z = (X.astype(np.float32).astype(np.float64) - h.mean_) / h.scale_  # the head trains on float32 features
    np.testing.assert_array_equal(clip_to_training(Z, h.low_, h.high_), Z)
