"""Compare statistics: the split is the unit, the corrected resampled t-test, Holm, and a
recommendation that agrees with its own table (issue 12 §1–§2)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import average_precision_score

from imbvision.data.splits import Split
from imbvision.errors import ConfigError
from imbvision.workflows.compare import BASELINE, _aggregate
from imbvision.experiments.recommendation import recommend as _recommend
from imbvision.experiments.stats import (
    compare_to_baseline,
    corrected_ttest,
    few_splits_note,
    holm,
    holm_levels,
    mean_ci,
    min_exact_p,
)

# The demo's split sizes: 600 images, 20% validation, 20% test.
N_TRAIN, N_TEST = 360, 120


def test_corrected_ttest_by_hand():
    d = np.array([0.02, -0.01, 0.05, 0.03, 0.00, 0.04])
    r = corrected_ttest(d, N_TRAIN, N_TEST)
    factor = 1 / 6 + N_TEST / N_TRAIN
    se = d.std(ddof=1) * np.sqrt(factor)
    t = d.mean() / se
    assert r["factor"] == pytest.approx(factor)
    assert r["t"] == pytest.approx(t)
    assert r["p"] == pytest.approx(2 * sps.t.sf(abs(t), 5))
    q = sps.t.ppf(0.975, 5)
    assert r["ci"] == pytest.approx([d.mean() - q * se, d.mean() + q * se])


def test_uncorrected_equals_scipy_paired_t():
    rng = np.random.default_rng(0)
    d = rng.normal(0.01, 0.03, 8)
    r = corrected_ttest(d, None, None)
    assert r["p"] == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue)


def test_issue_demo_weighted_ce_is_not_beyond_noise():
    # Issue 12: per-split ΔAP [−0.017, −0.028, −0.091] printed "p 0.0045" (9 × the bootstrap floor 1/2000).
    d = [-0.017, -0.028, -0.091]
    naive = corrected_ttest(d, None, None)
    assert naive["p"] == pytest.approx(0.188, abs=1e-3)  # the plain paired t over splits of the issue
    r = corrected_ttest(d, N_TRAIN, N_TEST)
    # Corrected: se × √((1/3 + 1/3) / (1/3)) = √2 larger; t = −1.39, df 2.
    assert r["t"] == pytest.approx(naive["t"] / np.sqrt(2))
    assert r["p"] == pytest.approx(2 * sps.t.sf(abs(naive["t"]) / np.sqrt(2), 2))
    assert r["p"] > 0.29
    fam = compare_to_baseline({"weighted-ce": d, **{f"s{i}": [0.01 * i, -0.01, 0.02] for i in range(8)}},
                              n_train=N_TRAIN, n_test=N_TEST)
    assert fam["weighted-ce"]["p_holm"] == 1.0 and not fam["weighted-ce"]["beyond_noise"]


def test_no_p_value_sits_on_a_floor():
    # Huge, consistent effects: the t-test's p keeps shrinking with the evidence; nothing clamps it at 1/n_boot.
    p3 = corrected_ttest([0.30, 0.31, 0.29], N_TRAIN, N_TEST)["p"]
    p10 = corrected_ttest(np.linspace(0.29, 0.31, 10), N_TRAIN, N_TEST)["p"]
    assert 0 < p10 < p3 < 0.01
    assert p3 != pytest.approx(1 / 2000) and p10 < 1 / 2000


def test_degenerate_differences():
    same = corrected_ttest([0.0, 0.0, 0.0], N_TRAIN, N_TEST)
    assert same["p"] == 1.0 and same["ci"] is None and "identical AP" in same["note"]
    fam = compare_to_baseline({"twin": [0.0, 0.0, 0.0]}, n_train=N_TRAIN, n_test=N_TEST)["twin"]
    assert fam["decision_ci"] is None and not fam["beyond_noise"] and fam["p_holm"] == 1.0
    const = corrected_ttest([0.1, 0.1, 0.1], N_TRAIN, N_TEST)
    assert const["p"] is None and const["ci"] is None and "same difference" in const["note"]
    one = corrected_ttest([0.1], N_TRAIN, N_TEST)
    assert one["p"] is None and "one split" in one["note"]


def test_few_splits_said_plainly():
    assert min_exact_p(3) == 0.25 and min_exact_p(5) == 0.0625 and min_exact_p(10) == pytest.approx(0.001953125)
    note = few_splits_note(3)
    assert "3 paired splits" in note and "0.25" in note
    assert few_splits_note(10) is None and few_splits_note(6) is None
    assert "no test" in few_splits_note(1)


def test_mean_ci_corrected_and_never_zero_width():
    v = [0.5, 0.6, 0.7]
    m, sd, lo, hi = mean_ci(v)
    _, _, clo, chi = mean_ci(v, n_train=N_TRAIN, n_test=N_TEST)
    assert m == pytest.approx(0.6) and lo < m < hi
    assert (chi - clo) == pytest.approx(np.sqrt(2) * (hi - lo))
    assert mean_ci([0.4]) == (0.4, 0.0, None, None)
    assert mean_ci([1.0, 1.0, 1.0], n_train=N_TRAIN, n_test=N_TEST) == (1.0, 0.0, None, None)


def test_holm():
    assert holm([0.01, 0.04, None, 0.03]) == [0.03, 0.06, None, 0.06]


def test_decision_interval_agrees_with_holm_decision():
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(300):
        k = int(rng.integers(3, 12))
        deltas = {f"s{j}": rng.normal(rng.choice([0.0, 0.02, 0.05]), 0.03, k) for j in range(5)}
        res = compare_to_baseline(deltas, n_train=N_TRAIN, n_test=N_TEST)
        for r in res.values():
            lo, hi = r["decision_ci"]
            assert r["beyond_noise"] == (lo > 0 or hi < 0)
            assert r["decision_level"] >= 0.95 and lo <= r["ci"][0] and hi >= r["ci"][1]
            seen.add(r["beyond_noise"])
    assert seen == {True, False}
    # Holm's levels: 0.05/m for the smallest p, growing while hypotheses are rejected, then frozen.
    assert holm_levels([0.001, 0.2, 0.01, None]) == pytest.approx([0.05 / 3, 0.05 / 1, 0.05 / 2, None])
    assert holm_levels([0.001, 0.03, 0.04]) == pytest.approx([0.05 / 3, 0.05 / 2, 0.05 / 2])


# ----------------------------------------------------------------------------- aggregation on stored cells
def _fake_run(ap_like: dict[str, float], k: int = 10, n: int = 500, seed: int = 0):
    """Cells of a fake compare run: strategy scores = label signal × strength + noise, full float64."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(np.int64)
    splits, cells = [], {}
    for s in range(k):
        perm = rng.permutation(n)
        sp = Split(train=perm[:300], val=perm[300:400], test=perm[400:])
        splits.append((s, None, sp))
        for name, strength in ap_like.items():
            score = 1 / (1 + np.exp(-(strength * y[sp.test] + rng.normal(0, 1, len(sp.test)))))
            cells[(name, s, None)] = {
                "strategy": name, "seed": s, "fold": None, "head": "logreg", "test_index": sp.test.tolist(),
                "test_score": score.tolist(), "ap": float(average_precision_score(y[sp.test], score)),
                "f1": 0.5, "mcc": 0.4, "recall": 0.5, "precision": 0.5, "timing": {"fit_seconds": 0.1},
            }
    return names_of(ap_like), splits, cells, y


