"""Thresholds from normal images only (``fpr<=``), false-alarm intervals, and evaluation without positives."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imbvision.errors import ConfigError
from imbvision.evaluation import evaluate_scores, fit_postprocess, parse_threshold_rule, tune_threshold
from imbvision.evaluation.false_alarms import clopper_pearson, false_alarm_summary
from imbvision.evaluation.threshold import fpr_threshold


@pytest.mark.parametrize("text, value", [("fpr<=0.01", 0.01), ("FPR <= 0.25", 0.25), ("false-alarm-rate<=0.1", 0.1)])
def test_fpr_rule_parses_and_prints_back(text, value):
    rule = parse_threshold_rule(text)
    assert rule.kind == "fpr" and rule.value == value and not rule.needs_positives
    assert parse_threshold_rule(str(rule)) == rule


@pytest.mark.parametrize("text", ["fpr<=0", "fpr<=0.5", "fpr<=0.7", "fpr<=-0.1"])
def test_fpr_rule_outside_0_to_half_is_refused_naming_the_range(text):
    with pytest.raises(ConfigError, match=r"\(0, 0.5\)"):
        parse_threshold_rule(text)


def test_fpr_threshold_is_the_conformal_quantile_of_the_negatives():
    # 19 negatives, rate 0.1: k = floor(0.1 * 20) = 2, so the threshold sits just above the 2nd highest score
    s = np.arange(1, 20, dtype=np.float64) / 20  # 0.05 .. 0.95
    t, info, note = fpr_threshold(s, 0.1)
    assert info["k"] == 2 and info["beta"] == [2, 18] and note == ""
    assert 0.9 < t < 0.9 + 1e-12  # flags only 0.95 of the validation negatives (1 of 19 <= 0.1)
    assert (s >= t).sum() == 1
    # too few negatives for the rate: flags none of them and says so
    t, info, note = fpr_threshold(s[:5], 0.1)
    assert t > s[:5].max() and "needs at least 9" in note


def test_fpr_threshold_keeps_its_promise_on_new_negatives():
    """Over many validation draws the mean realised rate on fresh negatives is at most the target."""
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(400):
        val, new = rng.normal(size=150), rng.normal(size=2000)
        t, _, _ = fpr_threshold(val, 0.05)
        rates.append(float((new >= t).mean()))
    # expected k / (n + 1) = 7 / 151 = 0.0464; the mean of 400 draws is within 0.004 of it
    assert abs(np.mean(rates) - 7 / 151) < 0.004 and np.mean(rates) <= 0.05


def test_validation_without_a_positive_tunes_fpr_and_names_the_fix_otherwise():
    rng = np.random.default_rng(1)
    y, s = np.zeros(300, dtype=int), rng.random(300)
    choice = tune_threshold(y, s, "fpr<=0.02")
    assert choice.achieved["n_pos"] == 0 and choice.achieved["false_alarm_rate"] <= 0.02
    for rule in ("max-f1", "recall>=0.9", "precision>=0.9", "fbeta:2"):
        with pytest.raises(ConfigError, match=r"holds no positive.*fpr<=0\.01"):
            tune_threshold(y, s, rule)
    post = fit_postprocess(s, y, train_prior=None, true_prior=0.0, threshold="fpr<=0.02", calibration="intercept")
    np.testing.assert_array_equal(post.apply(s), s)  # nothing to calibrate to: the scores stay as they are
    with pytest.raises(ConfigError, match="--calibration platt needs positives.*--calibration none"):
        fit_postprocess(s, y, train_prior=None, true_prior=0.0, threshold="fpr<=0.02", calibration="platt")


def test_clopper_pearson_matches_the_closed_form_ends():
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0 and math.isclose(hi, 1 - 0.025 ** (1 / 10), rel_tol=1e-9)
    lo, hi = clopper_pearson(10, 10)
    assert hi == 1.0 and math.isclose(lo, 0.025 ** (1 / 10), rel_tol=1e-9)


def test_false_alarm_summary_counts_and_predicts():
    y = np.array([0] * 8 + [1] * 2)
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.95, 0.9, 0.99])
    out = false_alarm_summary(y, s, 0.65, {"target": 0.1, "beta": [3, 28]})
    assert out["false_alarms"] == 2 and out["negatives"] == 8 and out["false_alarm_rate"] == 0.25
    assert out["false_alarm_ci"] == pytest.approx(clopper_pearson(2, 8))
    from scipy.stats import betabinom
    lo, hi = betabinom.ppf([0.025, 0.975], 8, 3, 28)
    assert out["false_alarm_expected"] == [lo / 8, hi / 8] and out["false_alarm_within_expected"] == (lo <= 2 <= hi)


def test_evaluation_without_a_positive_reports_what_can_be_known():
    y, s = np.zeros(50, dtype=int), np.linspace(0, 1, 50)
    m = evaluate_scores(y, s, 0.9, n_boot=100)
    assert "ap" not in m and "recall" not in m and "need positives" in m["needs_positives"]
    assert m["fp"] == int((s >= 0.9).sum()) == 5 and m["false_alarm_rate"] == 0.1
    assert sum(m["score_histogram"]["counts"]) == 50


@pytest.mark.realdata
def test_magnetic_tile_zero_positive_threshold_keeps_the_false_alarm_rate(tmp_path):
    """Zero positives in training and validation: the realised test rate lies in the interval the tool gives."""
    from imbvision.backbones import create_backbone
    from imbvision.data.sources import load_source
    from imbvision.data.splits import Split
    from imbvision.strategies import compose
    from imbvision.training.cell import FeatureSettings, embed_features, fit_and_score

    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]  # the data beside the repository, or the workplace's shared folder
    mt = next(p for p in (repo.parent / "shared" / "data" / "magnetic-tile", Path("/work/shared/data/magnetic-tile"))
              if p.is_dir())
    ds = load_source(f"magnetic-tile:{mt}")
    y = ds.labels
    rng = np.random.default_rng(0)
    neg, pos = rng.permutation(np.flatnonzero(y == 0))[:260], rng.permutation(np.flatnonzero(y == 1))[:20]
    keep = np.sort(np.concatenate([neg, pos]))
    records = [ds.records[i] for i in keep]
    yk = y[keep]
    negk, posk = rng.permutation(np.flatnonzero(yk == 0)), np.flatnonzero(yk == 1)
    split = Split(np.sort(negk[:60]), np.sort(negk[60:160]), np.sort(np.concatenate([negk[160:], posk])))
    settings = FeatureSettings("test_efficientnet", "none", 64, 0, "global", 0, resize="keep-aspect")
    feats, _ = embed_features(records, create_backbone("test_efficientnet", weights="none"), settings, ["patches"],
                              cache_dir=tmp_path)
    cf = fit_and_score(compose("normality"), feats, yk, split, seed=0, threshold="fpr<=0.05")
    assert yk[split.train].sum() == 0 and yk[split.val].sum() == 0
    info = cf.post.threshold.achieved["fpr_rule"]
    m = evaluate_scores(yk[split.test], cf.post.apply(cf.p_test), cf.post.threshold.threshold, n_boot=0,
                        rule_info=info)
    lo, hi = m["false_alarm_expected"]
    assert lo <= m["false_alarm_rate"] <= hi and m["false_alarm_within_expected"]
    assert m["false_alarm_ci"][0] <= 0.05 <= m["false_alarm_ci"][1]  # the realised rate agrees with the target
    assert 0 <= m["ap"] <= 1 and m["negatives"] == 100


def test_rules_that_need_validation_positives_are_refused_before_any_fit():
    from imbvision.evaluation.postprocess import check_validation_labels

    y = np.zeros(40, dtype=int)
    check_validation_labels(y, "fpr<=0.05", "intercept")  # fine: negatives alone
    check_validation_labels(y, "fixed:0.5", "none")
    with pytest.raises(ConfigError, match=r"seed 3 holds no positive.*'max-f1'.*--threshold fpr<=0\.01"):
        check_validation_labels(y, "max-f1", "intercept", "the validation split of seed 3")
    with pytest.raises(ConfigError, match=r"--calibration isotonic cannot be fitted.*intercept"):
        check_validation_labels(y, "fpr<=0.05", "isotonic")
    y[3] = 1
    check_validation_labels(y, "max-f1", "isotonic")  # with a positive every rule may be tuned
