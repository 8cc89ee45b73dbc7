"""Per-run metrics that cannot mislead: no zero-width intervals, ranking independent of calibration
(issue 12 §1 and §2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import imbvision
from imbvision.evaluation import (
    average_precision,
    evaluate_scores,
    fit_calibrator,
    interval_or_reason,
    roc_auc,
)
from imbvision.evaluation.metrics import MIN_POSITIVES_FOR_CI


@pytest.mark.parametrize("n_pos", [1, 2, 3, 4])
def test_few_positives_no_interval_and_why(n_pos):
    # Issue 12: the train report printed "AP 1.000 [1.000, 1.000]" with 1–4 test positives.
    y = np.r_[np.ones(n_pos), np.zeros(60)].astype(int)
    s = np.r_[np.linspace(0.9, 0.99, n_pos), np.linspace(0.0, 0.5, 60)]
    m = evaluate_scores(y, s, 0.5, n_boot=200)
    assert m["ap"] == 1.0
    assert "ap_ci" not in m and "roc_auc_ci" not in m
    assert (f"only {n_pos} positive " if n_pos == 1 else f"only {n_pos} positives") in m["ap_ci_note"] and str(MIN_POSITIVES_FOR_CI) in m["ap_ci_note"]


def test_perfect_separation_no_zero_width_interval():
    y = np.r_[np.ones(40), np.zeros(200)].astype(int)
    s = np.r_[np.linspace(0.8, 0.99, 40), np.linspace(0.0, 0.5, 200)]
    ci, why = interval_or_reason(y, s, "ap", n_boot=200)
    assert ci is None and "every bootstrap resample" in why
    m = evaluate_scores(y, s, 0.5, n_boot=200)
    assert "ap_ci" not in m and "ap_ci_note" in m


def test_enough_positives_keep_the_interval():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(40), np.zeros(200)].astype(int)
    s = y * 1.2 + rng.normal(0, 1, len(y))
    m = evaluate_scores(y, s, 0.5, n_boot=300)
    lo, hi = m["ap_ci"]
    assert lo < m["ap"] < hi and hi - lo > 0.02 and "ap_ci_note" not in m


def test_cli_table_says_why_there_is_no_interval():
    from rich.console import Console

    from imbvision.cli import _metrics_table

    y = np.r_[np.ones(3), np.zeros(60)].astype(int)
    s = np.r_[[0.95, 0.96, 0.97], np.linspace(0, 0.5, 60)]
    m = evaluate_scores(y, s, 0.5, n_boot=100)
    con = Console(width=300, record=True)
    con.print(_metrics_table([{"name": "ce", "metrics": m}], "t"))
    text = con.export_text()
    assert "[1.000, 1.000]" not in text and "only 3 positives" in text


def test_isotonic_calibration_cannot_move_ranking_metrics():
    # Issue 12: isotonic turned 120 distinct test scores into 15 and moved AP 0.837 → 0.831, ROC-AUC 0.934 → 0.955.
    rng = np.random.default_rng(5)
    y_val = (rng.random(400) < 0.2).astype(int)
    p_val = 1 / (1 + np.exp(-(2 * y_val - 1.5 + rng.normal(0, 1, 400))))
    y = (rng.random(120) < 0.2).astype(int)
    raw = 1 / (1 + np.exp(-(2 * y - 1.5 + rng.normal(0, 1, 120))))
    cal = fit_calibrator("isotonic", y_val, p_val).transform(raw)
    assert len(np.unique(cal)) < len(np.unique(raw)) / 2  # isotonic merged scores into ties
    assert average_precision(y, cal) != average_precision(y, raw)  # so ranking on it would move AP
    m = evaluate_scores(y, cal, 0.5, n_boot=0, rank_score=raw)
    assert m["ap"] == average_precision(y, raw) and m["roc_auc"] == roc_auc(y, raw)
    assert m["tp"] + m["fn"] == y.sum() and m["threshold"] == 0.5  # the threshold still acts on `cal`
    assert m["tp"] == int(((cal >= 0.5) & (y == 1)).sum())


def test_train_isotonic_vs_none_identical_ranking(tmp_path, tiny_kwargs):
    runs = {c: imbvision.train(out=tmp_path / c, strategy="weighted-ce", calibration=c, progress=False, **tiny_kwargs)
            for c in ("none", "isotonic")}
    a, b = (json.loads((runs[c].out / "results.json").read_text())["test"] for c in ("none", "isotonic"))
    assert a["ap"] == b["ap"] and a["roc_auc"] == b["roc_auc"]
    assert a.get("ap_ci") == b.get("ap_ci") and a.get("ap_ci_note") == b.get("ap_ci_note")
    import csv

    probs = {c: [float(r["probability"]) for r in csv.DictReader(open(runs[c].out / "scores_test.csv"))]
             for c in runs}
    assert probs["none"] != probs["isotonic"]  # calibration did change the probabilities
    assert len(set(probs["isotonic"])) < len(set(probs["none"]))
