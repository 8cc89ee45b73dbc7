"""Localisation scores in runs and comparisons, and compare with no training positive (tiny data)."""

from __future__ import annotations

import json
from pathlib import Path
import warnings

import numpy as np
import pytest

import imbvision
from imbvision.data.sources import load_source
from imbvision.data.splits import read_split_csv
from imbvision.evaluation.localisation import localisation_scores
from imbvision.model import Model


@pytest.fixture(scope="module")
def normality_run(tmp_path_factory, tiny_kwargs):
    return imbvision.train(out=tmp_path_factory.mktemp("loc") / "run", strategy="normality", progress=False,
                           **tiny_kwargs)


def test_train_scores_the_heat_maps_against_the_test_masks(normality_run, tiny_kwargs):
    res = json.loads((normality_run.out / "results.json").read_text())
    loc = res["localisation"]
    ds = load_source(tiny_kwargs["data"])
    split = read_split_csv(normality_run.out / "split.csv")
    masked = [int(i) for i in split.test if ds.records[i].label == 1 and ds.records[i].mask is not None]
    assert loc["masked_positives"] == len(masked) > 0 and loc["images"] == len(split.test)
    assert "localisation" not in res["train"]
    # the same numbers from the saved model's heat maps (Model.explain) and the mask files
    from imbvision.data.decode import load_mask
    model = Model.load(normality_run.out)
    keep = [int(i) for i in split.test if ds.records[i].label == 0 or int(i) in masked]
    maps = list(model.explain([str(ds.records[i].path) for i in keep]))
    masks = [load_mask(ds.records[i].mask).numpy() if i in masked else None for i in keep]
    again = localisation_scores(maps, masks)
    assert loc["pixel_auroc"] == pytest.approx(again["pixel_auroc"], abs=0.02)
    assert loc["aupro"] == pytest.approx(again["aupro"], abs=0.02)
    page = (normality_run.out / "report.html").read_text(encoding="utf-8")
    assert "Localisation of the heat maps" in page and "AUPRO" in page
    assert "mean probability / prevalence" in page


def test_global_heads_have_no_localisation(tmp_path, tiny_kwargs):
    run = imbvision.train(out=tmp_path / "ce", strategy="ce", progress=False, **tiny_kwargs)
    res = json.loads((run.out / "results.json").read_text())
    assert "localisation" not in res
    ratio = res["calibration_in_the_large"]["after_calibration"]["ratio"]
    assert ratio == pytest.approx(np.mean(_probs(run.out)) / run.metrics["positive_rate"])


def _probs(out) -> list[float]:
    import csv
    with open(out / "scores_test.csv", newline="", encoding="utf-8") as fh:
        return [float(r["probability"]) for r in csv.DictReader(fh)]


def test_compare_leaderboard_carries_localisation_and_roc_auc(tmp_path, tiny_kwargs):
    from rich.console import Console

    from imbvision.workflows.compare import print_leaderboard, run_compare

    kw = {k: v for k, v in tiny_kwargs.items() if k != "max_synthetic"}
    res = run_compare(strategies="ce,normality", seeds=2, out=tmp_path / "cmp", progress=False, **kw)
    rows = {r["strategy"]: r for r in res.leaderboard}
    assert "aupro" not in rows["ce"]
    cells = [json.loads(p.read_text()) for p in (tmp_path / "cmp" / "cells").glob("normality*.json")]
    assert len(cells) == 2
    assert rows["normality"]["aupro"] == pytest.approx(np.mean([c["localisation"]["aupro"] for c in cells]))
    assert rows["normality"]["pixel_auroc"] == pytest.approx(np.mean([c["localisation"]["pixel_auroc"] for c in cells]))
    console = Console(record=True, width=120)
    print_leaderboard(res, console)
    text = console.export_text()
    assert "ROC-AUC" in text and "AUPRO" in text and f"{rows['normality']['aupro']:.3f}" in text
    assert "AUPRO" in (tmp_path / "cmp" / "report.html").read_text(encoding="utf-8")