def names_of(d):
    return [BASELINE] + [n for n in d if n != BASELINE]


def test_delta_equals_difference_of_ap_means_and_ap_column_is_stored_scores():
    names, splits, cells, y = _fake_run({BASELINE: 1.5, "good": 3.0, "same": 1.5, "bad": 0.5})
    rows, rec = _aggregate(names, splits, cells, y, n_boot=0)
    by = {r["strategy"]: r for r in rows}
    for r in rows:
        stored = [average_precision_score(y[np.asarray(cells[(r["strategy"], s, f)]["test_index"])],
                                          cells[(r["strategy"], s, f)]["test_score"]) for s, f, _ in splits]
        assert r["ap_mean"] == pytest.approx(np.mean(stored), abs=1e-12)
        if r["strategy"] != BASELINE:
            assert r["delta_ap"] == pytest.approx(r["ap_mean"] - by[BASELINE]["ap_mean"], abs=1e-9)
    assert by["good"]["beyond_noise"] and by["good"]["delta_ap"] > 0
    assert by["bad"]["beyond_noise"] and by["bad"]["delta_ap"] < 0
    assert rec.startswith("Use good")
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and rows[0]["strategy"] == "good"


def test_recommendation_agrees_with_table_when_baseline_ranks_first():
    # Issue 12: with ce ranked above weighted-ce the text said "the best, weighted-ce, has ΔAP −0.014".
    names, splits, cells, y = _fake_run({BASELINE: 2.0, "weighted-ce": 1.9}, k=3, seed=1)
    rows, rec = _aggregate(names, splits, cells, y, n_boot=0)
    assert rows[0]["strategy"] == BASELINE, "fixture: the baseline must rank first"
    wce = rows[1]
    assert "the best, weighted-ce" not in rec
    assert f"the plain baseline {BASELINE} ranks first" in rec
    assert f"the best remedy, weighted-ce, ranks 2 with AP {wce['ap_mean']:.3f}" in rec
    assert f"ΔAP {wce['delta_ap']:+.3f}" in rec and wce["delta_ap"] < 0
    assert "with 3 splits no exact distribution-free test can give p below 0.25" in rec


