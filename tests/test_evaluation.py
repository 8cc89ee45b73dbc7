"""Tests of imbvision.evaluation: metrics, CIs, thresholds, calibration, plots, report."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import make_classification
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    matthews_corrcoef,
    precision_score,
    recall_score,
    roc_auc_score,
)

from imbvision.errors import ConfigError, DataError
from imbvision.evaluation import (
    Calibrator,
    Report,
    ThresholdChoice,
    ThresholdRule,
    average_precision,
    bootstrap_ci,
    brier,
    build_run_report,
    effective_train_prior,
    evaluate_scores,
    expected_calibration_error,
    figure_to_png,
    fit_calibrator,
    parse_threshold_rule,
    plot_image_grid,
    plot_pr_curve,
    plot_pr_curves,
    plot_reliability,
    plot_roc_curve,
    plot_roc_curves,
    plot_score_histograms,
    precision_at_recall,
    prior_shift_correct,
    ranking_metrics,
    recall_at_precision,
    reliability_curve,
    roc_auc,
    save_image_grid,
    save_pr_curve,
    save_pr_curves,
    save_reliability,
    save_roc_curve,
    save_roc_curves,
    save_score_histograms,
    threshold_metrics,
    threshold_table,
    tune_threshold,
)


def _all_cuts(y, s) -> dict[str, np.ndarray]:
    """Brute force: precision / recall / F1 at every distinct score (flag s >= t)."""
    y, s = np.asarray(y), np.asarray(s)
    t = np.unique(s)
    flag = s[None, :] >= t[:, None]
    tp = (flag & (y == 1)).sum(1)
    fp = (flag & (y == 0)).sum(1)
    fn = (y == 1).sum() - tp
    return {"t": t, "precision": tp / np.maximum(tp + fp, 1), "recall": tp / (tp + fn),
            "f1": 2 * tp / (2 * tp + fp + fn)}


def _noisy(n: int, rate: float, seed: int, sep: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(int)
    y[:2] = [0, 1]
    z = rng.normal(size=n) + sep * y
    return y, 1 / (1 + np.exp(-(z - 2)))


# ================================================================================== metrics
def test_threshold_metrics_hand_computed():
    y = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    s = [0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.1, 0.05, 0.0, 0.4]
    m = threshold_metrics(y, s, 0.5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 6, 1)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(6 / 7)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["always_negative_accuracy"] == pytest.approx(0.7)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 6 / 7) / 2)
    assert m["g_mean"] == pytest.approx(math.sqrt(2 / 3 * 6 / 7))
    assert m["mcc"] == pytest.approx(11 / 21)
    assert m["flagged_rate"] == pytest.approx(0.3)
    json.dumps(m)  # plain Python numbers


def test_threshold_is_inclusive_and_nothing_flagged_gives_zero_precision():
    assert threshold_metrics([0, 1], [0.2, 0.5], 0.5)["tp"] == 1
    m = threshold_metrics([0, 1, 0], [0.1, 0.2, 0.3], 0.9)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["mcc"] == 0.0
    assert m["accuracy"] == m["always_negative_accuracy"]


def test_ranking_metrics_hand_computed():
    y, s = [1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]
    r = ranking_metrics(y, s)
    assert r["ap"] == pytest.approx(5 / 6)
    assert r["roc_auc"] == pytest.approx(3 / 4)
    assert r["positive_rate"] == 0.5
    assert r["recall_at_precision"] == pytest.approx(0.5)  # only the top item reaches P >= 0.9
    assert r["precision_at_recall"] == pytest.approx(2 / 3)
    assert recall_at_precision(y, s, 0.6) == pytest.approx(1.0)
    assert precision_at_recall(y, s, 0.5) == pytest.approx(1.0)
    assert average_precision(y, s) == pytest.approx(5 / 6)
    assert roc_auc(y, s) == pytest.approx(0.75)


def test_threshold_metrics_agree_with_sklearn():
    y, s = _noisy(500, 0.1, 30)
    for t in (0.05, 0.2, 0.5, 0.99):
        m = threshold_metrics(y, s, t)
        pred = s >= t
        assert m["precision"] == pytest.approx(precision_score(y, pred, zero_division=0))
        assert m["recall"] == pytest.approx(recall_score(y, pred, zero_division=0))
        assert m["f1"] == pytest.approx(f1_score(y, pred, zero_division=0))
        assert m["mcc"] == pytest.approx(matthews_corrcoef(y, pred))
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))


def test_recall_at_precision_unreachable_is_zero():
    assert recall_at_precision([0, 1], [0.9, 0.1], 0.9) == 0.0


@pytest.mark.parametrize(
    "y, s, match",
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], r"single class.*0 \(negative\).*undefined.*fewer"),
        ([1, 1], [0.1, 0.2], r"single class.*1 \(positive\)"),
        ([0, 1, 1], [0.1, 0.2], r"different lengths \(3 vs 2\)"),
        ([0, 1, 1], [0.1, float("nan"), 0.3], r"NaN or infinite.*index 1"),
        ([0, 1, 1], [0.1, 0.3, float("inf")], r"NaN or infinite.*index 2"),
        ([0, 2, 1], [0.1, 0.2, 0.3], r"labels must be 0 .* or 1 .*\[2\]"),
        ([], [], r"empty"),
    ],
)
def test_bad_input_raises_dataerror(y, s, match):
    with pytest.raises(DataError, match=match):
        ranking_metrics(y, s)
    if len(y) and not any(y) and len(y) == len(s):
        return  # negatives only: evaluate_scores reports the false alarms (test_false_alarms.py)
    with pytest.raises(DataError):
        evaluate_scores(y, s, 0.5, n_boot=10)


def test_single_class_message_mentions_average_precision():
    with pytest.raises(DataError, match="Average precision"):
        bootstrap_ci([0] * 10, np.linspace(0, 1, 10))


def test_predict_proba_matrix_gets_a_hint():
    with pytest.raises(DataError, match=r"proba\[:, 1\]"):
        ranking_metrics([0, 1], np.array([[0.9, 0.1], [0.2, 0.8]]))


# ================================================================================ bootstrap
def test_vectorised_bootstrap_matches_sklearn_exactly_with_ties():
    y, s = _noisy(150, 0.15, 0)
    s = np.round(s, 2)  # many ties
    for fast, slow in (
        ("ap", lambda a, b: average_precision_score(a, b)),
        ("roc_auc", lambda a, b: roc_auc_score(a, b)),
    ):
        got = bootstrap_ci(y, s, fast, n_boot=60, seed=3)
        want = bootstrap_ci(y, s, slow, n_boot=60, seed=3)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_bootstrap_ci_contains_point_and_narrows_with_more_data():
    y1, s1 = _noisy(300, 0.1, 1)
    y2, s2 = _noisy(6000, 0.1, 1)
    p1, lo1, hi1 = bootstrap_ci(y1, s1, n_boot=400)
    p2, lo2, hi2 = bootstrap_ci(y2, s2, n_boot=400)
    assert lo1 <= p1 <= hi1 and lo2 <= p2 <= hi2
    assert hi2 - lo2 < 0.5 * (hi1 - lo1)
    p, lo, hi = bootstrap_ci(y1, s1, roc_auc, n_boot=400)
    assert lo <= p <= hi


def test_stratified_replicates_keep_both_classes_and_counts():
    y = np.array([1] + [0] * 49)
    s = np.linspace(0, 1, 50)
    seen = []

    def spy(yy, ss):
        seen.append((int(yy.sum()), len(yy)))
        return float(ss[yy == 1].mean())

    bootstrap_ci(y, s, spy, n_boot=200, seed=0)
    assert len(seen) == 201  # the point estimate + 200 replicates
    assert set(seen) == {(1, 50)}


def test_unstratified_bootstrap_drops_single_class_replicates():
    y = np.array([1] + [0] * 29)
    s = np.linspace(0, 1, 30)
    _, lo, hi = bootstrap_ci(y, s, n_boot=200, stratified=False)
    assert np.isfinite([lo, hi]).all()


def test_bootstrap_is_seeded_and_fast():
    y, s = _noisy(300, 0.1, 2)
    t0 = time.perf_counter()
    a = bootstrap_ci(y, s, n_boot=1000, seed=7)
    assert time.perf_counter() - t0 < 2.0
    assert a == bootstrap_ci(y, s, n_boot=1000, seed=7)
    assert a != bootstrap_ci(y, s, n_boot=1000, seed=8)


def test_bootstrap_bad_arguments():
    y, s = _noisy(50, 0.3, 0)
    with pytest.raises(ConfigError, match="unknown metric 'f2'"):
        bootstrap_ci(y, s, "f2")
    with pytest.raises(ConfigError, match="alpha"):
        bootstrap_ci(y, s, alpha=1.5)
    with pytest.raises(ConfigError, match="n_boot"):
        bootstrap_ci(y, s, n_boot=0)


def test_evaluate_scores_combines_everything():
    y, s = _noisy(400, 0.1, 4)
    r = evaluate_scores(y, s, 0.5, n_boot=100)
    for k in ("ap", "ap_ci", "roc_auc", "roc_auc_ci", "precision", "recall", "f1", "mcc",
              "balanced_accuracy", "g_mean", "specificity", "accuracy",
              "always_negative_accuracy", "tp", "fp", "tn", "fn", "positive_rate",
              "recall_at_precision", "precision_at_recall"):
        assert k in r, k
    assert r["ap_ci"][0] <= r["ap"] <= r["ap_ci"][1]
    assert r["ci_level"] == pytest.approx(0.95)
    json.dumps(r)


# ================================================================================ threshold
@pytest.mark.parametrize(
    "text, rule",
    [
        ("max-f1", ThresholdRule("max-f1")),
        (" MAX_F1 ", ThresholdRule("max-f1")),
        ("recall>=0.95", ThresholdRule("recall", 0.95)),
        ("precision >= 0.9", ThresholdRule("precision", 0.9)),
        ("fbeta:2", ThresholdRule("fbeta", 2.0)),
        ("fixed:0.5", ThresholdRule("fixed", 0.5)),
    ],
)
def test_parse_threshold_rule(text, rule):
    assert parse_threshold_rule(text) == rule
    assert parse_threshold_rule(str(rule)) == rule


@pytest.mark.parametrize("text", ["best", "recall>=1.5", "precision>=0", "fbeta:0", "fixed:2",
                                  "recall>0.9", ""])
def test_parse_threshold_rule_errors_list_valid_forms(text):
    with pytest.raises(ConfigError) as exc:
        parse_threshold_rule(text)
    msg = str(exc.value)
    assert repr(text) in msg
    if text in ("best", "recall>0.9", ""):
        assert "max-f1" in msg and "recall>=" in msg and "fixed:" in msg


def test_max_f1_picks_the_f1_maximising_threshold():
    y = [1, 1, 0, 1, 0, 0]
    s = [0.9, 0.8, 0.7, 0.6, 0.3, 0.1]
    c = tune_threshold(y, s, "max-f1")
    assert c.threshold == 0.6
    assert c.achieved["f1"] == pytest.approx(6 / 7)
    assert c.feasible
    # brute force agrees on random data
    yy, ss = _noisy(300, 0.2, 5)
    c = tune_threshold(yy, ss, "max-f1")
    assert c.achieved["f1"] == pytest.approx(_all_cuts(yy, ss)["f1"].max())
    assert c.achieved["f1"] == pytest.approx(f1_score(yy, ss >= c.threshold))


def test_fbeta_favours_recall():
    y, s = _noisy(500, 0.1, 6)
    assert tune_threshold(y, s, "fbeta:3").threshold <= tune_threshold(y, s, "max-f1").threshold


def test_recall_rule_is_met_on_validation_with_best_precision():
    y, s = _noisy(800, 0.1, 7)
    c = tune_threshold(y, s, "recall>=0.95")
    assert c.feasible and c.achieved["recall"] >= 0.95
    cuts = _all_cuts(y, s)
    best = cuts["precision"][cuts["recall"] >= 0.95].max()
    assert c.achieved["precision"] == pytest.approx(best)


def test_infeasible_precision_is_flagged():
    y = [0, 0, 1, 0, 1]
    s = [0.9, 0.8, 0.7, 0.6, 0.5]
    c = tune_threshold(y, s, "precision>=0.9")
    assert not c.feasible
    assert "precision" in c.note and "0.9" in c.note
    assert c.threshold == 0.5 and c.achieved["precision"] == pytest.approx(0.4)


def test_feasible_precision_maximises_recall():
    y, s = _noisy(800, 0.1, 8, sep=3.0)
    c = tune_threshold(y, s, "precision>=0.8")
    assert c.feasible and c.achieved["precision"] >= 0.8
    cuts = _all_cuts(y, s)
    assert c.achieved["recall"] == pytest.approx(cuts["recall"][cuts["precision"] >= 0.8].max())


def test_tuning_uses_only_the_arrays_passed():
    y, s = _noisy(400, 0.1, 9)
    c = tune_threshold(y, s, "max-f1")
    assert c.threshold in set(s.tolist())  # a validation score, nothing else
    assert c.achieved == threshold_metrics(y, s, c.threshold)
    # the same arrays give the same answer whatever else exists
    _ = _noisy(400, 0.1, 10)
    assert tune_threshold(list(y), list(s), "max-f1") == c
    fixed = tune_threshold(y, s, "fixed:0.3")
    assert fixed.threshold == 0.3 and fixed.feasible


def test_few_positives_note():
    c = tune_threshold([0, 0, 1, 0, 1], [0.1, 0.2, 0.9, 0.3, 0.8], "max-f1")
    assert "only 2 validation positives" in c.note


def test_threshold_choice_json_round_trip():
    y, s = _noisy(200, 0.2, 11)
    c = tune_threshold(y, s, "recall>=0.9")
    d = json.loads(json.dumps(c.to_dict()))
    assert ThresholdChoice.from_dict(d) == c


def test_threshold_table():
    y, s = _noisy(500, 0.1, 12)
    rows = threshold_table(y, s, [0.9, 0.1, 0.5, 0.5])
    assert [r["threshold"] for r in rows] == [0.1, 0.5, 0.9]
    assert rows[0]["recall"] >= rows[1]["recall"] >= rows[2]["recall"]
    assert rows[0]["flagged_rate"] >= rows[2]["flagged_rate"]
    assert {"precision", "recall", "f1", "flagged_rate", "tp", "fp", "fn"} <= set(rows[0])
    assert len(threshold_table(y, s)) > 10
    for r in threshold_table(y, s, [0.0, 0.05, float(s[3]), 0.5, 1.0]):
        m = threshold_metrics(y, s, r["threshold"])
        for k in ("precision", "recall", "f1", "flagged_rate", "tp", "fp", "fn"):
            assert r[k] == pytest.approx(m[k]), k


# ============================================================================== calibration
def test_prior_shift_correction_after_balanced_training():
    X, y = make_classification(n_samples=12000, n_features=10, n_informative=4, weights=[0.95],
                               random_state=0)
    Xtr, ytr, Xte, yte = X[:6000], y[:6000], X[6000:], y[6000:]
    rng = np.random.default_rng(0)
    pos = np.flatnonzero(ytr == 1)
    neg = rng.choice(np.flatnonzero(ytr == 0), len(pos), replace=False)
    idx = np.r_[pos, neg]
    clf = LogisticRegression(max_iter=1000).fit(Xtr[idx], ytr[idx])
    p = clf.predict_proba(Xte)[:, 1]
    train_prior = effective_train_prior(ytr.mean(), sampling_ratio=1.0)
    assert train_prior == pytest.approx(0.5)
    q = prior_shift_correct(p, train_prior, ytr.mean())
    assert abs(p.mean() - yte.mean()) > 0.2  # balanced training inflates probabilities
    assert abs(q.mean() - yte.mean()) < 0.02
    assert brier(yte, q) < 0.5 * brier(yte, p)
    assert roc_auc(yte, q) == pytest.approx(roc_auc(yte, p))  # monotone: ranking unchanged


def test_prior_shift_formula_and_edges():
    p = np.array([0.0, 0.2, 0.5, 0.9, 1.0])
    np.testing.assert_allclose(prior_shift_correct(p, 0.3, 0.3), p)
    q = prior_shift_correct(p, 0.5, 0.1)
    odds = (p[1:4] / (1 - p[1:4])) * (0.1 / 0.9)
    np.testing.assert_allclose(q[1:4], odds / (1 + odds))
    assert q[0] == 0.0 and q[-1] == 1.0
    back = prior_shift_correct(q, 0.1, 0.5)
    np.testing.assert_allclose(back, p, atol=1e-12)
    with pytest.raises(ConfigError, match="train_prior"):
        prior_shift_correct(p, 0.0, 0.1)
    with pytest.raises(DataError, match="logits"):
        prior_shift_correct([0.5, 3.0], 0.5, 0.1)


def test_effective_train_prior():
    assert effective_train_prior(0.02, balanced_sampler=True) == 0.5
    assert effective_train_prior(0.02, class_weight="balanced") == 0.5
    assert effective_train_prior(0.1, class_weight={0: 1.0, 1: 9.0}) == pytest.approx(0.5)
    assert effective_train_prior(0.02, sampling_ratio=0.25) == pytest.approx(0.2)
    assert effective_train_prior(0.02) == 0.02
    with pytest.raises(ConfigError, match="class_weight"):
        effective_train_prior(0.1, class_weight={1: 2.0})


@pytest.mark.parametrize("method", ["none", "platt", "isotonic"])
def test_calibrator_json_round_trip_is_exact(method):
    y, s = _noisy(600, 0.1, 13)
    cal = fit_calibrator(method, y, s)
    d = json.loads(json.dumps(cal.to_dict()))
    again = Calibrator.from_dict(d)
    grid = np.r_[np.linspace(0, 1, 101), s]
    assert np.array_equal(cal.transform(grid), again.transform(grid))
    assert again == cal


def test_isotonic_matches_sklearn_and_platt_improves_brier():
    y, s = _noisy(1500, 0.1, 14)
    cal = fit_calibrator("isotonic", y, s)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(s, y)
    grid = np.linspace(0, 1, 57)
    np.testing.assert_allclose(cal.transform(grid), iso.predict(grid), atol=1e-12)
    bad = s ** 0.3  # badly over-confident towards positive
    platt = fit_calibrator("platt", y, bad)
    assert brier(y, platt.transform(bad)) < brier(y, bad)
    assert expected_calibration_error(y, platt.transform(bad)) < expected_calibration_error(y, bad)


def test_calibrator_errors():
    with pytest.raises(ConfigError, match="unknown calibration method 'beta'.*platt"):
        fit_calibrator("beta", [0, 1], [0.1, 0.9])
    with pytest.raises(ConfigError, match="'a'"):
        Calibrator.from_dict({"method": "platt", "params": {"b": 1.0}})
    with pytest.raises(ConfigError, match="equal-length"):
        Calibrator.from_dict({"method": "isotonic", "params": {"x": [0, 1], "y": [0]}})


def test_brier_reliability_ece_hand_computed():
    assert brier([1, 0], [0.8, 0.4]) == pytest.approx(0.1)
    y = [0, 0, 1, 1]
    p = [0.1, 0.1, 0.9, 0.9]
    rc = reliability_curve(y, p, n_bins=10)
    assert rc["count"] == [2, 2]
    np.testing.assert_allclose(rc["prob_true"], [0, 1])
    assert expected_calibration_error(y, p) == pytest.approx(0.1)


# ==================================================================================== plots
def _assert_png_not_blank(data: bytes) -> None:
    im = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=float)
    assert im.shape[0] > 100 and im.shape[1] > 100
    assert im.std() > 5, "blank figure"
    assert (im < 200).mean() > 0.001, "no ink"


def test_every_plot_function_draws(tmp_path: Path):
    y, s = _noisy(400, 0.1, 15)
    y2, s2 = _noisy(300, 0.2, 16)
    arr = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    good = tmp_path / "good.png"
    Image.fromarray(arr).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    figs = [
        plot_pr_curve(y, s, threshold=0.5, label="model $x$ <b>"),
        plot_pr_curves({"a": (y, s), "b": (y2, s2)}, thresholds={"a": 0.4}),
        plot_roc_curve(y, s, threshold=0.5),
        plot_roc_curves({"a": (y, s), "b": (y2, s2)}),
        plot_score_histograms(y, s, 0.5),
        plot_score_histograms(y, s, 0.5, log=False),
        plot_reliability(y, s),
        plot_reliability(y, s, fit_calibrator("platt", y, s).transform(s)),
        plot_image_grid([(good, "good $5"), (broken, "broken"), (arr, "array"),
                         (tmp_path / "missing.png", "missing")]),
        plot_image_grid([]),
    ]
    for fig in figs:
        _assert_png_not_blank(figure_to_png(fig))


def test_image_grid_shows_errors_as_tiles(tmp_path: Path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    fig = plot_image_grid([(broken, "x"), (np.zeros((2, 2)), "tiny gray"), (np.zeros(5), "bad")])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("cannot show" in t for t in texts)
    assert any("shape" in t for t in texts)


def test_save_wrappers_write_pngs_atomically(tmp_path: Path):
    y, s = _noisy(300, 0.1, 17)
    outs = [
        save_pr_curve(tmp_path / "pr.png", y, s),
        save_pr_curves(tmp_path / "prs.png", {"m": (y, s)}),
        save_roc_curve(tmp_path / "roc.png", y, s),
        save_roc_curves(tmp_path / "rocs.png", {"m": (y, s)}),
        save_score_histograms(tmp_path / "sub" / "hist.png", y, s, 0.5),
        save_reliability(tmp_path / "rel.png", y, s),
        save_image_grid(tmp_path / "grid.png", [(np.full((8, 8, 3), 90, np.uint8), "c")]),
    ]
    for p in outs:
        _assert_png_not_blank(p.read_bytes())
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_plot_bad_curves_argument():
    with pytest.raises(ConfigError, match="curves"):
        plot_pr_curves([])  # type: ignore[arg-type]


# =================================================================================== report
_EVIL = "<script>alert('x')</script>"


def _external_refs(page: str) -> list[str]:
    bad = re.findall(r"""(?:src|href)\s*=\s*["']?(?!data:|#)[^"'\s>]+""", page, re.I)
    bad += re.findall(r"url\(\s*['\"]?(?!data:)", page, re.I)
    bad += re.findall(r"@import|<link\b|<iframe\b|<object\b|<embed\b", page, re.I)
    return bad


def test_report_is_self_contained_and_escaped(tmp_path: Path):
    y, s = _noisy(200, 0.2, 18)
    rep = Report(f"Find {_EVIL}", subtitle=_EVIL)
    rep.add_heading(f"Class {_EVIL}")
    rep.add_text(f"The class **{_EVIL}** in `{_EVIL}`.\n\n- item {_EVIL}\n- two")
    rep.add_callout(_EVIL, "warning")
    rep.add_cards([(_EVIL, 0.5, _EVIL)])
    rep.add_table([{"class": _EVIL, "ap": 0.81234, "n": 12, "ok": True, "none": None}],
                  caption=_EVIL)
    rep.add_table([[_EVIL, 1.0]], header=["name", _EVIL], highlight_rows=[0])
    rep.add_image(plot_pr_curve(y, s), caption=_EVIL)
    png = figure_to_png(plot_roc_curve(y, s))
    rep.add_images([(png, "roc"), (png, "roc again")])
    path = tmp_path / "r.png"
    path.write_bytes(png)
    rep.add_image(path, "from a file")
    rep.add_code({"classes": ["ok", _EVIL], "root": Path("/data")}, caption=_EVIL)
    out = rep.save(tmp_path / "report.html")
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert _external_refs(page) == []
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 4
    for u in uris:
        _assert_png_not_blank(base64.b64decode(u))
    assert "0.812" in page and "<strong>" in page and "<li>" in page
    assert "Content-Security-Policy" in page
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_report_rejects_non_images(tmp_path: Path):
    rep = Report("t")
    with pytest.raises(ConfigError, match="PNG"):
        rep.add_image(b"<svg onload=alert(1)>")
    with pytest.raises(DataError, match="cannot read"):
        rep.add_image(tmp_path / "missing.png")
    with pytest.raises(ConfigError, match="row 0 has 1 cells"):
        rep.add_table([[1]], header=["a", "b"])


def _fake_images(folder: Path, n: int, y: np.ndarray) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"img_{i:03d}_{'pos' if y[i] else 'neg'}.png"
        arr = rng.integers(60, 200, (24, 24, 3), dtype=np.uint8)
        if y[i]:
            arr[10:14] = 0
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    return paths


def test_build_run_report(tmp_path: Path):
    yv, sv = _noisy(300, 0.1, 19)
    yt, st = _noisy(300, 0.1, 20)
    raw = np.clip(st * 1.6, 0, 1)
    paths = _fake_images(tmp_path / "imgs", len(yt), yt)
    # the worst false positive is a corrupt file: it must become a grey tile, not a crash
    choice = tune_threshold(yv, sv, "max-f1")
    fp = np.flatnonzero((yt == 0) & (st >= choice.threshold))
    Path(paths[fp[np.argmax(st[fp])]]).write_bytes(b"garbage")
    cal = fit_calibrator("platt", yv, sv)
    run_grid = save_image_grid(tmp_path / "grid.png", [(paths[0], "a"), (paths[1], "b")])
    run = tmp_path / "run"
    out = build_run_report(
        run,
        {
            "test": {"y": yt, "score": st, "score_uncalibrated": raw, "paths": paths},
            "val": {"y": yv.tolist(), "score": sv.tolist()},
            "threshold": choice.to_dict(),
            "calibration": {"method": "platt", "calibrator": cal.to_dict()},
            "name": f"focal {_EVIL}",
            "notes": ["a note"],
        },
        {"data": {"classes": ["ok", _EVIL]}, "seed": 0},
        images={f"Copy-paste {_EVIL}": [(paths[0], "example"), (tmp_path / "nope.png", "gone")],
                "ready-made grid": [(run_grid, "a saved grid, embedded as is")]},
        n_boot=100,
    )
    assert out == run / "report.html"
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page.lower() and _external_refs(page) == []
    assert "&lt;script&gt;" in page
    for text in ("Average precision", "95% CI", "always negative", "Confusion matrix",
                 "Threshold", "Calibration", "Brier", "Worst false negatives",
                 "Worst false positives", "Configuration", "max-f1", "a note"):
        assert text in page, text
    pngs = sorted(p.name for p in (run / "plots").glob("*.png"))
    for stem in ("pr_curve", "roc_curve", "score_histograms", "reliability"):
        assert f"{stem}.png" in pngs
    # false negatives/positives: click-to-enlarge JPEG thumbnails; the corrupt file says so
    assert page.count("data:image/jpeg;base64,") >= 2 and "cannot show this image" in page
    assert any(n.startswith("examples_") for n in pngs)
    assert page.count("data:image/png;base64,") == len(pngs) + 1  # + the ready-made grid
    assert base64.b64encode(run_grid.read_bytes()).decode() in page
    assert "a saved grid, embedded as is" in page
    for p in (run / "plots").glob("*.png"):
        _assert_png_not_blank(p.read_bytes())
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def test_build_run_report_minimal_and_errors(tmp_path: Path):
    y, s = _noisy(120, 0.2, 21)
    out = build_run_report(tmp_path / "r", {"test": {"y": y, "score": s}}, {}, n_boot=50)
    page = out.read_text(encoding="utf-8")
    assert "0.5 was used" in page and "results[&#x27;test&#x27;][&#x27;paths&#x27;]" in page
    with pytest.raises(ConfigError, match="'test'"):
        build_run_report(tmp_path / "x", {"val": {"y": y, "score": s}}, {})
    with pytest.raises(DataError, match="single class"):
        build_run_report(tmp_path / "x", {"test": {"y": [1] * 5, "score": [0.1] * 5}}, {})
    neg_only = build_run_report(tmp_path / "n", {"test": {"y": [0] * 5, "score": [0.1] * 4 + [0.9]}}, {})
    page = neg_only.read_text(encoding="utf-8")  # no positive: the false alarms, and why nothing more
    assert "holds no positive" in page and "False-alarm rate" in page and "0.2000" in page
    with pytest.raises(DataError, match="paths"):
        build_run_report(tmp_path / "x", {"test": {"y": y, "score": s, "paths": ["a"]}}, {})


def test_run_report_with_heat_maps_shows_the_objects_found(tmp_path: Path):
    """With a heat-map hook the report shows the found positives (highest scores first) beside the misses."""
    y = np.array([0] * 14 + [1] * 6)
    s = np.array([0.05 * i for i in range(14)] + [0.95, 0.2, 0.9, 0.7, 0.1, 0.8])  # threshold 0.5 fixed below
    paths = _fake_images(tmp_path / "imgs", len(y), y)
    shown: list[str] = []

    def heat(path: str) -> np.ndarray:
        shown.append(Path(path).name)
        return np.asarray(Image.open(path).convert("RGB"))

    page = build_run_report(tmp_path / "run", {"test": {"y": y, "score": s, "paths": paths, "heatmap": heat},
                                               "threshold": 0.5}, {}, n_boot=0).read_text(encoding="utf-8")
    found = [Path(paths[i]).name for i in (14, 16, 19, 17)]  # positives scored >= 0.5, highest first
    missed = [Path(paths[i]).name for i in (18, 15)]  # positives below 0.5, lowest first
    false_alarms = [Path(paths[i]).name for i in (13, 12, 11, 10)]  # negatives >= 0.5, highest first
    assert "Objects found" in page
    assert shown == found + missed + false_alarms
    assert page.index("Objects found") < page.index(found[0]) < page.index("Worst false negatives")
    # without a hook (a global head) the section is left out: it would repeat the scores table
    plain = build_run_report(tmp_path / "run2", {"test": {"y": y, "score": s, "paths": paths}, "threshold": 0.5},
                             {}, n_boot=0).read_text(encoding="utf-8")
    assert "Objects found" not in plain and "Worst false negatives" in plain
