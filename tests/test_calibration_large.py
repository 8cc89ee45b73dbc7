"""Calibration in the large (issue 21 §7): the default post-processing keeps the mean probability at the prevalence.

For every registered loss, sampler and resampler with the head it gets by default, fitted on a
training split, post-processed on a validation split with the run's default settings and scored on
a separate test split: mean test probability / test prevalence stays within ±20 %.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from imbvision.evaluation import fit_postprocess
from imbvision.evaluation.calibration import Calibrator, calibration_in_the_large, fit_calibrator
from imbvision.strategies import compose, list_strategies
from imbvision.training.config import PipelineOptions
from imbvision.training.head import fit_head

PREV = 0.06
SINGLES = [r.name for fam in ("loss", "sampler", "resampler") for r in list_strategies(fam)]


def _problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    y = (np.arange(n) < round(PREV * n)).astype(np.int64)
    r.shuffle(y)
    X = r.normal(0, 1, (n, 4)) + y[:, None] * np.array([1.6, 1.0, 0.5, 0.0])
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def data():
    return _problem(1200, 1), _problem(1500, 2), _problem(4000, 3)


@pytest.mark.parametrize("text", SINGLES)
def test_default_postprocessing_is_calibrated_in_the_large(text, data):
    (Xtr, ytr), (Xva, yva), (Xte, yte) = data
    opts = PipelineOptions()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_head(Xtr, ytr, compose(text), seed=0)
    p_val, p_test = fit.predict_proba(Xva), fit.predict_proba(Xte)
    post = fit_postprocess(p_val, yva, train_prior=fit.effective_prior, true_prior=float(yva.mean()),
                           prior_correction=opts.prior_correction, calibration=opts.calibration,
                           threshold=opts.threshold)
    assert post.apply(p_val).mean() == pytest.approx(yva.mean(), rel=1e-6)  # matched on validation exactly
    ratio = calibration_in_the_large(yte, post.apply(p_test))["ratio"]
    assert 0.8 <= ratio <= 1.2, (text, ratio, calibration_in_the_large(yte, post.uncalibrated(p_test))["ratio"])


def test_the_intercept_moves_no_ranking_and_round_trips():
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.1).astype(int)
    p = np.clip(rng.random(500) * 0.3 + 0.4 * y, 1e-4, 1 - 1e-4)
    cal = fit_calibrator("intercept", y, p)
    q = cal.transform(p)
    assert q.mean() == pytest.approx(y.mean(), rel=1e-9)
    assert (np.argsort(q, kind="stable") == np.argsort(p, kind="stable")).all()
    again = Calibrator.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again.transform(p), q)


def test_report_ratio_is_none_without_positives():
    out = calibration_in_the_large(np.zeros(4, dtype=int), np.array([0.1, 0.2, 0.1, 0.0]))
    assert out["ratio"] is None and out["mean_probability"] == pytest.approx(0.1)
