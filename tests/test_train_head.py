"""Head-mode training end to end on a tiny generated set."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import imbvision
from imbvision.evaluation import tune_threshold
from imbvision.model import Model


def _read_scores(path):
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["path"] for r in rows], np.array([int(r["label"]) for r in rows]), np.array([float(r["probability"]) for r in rows])


@pytest.fixture(scope="module")
def ce_run(tmp_path_factory, tiny_kwargs):
    out = tmp_path_factory.mktemp("run") / "ce"
    return imbvision.train(out=out, strategy="ce", progress=False, **tiny_kwargs)


def test_run_folder_holds_everything(ce_run):
    out = ce_run.out
    for name in ("config.json", "split.csv", "model.json", "model.safetensors", "results.json", "report.html",
                 "scores_test.csv", "scores_val.csv"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["strategy"] == "ce" and cfg["seed"] == 0 and cfg["recipe"]["name"] == "ce"
    res = json.loads((out / "results.json").read_text())
    m = res["test"]
    assert 0 <= m["ap"] <= 1
    if m["n_pos"] < 10:  # too few test positives for a bootstrap interval: none, and why (issue 12)
        assert "ap_ci" not in m and f"only {m['n_pos']} positive" in m["ap_ci_note"]
    else:
        assert m["ap_ci"][0] < m["ap_ci"][1] and m["ap_ci"][0] <= m["ap"] <= m["ap_ci"][1]
    assert m["always_negative_accuracy"] > 0.8  # 15% positives


def test_threshold_comes_from_validation_only(ce_run):
    _, y_val, p_val = _read_scores(ce_run.out / "scores_val.csv")
    choice = tune_threshold(y_val, p_val, "max-f1")
    assert ce_run.threshold == pytest.approx(choice.threshold, abs=1e-5)


def test_saved_model_reproduces_test_scores(ce_run):
    paths, _, p = _read_scores(ce_run.out / "scores_test.csv")
    model = Model.load(ce_run.out)
    got = model.predict_proba(paths[:10])
    np.testing.assert_allclose(got, p[:10], atol=2e-5)
    assert set(model.predict(paths[:10]).tolist()) <= {0, 1}


def test_same_seed_same_numbers(ce_run, tmp_path, tiny_kwargs):
    again = imbvision.train(out=tmp_path / "again", strategy="ce", progress=False, **tiny_kwargs)
    a = json.loads((ce_run.out / "results.json").read_text())["test"]
    b = json.loads((again.out / "results.json").read_text())["test"]
    assert a["ap"] == b["ap"] and a.get("ap_ci") == b.get("ap_ci") and a.get("ap_ci_note") == b.get("ap_ci_note")


def test_weighted_loss_is_prior_corrected(tmp_path, tiny_kwargs):
    res = imbvision.train(out=tmp_path / "w", strategy="weighted-ce", progress=False, **tiny_kwargs)
    post = json.loads((res.out / "model.json").read_text())["postprocess"]
    assert post["prior_correction"] is True and post["train_prior"] == pytest.approx(0.5)
    assert post["true_prior"] < 0.3


def test_copy_paste_adds_synthetic_rows_and_examples(tmp_path, tiny_kwargs):
    res = imbvision.train(out=tmp_path / "cp", strategy="copy-paste", progress=False, **tiny_kwargs)
    info = json.loads((res.out / "results.json").read_text())["train"]
    assert info["synthetic_rows"] > 0
    assert (res.out / "examples" / "copy-paste.png").is_file()


def test_focal_switches_to_torch_head(tmp_path, tiny_kwargs):
    res = imbvision.train(out=tmp_path / "f", strategy="focal+balanced-sampler", progress=False, **tiny_kwargs)
    meta = json.loads((res.out / "model.json").read_text())
    assert meta["head"]["name"] == "linear"
    assert Model.load(res.out).predict_proba([meta["config"]["data"].replace("manifest.csv", "images/img_00000.png")]).shape == (1,)


def test_two_losses_refused(tmp_path, tiny_kwargs):
    with pytest.raises(ValueError, match="at most one loss"):
        imbvision.train(out=tmp_path / "x", strategy="focal+weighted-ce", progress=False, **tiny_kwargs)