def test_interval_beside_decision_is_the_one_behind_it():
    names, splits, cells, y = _fake_run({BASELINE: 1.5, "good": 3.0, "bad": 0.4, "same": 1.5})
    rows, rec = _aggregate(names, splits, cells, y, n_boot=0)
    for r in rows:
        if r["strategy"] == BASELINE:
            continue
        lo, hi = r["delta_ci"]
        assert r["beyond_noise"] == (lo > 0 or hi < 0)
    good = next(r for r in rows if r["strategy"] == "good")
    m = re.search(r"Use good.*?ΔAP ([+-]\d\.\d+), ([\d.]+)% CI ([+-]\d\.\d+) to ([+-]\d\.\d+)", rec)
    assert m, rec
    assert float(m.group(1)) == round(good["delta_ap"], 3)
    assert float(m.group(2)) == pytest.approx(100 * good["delta_ci_level"], abs=0.05)
    assert (float(m.group(3)), float(m.group(4))) == (round(good["delta_ci"][0], 3), round(good["delta_ci"][1], 3))


def test_recommend_never_calls_noise_a_winner():
    rows = [
        {"strategy": "x", "rank": 1, "ap_mean": 0.6, "recall": 0.3, "precision": 0.5, "cells": 10,
         "delta_ap": 0.2, "delta_ci": [-0.01, 0.41], "delta_ci_level": 0.9875, "p_holm": 0.06, "beyond_noise": False},
        {"strategy": BASELINE, "rank": 2, "ap_mean": 0.4, "recall": 0.3, "precision": 0.5, "cells": 10},
    ]
    rec = _recommend(rows)
    assert rec.startswith("No remedy beats the baseline beyond noise") and "Use x" not in rec
    assert "the top-ranked remedy, x" in rec and "98.8% CI -0.010 to +0.410" in rec


