"""The command line: sub-commands run, bad input gives one clear line and exit 2."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from imbvision.cli import app

runner = CliRunner()


def _opts(kw: dict) -> list[str]:
    return ["--data", kw["data"], "--backbone", kw["backbone"], "--weights", kw["weights"],
            "--image-size", str(kw["image_size"]), "--cache-dir", kw["cache_dir"]]


def test_strategies_lists_every_family():
    res = runner.invoke(app, ["strategies"], env={"COLUMNS": "300"})
    assert res.exit_code == 0
    for name in ("focal", "smote-tomek", "copy-paste", "object-cutmix", "balanced-sampler", "logreg"):
        assert name in res.output


@pytest.mark.parametrize("strategy, fragment", [
    ("focall", "unknown strategy 'focall'"),
    ("focal:gamma=-1", "gamma"),
    ("focal+weighted-ce", "at most one loss"),
])
def test_bad_strategy_is_one_clear_line(strategy, fragment, tmp_path, tiny_kwargs):
    res = runner.invoke(app, ["train", *_opts(tiny_kwargs), "--out", str(tmp_path / "r"), "--strategy", strategy])
    assert res.exit_code == 2
    assert fragment in res.output and "Traceback" not in res.output


def test_train_then_predict_lists_unreadable_files(tmp_path, tiny_kwargs):
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", *_opts(tiny_kwargs), "--out", str(run), "--strategy", "weighted-ce"],
                        env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "always-negative" in res.output and (run / "report.html").is_file()
    good = tiny_kwargs["data"].replace("manifest.csv", "images/img_00001.png")
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    out = tmp_path / "preds.csv"
    res = runner.invoke(app, ["predict", str(run), good, str(bad), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(out)))
    assert rows[0]["path"] == good and 0 <= float(rows[0]["probability"]) <= 1 and rows[0]["decision"] in ("0", "1")
    assert rows[1]["path"] == str(bad) and "not a readable image" in rows[1]["error"]
    res = runner.invoke(app, ["evaluate", str(run)], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "test metrics" in res.output


def test_predict_on_a_folder_that_is_not_a_run(tmp_path):
    res = runner.invoke(app, ["predict", str(tmp_path), "x.png"])
    assert res.exit_code == 2 and "not a model folder" in res.output


def test_compare_via_cli(tmp_path, tiny_kwargs):
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", *_opts(tiny_kwargs), "--out", str(out), "--strategies", "ce,weighted-ce",
                              "--seeds", "2"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "weighted-ce" in res.output and (out / "leaderboard.csv").is_file()
    res = runner.invoke(app, ["compare", *_opts(tiny_kwargs), "--out", str(out), "--strategies", "ce", "--seeds", "2",
                              "--mode", "finetune"])
    assert res.exit_code == 2 and "head mode" in res.output


def test_audit_then_review_writes_a_new_manifest(tmp_path, tiny_kwargs):
    out = tmp_path / "audit"
    opts = ["--data", tiny_kwargs["data"], "--backbone", tiny_kwargs["backbone"], "--weights", tiny_kwargs["weights"],
            "--cache-dir", tiny_kwargs["cache_dir"]]
    res = runner.invoke(app, ["audit", *opts, "--out", str(out)], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "nothing was deleted" in res.output
    rows = list(csv.DictReader(open(out / "suspects.csv")))
    assert rows, "the audit ranks at least one suspect on a noisy tiny set"
    rows[0]["decision"] = "drop"
    review = tmp_path / "review.csv"
    with open(review, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    before = open(tiny_kwargs["data"]).read()
    res = runner.invoke(app, ["audit", "--data", tiny_kwargs["data"], "--review", str(review),
                              "--manifest-out", str(tmp_path / "new.csv")])
    assert res.exit_code == 0, res.output
    new = list(csv.DictReader(open(tmp_path / "new.csv")))
    assert len(new) == 119 and rows[0]["path"] not in {r["path"] for r in new}
    assert open(tiny_kwargs["data"]).read() == before  # the source manifest is untouched