def test_compare_without_training_positives_ranks_normality_variants(tmp_path, tiny_kwargs):
    from imbvision.workflows.compare import run_compare
    from imbvision.strategies import get_strategy

    kw = {k: v for k, v in tiny_kwargs.items() if k != "max_synthetic"}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        res = run_compare(strategies="ce,patch,normality", seeds=2, out=tmp_path / "z", progress=False,
                          train_positive_rate=0, **kw)
    names = [r["strategy"] for r in res.leaderboard]
    assert set(names) == {"normality", *get_strategy("normality").variants}
    assert res.baseline == "normality"
    base = next(r for r in res.leaderboard if r["strategy"] == "normality")
    assert "delta_ap" not in base and all("delta_ap" in r for r in res.leaderboard if r is not base)
    said = " ".join(str(w.message) for w in seen)
    assert "no positive" in said and "left out (they need training positives): ce, patch" in said
    cfg = json.loads((tmp_path / "z" / "config.json").read_text())
    assert cfg["strategies"][0] == "normality" and "ce" not in cfg["strategies"]


def test_cli_train_prints_false_alarms_and_localisation(tmp_path, tiny_kwargs):
    from typer.testing import CliRunner

    from imbvision.cli import app

    kw = tiny_kwargs
    res = CliRunner().invoke(app, ["train", "--data", kw["data"], "--backbone", kw["backbone"], "--weights",
                                   kw["weights"], "--image-size", str(kw["image_size"]), "--cache-dir",
                                   kw["cache_dir"], "--out", str(tmp_path / "r"), "--strategy", "normality",
                                   "--threshold", "fpr<=0.1"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "r" / "results.json").read_text())
    m = out["test"]
    assert out["threshold"]["rule"] == "fpr<=0.1" and m["false_alarm_target"] == 0.1
    assert f"false-alarm rate on the {m['negatives']} test negatives: {m['false_alarm_rate']:.4f}" in res.output
    assert "target 0.1" in res.output and "heat maps: pixel AUROC" in res.output
    assert f"AUPRO {out['localisation']['aupro']:.3f}" in res.output


def test_predict_with_heatmaps_computes_each_images_features_once_and_gives_the_same_numbers(tmp_path, tiny_kwargs,
                                                                                               monkeypatch):
    """The maps and the probabilities come from one feature computation per image (it was done twice)."""
    import csv

    from typer.testing import CliRunner

    import imbvision
    from imbvision.cli import app
    from imbvision.training import patch_fit

    kw = {k: v for k, v in tiny_kwargs.items() if k != "max_synthetic"}
    run = imbvision.train(out=tmp_path / "run", strategy="fusion", progress=False, **kw).out
    imgs = sorted((Path(tiny_kwargs["data"]).parent).rglob("*.png"))
    imgs = [str(p) for p in imgs if "mask" not in p.name][:10] + [str(tmp_path / "missing.png")]
    r = CliRunner().invoke(app, ["predict", str(run), *imgs, "--out", str(tmp_path / "plain.csv")])
    assert r.exit_code == 0, r.output
    seen = []
    real = patch_fit.patches_from_images
    monkeypatch.setattr(patch_fit, "patches_from_images", lambda images, *a, **k: seen.append(len(images)) or real(images, *a, **k))
    r = CliRunner().invoke(app, ["predict", str(run), *imgs, "--out", str(tmp_path / "maps.csv"),
                                 "--heatmaps", str(tmp_path / "maps")])
    assert r.exit_code == 0, r.output
    assert sum(seen) == 10  # each readable image once (the missing one is listed, not scored)
    plain = list(csv.DictReader(open(tmp_path / "plain.csv")))
    maps = list(csv.DictReader(open(tmp_path / "maps.csv")))
    assert [(a["path"], a["probability"], a["error"]) for a in plain] == [(b["path"], b["probability"], b["error"]) for b in maps]
    assert len(list((tmp_path / "maps").glob("*.png"))) == 10