def test_ranking_score_keeps_confident_scores_apart():
    """Probabilities saturate at 1.0 in float64 (logit > 37) and tie; the stored logit does not (issue 12 §2)."""
    from types import SimpleNamespace

    from scipy.special import expit

    from imbvision.evaluation import prior_shift_correct
    from imbvision.experiments.cell import ranking_score

    z = np.array([40.0, 45.0, 50.0, 2.0, -3.0])
    post = SimpleNamespace(train_prior=0.5, true_prior=0.05, prior_correction=True,
                           uncalibrated=lambda p: prior_shift_correct(p, 0.5, 0.05))
    fit = SimpleNamespace(head=SimpleNamespace(decision_function=lambda X: z))
    p = expit(z)
    s = ranking_score(fit, np.zeros((5, 1)), np.arange(5), p, post)
    assert len(np.unique(post.uncalibrated(p))) == 3  # the three confident scores tie at 1.0
    assert len(np.unique(s)) == 5 and np.all(np.diff(np.argsort(-s)) != 0)
    np.testing.assert_allclose(expit(s), post.uncalibrated(p), rtol=1e-12)  # same score, logit scale
    y = np.array([1, 0, 1, 1, 0])
    assert average_precision_score(y, s) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)  # ranked 50, 45, 40, 2, −3


# ----------------------------------------------------------------------------- declared primary comparison
def test_primary_is_tested_at_full_level_and_gates_the_others():
    from imbvision.experiments.stats import seeds_to_decide  # noqa: F401 - exported
    k = 10
    fac = 1 / k + N_TEST / N_TRAIN
    # Built so the unadjusted p of "main" lies between alpha/2 and alpha: Holm over two says noise,
    # the declared primary comparison says beyond noise.
    base = np.array([1.0, -1.0] * 5)
    t_target = sps.t.ppf(1 - 0.035 / 2, k - 1)
    sd = base.std(ddof=1)
    mean = t_target * sd * np.sqrt(fac)
    deltas = {"main": mean + base, "other": np.array([0.3, -0.2] * 5)}
    holm_res = compare_to_baseline(deltas, n_train=N_TRAIN, n_test=N_TEST)
    assert holm_res["main"]["p"] == pytest.approx(0.035, rel=1e-6)
    assert not holm_res["main"]["beyond_noise"] and holm_res["main"]["gate"] is None
    prim = compare_to_baseline(deltas, n_train=N_TRAIN, n_test=N_TEST, primary="main")
    m, o = prim["main"], prim["other"]
    assert m["beyond_noise"] and m["p_holm"] == pytest.approx(m["p"]) and m["decision_level"] == pytest.approx(0.95)
    assert m["decision_ci"][0] > 0 and m["gate"] == "primary"
    # the other is tested only after the primary, with an adjusted p never below the primary's
    assert o["gate"] == "after primary" and o["p_holm"] >= m["p"] and not o["beyond_noise"]
    # primary not beyond noise: the others are not tested, whatever their own p
    gated = compare_to_baseline({"main": np.array([0.01, -0.01] * 5), "strong": 0.2 + base * 0.01},
                                n_train=N_TRAIN, n_test=N_TEST, primary="main")
    assert not gated["main"]["beyond_noise"]
    assert gated["strong"]["p"] < 1e-6 and not gated["strong"]["beyond_noise"]
    assert gated["strong"]["decision_ci"] is None and "primary comparison (main)" in gated["strong"]["note"]
    with pytest.raises(ConfigError, match="primary strategy 'nope' is not among"):
        compare_to_baseline(deltas, n_train=N_TRAIN, n_test=N_TEST, primary="nope")


def test_primary_procedure_controls_family_wise_error_in_simulation():
    from imbvision.experiments.simulation import simulate_comparisons
    null = {"a": 0.0, "b": 0.0, "c": 0.0}
    res = simulate_comparisons(null, splits=10, reps=300, seed=5, primary="a")
    assert float(np.mean([any(r[n]["beyond_noise"] for n in r) for r in res])) <= 0.05
    # and it gives the declared question more power than Holm over the whole family
    eff = {"better": 0.6, "t1": 0.0, "t2": 0.0, "t3": 0.0}
    p = simulate_comparisons(eff, splits=10, reps=300, seed=6, primary="better")
    h = simulate_comparisons(eff, splits=10, reps=300, seed=6)
    assert np.mean([r["better"]["beyond_noise"] for r in p]) > np.mean([r["better"]["beyond_noise"] for r in h]) + 0.1


