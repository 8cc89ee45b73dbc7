"""What a user reads must agree with what was computed (found by trying the tool as a new user)."""

from __future__ import annotations

import csv
import json

import numpy as np
from typer.testing import CliRunner

import imbvision
from imbvision.cli import app


def test_pr_and_roc_legends_name_the_decision_threshold():
    """The operating point sits on the ranking score; the legend names the threshold the decision uses."""
    from imbvision.evaluation.plots import plot_pr_curve, plot_roc_curve

    y = np.array([0, 0, 1, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.9])
    for fn in (plot_pr_curve, plot_roc_curve):
        fig = fn(y, s, threshold=0.8, shown_threshold=0.06175)
        texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert any(t.startswith("threshold 0.06175") for t in texts), texts
        assert not any("0.8" in t and t.startswith("threshold") for t in texts)


def test_focal_without_a_prior_formula_says_so_and_scores_keep_full_precision(tmp_path, tiny_kwargs):
    run = imbvision.train(out=tmp_path / "f", strategy="focal", calibration="none", progress=False, **tiny_kwargs)
    notes = json.loads((run.out / "warnings.json").read_text(encoding="utf-8"))["warnings"]
    assert any("no analytic prior correction" in n and "--calibration platt" in n for n in notes)
    with open(run.out / "scores_val.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # every decision is reproducible from the probability printed beside it
    assert all(int(float(r["probability"]) >= run.threshold) == int(r["decision"]) for r in rows)


def test_predict_exits_non_zero_when_nothing_could_be_scored(tmp_path, tiny_kwargs):
    run = imbvision.train(out=tmp_path / "c", strategy="ce", progress=False, **tiny_kwargs)
    res = CliRunner().invoke(app, ["predict", str(run.out), str(tmp_path / "does_not_exist.png"),
                                   "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 2
    assert "does_not_exist.png" in (tmp_path / "p.csv").read_text(encoding="utf-8")  # the listing is still written