def test_kfold_design_every_item_tested_once_per_repeat_and_calibrated():
    from imbvision.experiments.simulation import SimSettings, _kfold_tests, simulate_comparisons
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.15).astype(int)
    parts = _kfold_tests(rng, SimSettings(), y, 5)
    assert sorted(np.concatenate(parts).tolist()) == list(range(300))
    assert max(p.size for p in parts) - min(p.size for p in parts) <= 2
    assert all(abs(y[p].sum() - y.sum() / 5) <= 1 for p in parts)  # stratified
    res = simulate_comparisons({"a": 0.0, "b": 0.0}, splits=10, reps=300, seed=8, design="kfold",
                               settings=SimSettings(train_sd=0.25, split_sd=0.1))
    assert float(np.mean([any(r[n]["beyond_noise"] for n in r) for r in res])) <= 0.05
    with pytest.raises(ValueError, match="multiple of folds"):
        simulate_comparisons({"a": 0.0}, splits=7, reps=1, design="kfold")


def test_ahead_on_every_split_but_not_beyond_noise_says_likely_better_with_the_splits_that_would_decide():
    from imbvision.experiments.stats import seeds_to_decide
    d = [0.10, 0.40, 0.05, 0.35, 0.08, 0.30, 0.12, 0.45, 0.06, 0.24]
    t = corrected_ttest(d, N_TRAIN, N_TEST)
    rows = [
        {"strategy": "patch", "rank": 1, "ap_mean": 0.85, "recall": 0.5, "precision": 0.5, "cells": 10,
         "delta_ap": t["mean"], "delta_ci": [-0.05, 0.48], "delta_ci_level": 0.975, "p_holm": 0.11,
         "beyond_noise": False, "splits_better": 10, "splits_worse": 0, "delta_per_split": d},
        {"strategy": BASELINE, "rank": 2, "ap_mean": 0.64, "recall": 0.5, "precision": 0.5, "cells": 10},
    ]
    rec = _recommend(rows, n_train=N_TRAIN, n_test=N_TEST)
    assert rec.startswith("patch is likely better than the plain baseline — ahead on all 10 paired splits")
    assert "Keep the plain baseline" not in rec and "Use patch" not in rec
    need = seeds_to_decide(d, N_TRAIN, N_TEST, level=0.025)
    assert need is not None and need > 10 and f"about {need} paired splits" in rec and f"--seeds {need}" in rec
    # the planning figure is right: at `need` splits with the same mean and sd the test decides, at need-1 not
    m, sd = np.mean(d), np.std(d, ddof=1)
    for kk, decides in ((need, True), (need - 1, False)):
        se = sd * np.sqrt(1 / kk + N_TEST / N_TRAIN)
        assert (m / se > sps.t.ppf(1 - 0.025 / 2, kk - 1)) == decides
    # a tiny, noisy lead that more seeds cannot settle: says to add data
    far = [0.001, 0.3, 0.002, 0.25, 0.001, 0.28, 0.003, 0.2, 0.002, 0.3]
    rows[0].update(delta_per_split=far, delta_ap=float(np.mean(far)))
    assert seeds_to_decide(far, N_TRAIN, 20 * N_TRAIN, level=0.025) is None
    rec2 = _recommend(rows, n_train=N_TRAIN, n_test=20 * N_TRAIN)
    assert "more seeds alone cannot decide it" in rec2 and "add data" in rec2
    # behind on one split: the plain no-decision text stays
    rows[0].update(splits_better=9, splits_worse=1)
    assert _recommend(rows, n_train=N_TRAIN, n_test=N_TEST).startswith("No remedy beats the baseline beyond noise")
